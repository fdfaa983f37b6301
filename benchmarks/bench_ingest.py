"""Ingestion throughput through POST /v1/batch on a real `siyu serve`, sustained.

Starts the server on a fresh data folder, warms it with the user population,
then a load generator (a separate process, keep-alive connections) sends every
round's batches of 100 realistic messages back to back, without a pause: a
sustained load, under which the server folds customers' seen times every 30 s,
as a busy shop's would (a pause would make it fold at every round instead).
Every 200 means the batch is durable (in the intake log). A round ends when the
server has processed its last batch (``GET /api/v1/sources/ingestion``: the
processed position of the intake log, one row a request, polled every 0.25 s),
so the rate is what processing sustains, not only what the intake takes. The
figure is the whole run's rate, from the first request sent until the backlog
is empty. Prints it and the ratio to the raw cost of parsing the same JSON
alone, measured in the same run, and for each round its rate and the cores the
server and its child processes (parse workers, and the processing process of
``SIYU_INGEST_PROCESS``) used, also as CPU time a message.

    .venv/bin/python benchmarks/bench_ingest.py [--requests 1000] [--rounds 6] [--users 50000] [--keep] [--stages]

With ``--stages`` the server runs through ``_serve_stages.py``, processing in its writer
thread (``SIYU_INGEST_PROCESS=0``), and the steps of ``pipeline.process`` are timed over the measured rounds (wall and CPU time a message; the
timing itself costs a little).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _payloads  # noqa: E402
from _stages import print_table, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIYU = str(ROOT / ".venv" / "bin" / "siyu")
# How often the rounds ask the server how far it got: a status request costs the server ~5 ms of CPU
# (token, permissions, a database connection), 1-2 % of the machine at ten a second.
POLL_SECONDS = 0.25


def _send_all(port: int, auth: str, bodies: list[bytes], connections: int, out: mp.Queue) -> None:
    """Load generator: send every body, several keep-alive connections in parallel."""
    lock, position, accepted, failures = threading.Lock(), [0], [0], []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if position[0] >= len(bodies):
                    break
                body = bodies[position[0]]
                position[0] += 1
            while True:
                conn.request("POST", "/v1/batch", body, {"Content-Type": "application/json", "Authorization": auth})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status == 429:
                    time.sleep(0.05)
                    continue
                if resp.status != 200:
                    failures.append((resp.status, data[:200]))
                else:
                    with lock:
                        accepted[0] += json.loads(data)["accepted"]
                break

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((time.perf_counter() - start, accepted[0], failures[:3]))


def load(port: int, auth: str, bodies: list[bytes], connections: int) -> tuple[float, int]:
    """Send ``bodies`` and wait for the answers: (seconds, messages accepted)."""
    q: mp.Queue = mp.Queue()
    proc = start_load(port, auth, bodies, connections, q)
    elapsed, accepted = finish_load(proc, q)
    return elapsed, accepted


def start_load(port: int, auth: str, bodies: list[bytes], connections: int, out: mp.Queue) -> mp.Process:
    proc = mp.Process(target=_send_all, args=(port, auth, bodies, connections, out))
    proc.start()
    return proc


def finish_load(proc: mp.Process, out: mp.Queue) -> tuple[float, int]:
    elapsed, accepted, failures = out.get()
    proc.join()
    if failures:
        raise SystemExit(f"requests failed: {failures}")
    return elapsed, accepted


def ingestion_status(conn: http.client.HTTPConnection, token: str) -> dict:
    """The server's ``GET /api/v1/sources/ingestion``: backlog and intake positions."""
    conn.request("GET", "/api/v1/sources/ingestion", headers={"Authorization": f"Bearer {token}"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"ingestion status: {resp.status} {body[:200]!r}")
    return json.loads(body)


def drained(port: int, token: str, timeout: float = 600) -> float:
    """Wait until the server has processed everything it accepted (its intake log's backlog is
    empty, ``GET /api/v1/sources/ingestion``); returns when that was seen."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ingestion_status(conn, token)["backlog"] == 0:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit(f"the server did not process its backlog within {timeout:.0f} s")


def settled(server: int, timeout: float = 120) -> None:
    """Wait until the server and its children use under 5 % of a core over a second: the work
    the warm-up set off once ingestion went idle is over, and does not slow the first round."""
    deadline = time.monotonic() + timeout
    last = CpuShare.sample(server)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = CpuShare.sample(server)
        if (now[0] + now[1]) - (last[0] + last[1]) < 0.05:
            return
        last = now
    raise SystemExit(f"the server was still busy {timeout:.0f} s after the warm-up")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


class CpuShare:
    """Where the cores went between two ``sample``s: the server process (HTTP, the intake, the
    event store), its children (parse workers and the processing process), and the machine as a
    whole. One process near 1.0 core with the machine not busy means its interpreter (the GIL)
    is the limit, not the cores."""

    def __init__(self, start: tuple[float, float, float, float], end: tuple[float, float, float, float],
                 wall: float) -> None:
        self.server_cores = (end[0] - start[0]) / wall
        self.worker_cores = (end[1] - start[1]) / wall
        self.machine = (end[2] - start[2]) / max(end[3] - start[3], 1e-9)

    @staticmethod
    def sample(server: int) -> tuple[float, float, float, float]:
        """CPU seconds so far: the server, its children, the machine busy, the machine in all."""
        workers = []  # children of any of its threads (workers are restarted from a thread of their own)
        for task in Path(f"/proc/{server}/task").glob("*/children"):
            try:
                workers += [int(p) for p in task.read_text().split()]
            except OSError:  # the thread ended meanwhile
                continue
        busy, total = _busy_seconds()
        return _cpu_seconds(server), sum(map(_cpu_seconds, workers)), busy, total

    def __str__(self) -> str:
        return (f"server process {self.server_cores:.2f} cores, children {self.worker_cores:.2f},"
                f" machine {self.machine:.0%} busy")

    def per_message(self, rate: float) -> str:
        """The same as CPU time a message: what a change must cut for the rate to rise."""
        cores = os.cpu_count() or 1
        return (f"CPU a message: server {self.server_cores / rate * 1e6:.0f} µs,"
                f" children {self.worker_cores / rate * 1e6:.0f} µs,"
                f" machine {self.machine * cores / rate * 1e6:.0f} µs")


def stage_snapshot(server: subprocess.Popen, path: Path, timeout: float = 30) -> dict:
    """Ask the server (``_serve_stages.py``) for its step times so far (SIGUSR1) and read them."""
    mtime = path.stat().st_mtime_ns if path.exists() else 0
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != mtime:
            return json.loads(path.read_text())
        time.sleep(0.05)
    raise SystemExit("the server did not write its step times (is it benchmarks/_serve_stages.py?)")


def parse_only(bodies: list[bytes]) -> float:
    """Baseline: events/s for json.loads of the same bodies, nothing else."""
    start = time.perf_counter()
    n = sum(len(json.loads(b)["batch"]) for b in bodies)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=1000, help="batches per measured round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--connections", type=int, default=24)
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    ap.add_argument("--keep", action="store_true", help="keep the server's data folder (printed) afterwards")
    ap.add_argument("--stages", action="store_true",
                    help="time each step of pipeline.process in the server (benchmarks/_serve_stages.py;"
                         " processing then runs in the server's thread, not a process of its own)")
    args = ap.parse_args()
    args.port = args.port or free_port()

    data_dir = tempfile.mkdtemp(prefix="siyu-bench-ingest-")
    env = {**os.environ, "SIYU_DATA_DIR": data_dir}
    key = json.loads(subprocess.check_output([SIYU, "source", "create", "bench", "--json"], env=env))["write_key"]
    subprocess.check_output([SIYU, "user", "create", "bench", "--role", "developer", "--json"], env=env)
    token = json.loads(subprocess.check_output([SIYU, "token", "create", "bench", "--json"], env=env))["token"]
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    serve = [sys.executable, str(ROOT / "benchmarks" / "_serve_stages.py")] if args.stages else [SIYU, "serve"]
    stages_file = Path(data_dir) / "stages.json"
    env["SIYU_BENCH_STAGES"] = str(stages_file)
    if args.stages:  # the steps are timed in the server's own interpreter: process there, in a thread
        env["SIYU_INGEST_PROCESS"] = "0"
    # The server's output goes to a file: a pipe nobody reads during the run would fill and stop it.
    log = Path(data_dir) / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([*serve, "--port", str(args.port), "--threads", str(max(32, args.connections + 8))],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(args.port, server, log)
        # Warm-up: every user of the population identifies once (a running shop's steady state).
        warm = [json.dumps(b).encode() for b in _payloads.batches(args.users * 3 // 100, users=args.users, seed=0)]
        load(args.port, auth, warm, args.connections)
        drained(args.port, token)
        settled(server.pid)  # what the warm-up left (the fold of its seen times, copies) is done
        bodies = [json.dumps(b).encode()
                  for b in _payloads.batches(args.requests * args.rounds, users=args.users, seed=1)]
        conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        first_row = ingestion_status(conn, token)["processed_position"]
        before = stage_snapshot(server, stages_file) if args.stages else None
        rounds, q = [], mp.Queue()
        marks = [(time.perf_counter(), CpuShare.sample(server.pid))]
        sender = start_load(args.port, auth, bodies, args.connections, q)
        deadline, answer = time.monotonic() + 600 + args.rounds * args.requests * 0.05, None
        while len(marks) <= args.rounds:  # a round ends when its last request's row is processed
            if answer is None and not sender.is_alive():
                answer = finish_load(sender, q)  # stops here if requests failed
            if time.monotonic() > deadline:
                raise SystemExit("the rounds did not finish in time")
            status = ingestion_status(conn, token)
            if status["processed_position"] - first_row >= len(marks) * args.requests:
                marks.append((time.perf_counter(), CpuShare.sample(server.pid)))
                (t0, c0), (t1, c1) = marks[-2:]
                share = CpuShare(c0, c1, t1 - t0)
                rate = args.requests * 100 / (t1 - t0)
                rounds.append(rate)
                print(f"round {len(rounds)}: {args.requests * 100} events processed in {t1 - t0:.2f}s"
                      f" = {rate:,.0f} events/s | {share} | {share.per_message(rate)}", flush=True)
                continue
            if answer is not None and status["backlog"] == 0:
                raise SystemExit("every request was answered and processed, but fewer reached the intake log"
                                 " than were sent (some accepted nothing?)")
            time.sleep(POLL_SECONDS)
        answered, accepted = answer if answer is not None else finish_load(sender, q)
        elapsed = drained(args.port, token) - marks[0][0]
        end = CpuShare.sample(server.pid)
        share = CpuShare(marks[0][1], end, elapsed)
        rate, base = accepted / elapsed, parse_only(bodies)
        if args.stages:
            after = stage_snapshot(server, stages_file)
            print("\nwhere pipeline.process spent its time in the server, over the measured rounds:")
            print_table(table(after, before), after["messages"] - before["messages"], indent="  ")
        print(f"\nall {accepted:,} events processed in {elapsed:.2f}s (all answered after {answered:.2f}s)"
              f" | {share} | {share.per_message(rate)}")
        print(f"ingest /v1/batch (100 msgs/request, durable), sustained: {rate:,.0f} events/s"
              f" (rounds: median {statistics.median(rounds):,.0f}, {min(rounds):,.0f} to {max(rounds):,.0f})"
              f" | parse-only baseline {base:,.0f} events/s | ratio {rate / base:.3f}"
              f" | target 20,000 events/s: {'met' if rate >= 20_000 else 'NOT met'}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if args.keep:
            print(f"data folder kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
