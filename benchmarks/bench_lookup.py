"""Profile lookup by any identity through the REST API, with 1 000 000 customers.

Loads N customers (each with user id, phone, WeChat openid, member number and
an anonymous id, encrypted with lookup hashes exactly as ingestion stores them)
straight into the operational store, starts `siyu serve`, and times
`GET /api/v1/customers/lookup?kind=…&value=…` one request at a time over a
keep-alive connection, as an analyst (masked view). The floor is the same
lookup as two indexed SQL queries on the same SQLite file, measured in the same run.

    .venv/bin/python benchmarks/bench_lookup.py [--customers 1000000] [--lookups 3000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIYU = str(ROOT / ".venv" / "bin" / "siyu")
sys.path.insert(0, str(Path(__file__).parent))
from bench_ingest import free_port, wait_for  # noqa: E402

KINDS = ("user_id", "phone", "openid", "member_no", "anonymous_id")


def ids_of(i: int) -> dict[str, str]:
    return {
        "user_id": f"u{i:07d}",
        "phone": f"+86139{i:08d}",
        "openid": f"oX{i:012d}wx",
        "member_no": f"M{i:08d}",
        "anonymous_id": f"anon-{i:09d}",
    }


def populate(n: int) -> None:
    """Bulk-load persons and identities with the same encryption and hashes as ingestion."""
    import django

    django.setup()
    from django.db import connection, transaction

    from siyu.cli import ensure_migrated
    from siyu.privacy import crypto

    ensure_migrated()
    chunk = 20_000
    started = time.perf_counter()
    for start in range(0, n, chunk):
        with transaction.atomic(), connection.cursor() as cur:
            rows = range(start, min(n, start + chunk))
            cur.executemany(
                "INSERT INTO customers_person (id, created_at, pii_enc, traits, order_count, total_spend,"
                " acquisition_channel, first_touch, last_touch) VALUES (%s, %s, %s, %s, %s, %s, %s, '{}', '{}')",
                [(i + 1, "2026-01-01 00:00:00", crypto.encrypt(json.dumps({"name": f"客户{i}"})),
                  json.dumps({"gender": "f" if i % 2 else "m", "city": "上海"}), i % 7, f"{(i % 97) * 10}.00",
                  "wechat") for i in rows],
            )
            cur.executemany(
                "INSERT INTO customers_identity (person_id, kind, value_hash, value_enc, first_seen_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(i + 1, kind, crypto.lookup_hash(kind, value), crypto.encrypt(value), "2026-01-01 00:00:00")
                 for i in rows for kind, value in ids_of(i).items()],
            )
        if (start // chunk) % 10 == 0:
            print(f"  loaded {min(n, start + chunk):,} customers ({time.perf_counter() - started:.0f}s)",
                  file=sys.stderr, flush=True)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=3000)
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="siyu-bench-lookup-")
    os.environ.update(SIYU_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="siyu.settings")
    env = dict(os.environ)
    populate(args.customers)
    subprocess.check_call([SIYU, "user", "create", "analyst", "--role", "data_analyst", "--json"], env=env,
                          stdout=subprocess.DEVNULL)
    token = json.loads(subprocess.check_output([SIYU, "token", "create", "analyst", "--json"], env=env))["token"]

    from siyu.privacy import crypto

    rng = random.Random(1)
    picks = [(rng.choice(KINDS), rng.randrange(args.customers)) for _ in range(args.lookups)]

    db = sqlite3.connect(Path(data_dir) / "siyu.sqlite3")
    floor = []
    for kind, i in picks:
        t = time.perf_counter()
        pid = db.execute("SELECT person_id FROM customers_identity WHERE kind = ? AND value_hash = ?",
                         (kind, crypto.lookup_hash(kind, ids_of(i)[kind]))).fetchone()[0]
        db.execute("SELECT * FROM customers_person WHERE id = ?", (pid,)).fetchone()
        db.execute("SELECT * FROM customers_identity WHERE person_id = ?", (pid,)).fetchall()
        floor.append((time.perf_counter() - t) * 1000)
    db.close()

    port = free_port()
    server = subprocess.Popen([SIYU, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(port, server)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}"}
        latencies: dict[str, list[float]] = {k: [] for k in KINDS}
        for n, (kind, i) in enumerate(picks[:200] + picks):
            value = ids_of(i)[kind].replace("+", "%2B")
            t = time.perf_counter()
            conn.request("GET", f"/api/v1/customers/lookup?kind={kind}&value={value}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            elapsed = (time.perf_counter() - t) * 1000
            if resp.status != 200:
                raise SystemExit(f"lookup failed: {resp.status} {body[:200]!r}")
            if n >= 200:  # the first 200 warm the caches
                latencies[kind].append(elapsed)
    finally:
        server.terminate()
        server.wait(timeout=30)

    every = [x for xs in latencies.values() for x in xs]
    for kind, xs in latencies.items():
        print(f"  {kind:<13} p50 {statistics.median(xs):6.2f} ms  p99 {percentile(xs, 99):6.2f} ms  (n={len(xs)})")
    p99, floor99 = percentile(every, 99), percentile(floor, 99)
    print(f"\nprofile lookup via API, {args.customers:,} customers: p50 {statistics.median(every):.2f} ms,"
          f" p99 {p99:.2f} ms | floor (indexed SQL, same file) p99 {floor99:.3f} ms | ratio {p99 / floor99:.1f}"
          f" | target p99 < 20 ms: {'met' if p99 < 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
