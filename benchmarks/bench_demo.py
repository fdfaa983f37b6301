"""`siyu demo` at scale: wall time, messages/s and peak memory, against the generator alone.

Two runs on the same customers and seed, each in its own process:

1. baseline: the generator alone — draw the brand, render every message and
   parse it with the endpoints' parsers, ingest nothing (one process);
2. the demo: what `siyu demo --no-serve` does — migrate a fresh data folder,
   generate in a second process, ingest every batch through `pipeline.process`.

Prints wall and CPU time, messages/s, peak memory (each process's own peak RSS
from getrusage, and the process tree's PSS sampled every second) and the
ratio demo / baseline. The figure to meet: 1 000 000 customers in under 10
minutes with peak memory under 4 GiB. ``--limit`` stops each run after that
many seconds and projects the full time from the share done; ``--baseline-limit``
stops only the baseline (the ratio is per message), so the demo's own time is
measured whole without waiting for the generator to run alone to the end.

    SIYU_DATA_DIR=$(mktemp -d) .venv/bin/python benchmarks/bench_demo.py --customers 1000000 --baseline-limit 120
    .venv/bin/python benchmarks/bench_demo.py --customers 100000 --stages --limit 900
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _stages import Stages, print_table  # noqa: E402

FIGURE_CUSTOMERS, FIGURE_SECONDS, FIGURE_BYTES = 1_000_000, 600, 4 * 2**30
END = "2026-11-20T12:00:00+00:00"  # a fixed window, so runs compare


# -- inside the measured processes ---------------------------------------------------------
def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()


def _generate(customers: int, seed: int) -> dict:
    """Baseline: the generator alone (draw, render, parse), stopping cleanly on SIGINT."""
    from datetime import datetime

    from siyu.demo.stream import DemoStream

    signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's `&` starts us ignoring it
    t0 = time.monotonic()
    stream = DemoStream(customers, seed, datetime.fromisoformat(END))
    drawn = time.monotonic() - t0
    messages = sessions_done = 0
    done = True
    try:
        for batch, progress in stream.batches():
            messages += len(batch)
            sessions_done = progress.sessions_done
    except KeyboardInterrupt:
        done = False
    return {"messages": messages, "draw_s": round(drawn, 2), "sessions": stream.plan.sessions,
            "sessions_done": sessions_done, "done": done}


def _demo(customers: int, seed: int, stages: bool) -> dict:
    """The demo as `siyu demo --no-serve` builds it; on SIGINT, report how far it got."""
    from datetime import datetime

    from siyu.cli import ensure_migrated

    ensure_migrated()
    timer = Stages()
    if stages:
        timer.install()
    from siyu.analytics.engine import get_store
    from siyu.demo.build import build_demo

    interrupted = []

    def stop(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop)
    t0 = time.monotonic()
    try:
        result = build_demo(customers, seed, progress=True, end=datetime.fromisoformat(END))
        done = True
    except BaseException:
        if not interrupted:  # a real failure, not --limit
            raise
        # DuckDB may turn the interrupt into its own exception; the count of stored events stands.
        result, done = {"messages": get_store().counts()["events"]}, False
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    from siyu.demo.build import default_workers

    return {"result": result, "done": done, "elapsed_s": time.monotonic() - t0, "stages": timer.table() if stages else [],
            "workers": default_workers(customers),
            "main_cpu_s": self_usage.ru_utime + self_usage.ru_stime, "main_peak_rss": self_usage.ru_maxrss * 1024}


# -- the harness ----------------------------------------------------------------------------------
def _tree_memory(root: int) -> int:
    """Proportional set size (shared pages split between sharers) of ``root`` and its descendants.

    Forked generator workers share the drawn brand copy-on-write; summing RSS
    would count those pages once per process.
    """
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _measure(args: list[str], env: dict[str, str], limit: float | None) -> dict:
    """Run one measured process; returns its JSON answer, wall time, CPU and memory."""
    t0 = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_memory(proc.pid))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(limit, proc.send_signal, (signal.SIGINT,)) if limit else None
    if timer:
        timer.start()
    out = proc.stdout.read() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    stop.set()
    if timer:
        timer.cancel()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"measured process failed ({status}): {' '.join(args)}")
    return {"answer": json.loads(out.strip().splitlines()[-1]), "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime, "tree_peak_rss": peak[0],
            "max_process_rss": usage.ru_maxrss * 1024}


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def _report(customers: int, base: dict, demo: dict) -> None:
    b, d = base["answer"], demo["answer"]
    # Every message the full build sends: counted by the baseline, or projected from its share of sessions.
    total = b["messages"] if b["done"] else b["messages"] * b["sessions"] / max(b["sessions_done"], 1)
    ingested = d["result"].get("messages", 0)
    print(f"\nsiyu demo --customers {customers:,}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  generator alone (draw {b['draw_s']}s + render + parse, 1 process): {b['messages']:,} messages in"
          f" {base['wall_s']:.1f}s = {b['messages'] / base['wall_s']:,.0f}/s, CPU {base['cpu_s']:.0f}s,"
          f" peak RSS {_gib(base['max_process_rss'])}{'' if b['done'] else '  (stopped at --limit)'}")
    print(f"  siyu demo ({d['workers']} generator process(es), ingest via pipeline.process): {ingested:,} messages in"
          f" {demo['wall_s']:.1f}s = {ingested / demo['wall_s']:,.0f}/s, CPU {demo['cpu_s']:.0f}s"
          f" (ingesting process {d['main_cpu_s']:.0f}s){'' if d['done'] else '  (stopped at --limit)'}")
    print(f"  peak RSS: ingesting process {_gib(d['main_peak_rss'])}, largest process {_gib(demo['max_process_rss'])},"
          f" whole process tree (PSS, sampled each second) {_gib(demo['tree_peak_rss'])}")
    base_rate, demo_rate = b["messages"] / base["wall_s"], ingested / demo["wall_s"]
    print(f"  ratio demo / generator alone (time per message): {base_rate / max(demo_rate, 1e-9):.2f}x")
    projected = demo["wall_s"] if d["done"] else demo["wall_s"] * total / max(ingested, 1)
    label = "measured" if d["done"] else f"projected: {ingested / max(total, 1):.1%} of ~{total:,.0f} messages done"
    print(f"  full build time: {projected:,.0f}s ({label})")
    for key in ("customers", "orders", "gmv_cny", "merges", "time_ingesting_s", "time_waiting_for_generator_s"):
        if key in d["result"]:
            print(f"    {key}: {d['result'][key]}")
    if d["stages"]:
        print("  where pipeline.process spends its time (ingesting process):")
        print_table(d["stages"], ingested)
    if customers >= FIGURE_CUSTOMERS:
        ok = d["done"] and projected < FIGURE_SECONDS and demo["tree_peak_rss"] < FIGURE_BYTES
        print(f"  figure (1M customers < {FIGURE_SECONDS}s, peak < 4 GiB): {'MET' if ok else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit", type=float, help="stop each run after this many seconds and project")
    parser.add_argument("--baseline-limit", type=float,
                        help="stop only the generator-alone baseline after this many seconds")
    parser.add_argument("--stages", action="store_true", help="time each step of pipeline.process")
    parser.add_argument("--_generate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_demo", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._generate or args._demo:
        _setup()
        answer = (_generate(args.customers, args.seed) if args._generate
                  else _demo(args.customers, args.seed, args.stages))
        print(json.dumps(answer, default=str))
        return
    own = sys.argv[0]
    me = [sys.executable, own, "--customers", str(args.customers), "--seed", str(args.seed)]
    env = dict(os.environ)
    data = env.get("SIYU_DATA_DIR")
    if not data or any(Path(data).iterdir()):
        data = tempfile.mkdtemp(prefix="siyu-bench-demo-")
        print(f"data folder: {data}", file=sys.stderr)
    env["SIYU_DATA_DIR"] = data
    base = _measure([*me, "--_generate"], env, args.baseline_limit or args.limit)
    demo = _measure([*me, "--_demo", *(["--stages"] if args.stages else [])], env, args.limit)
    _report(args.customers, base, demo)


if __name__ == "__main__":
    main()
