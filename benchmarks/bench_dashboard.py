"""The Overview dashboard (/analytics/, 8 charts) in headless Chromium: time to interactive.

The figure: the dashboard page with its 8 charts is interactive in under 2 s in
the browser (on the demo brand with 1 000 000 customers; pass
``--customers 1000000`` or a folder of that build to ``--data-dir``).

It serves a demo data folder with ``siyu serve`` (a subprocess on a free port),
creates an analyst (``siyu user create``), signs in with Playwright and loads
/analytics/ ``--repeats`` times in one browser context. The first load is cold
(the server's query cache is empty and the vega-embed bundle not yet in the
browser's cache; the server keeps answers until new events arrive), the others
warm (median reported). For each load, in milliseconds from navigation start:

- DOMContentLoaded;
- all charts drawn: the 8th ``.metric-card .chart[data-chart-ready] svg`` (charts.js
  sets ``data-chart-ready`` when vega-embed's promise resolves);
- interactive: as soon as all 8 charts are drawn and no htmx request is in flight,
  Playwright clicks the "Date range" label; the time the page's click handler runs
  is the figure (a long task still running delays it; long tasks are counted too).

Baseline, same run: the same page's shell, every card's htmx request answered
204 (so nothing is swapped and no chart drawn) through ``page.route``, in its own
context; ratio = dashboard / shell. Then the filter change: from the loaded
dashboard, select "last 7 days" and time until all 8 cards are swapped in again
and drawn (first cold: new queries; median of the rest warm). Per card it prints
the server's time (request sent to first byte, from the browser's resource timing)
so a slow card shows up, and at the end (unless ``--no-diagnose``) each card's query
alone and all 8 cards' metrics in one overview query, cold. Before anything is
timed, a shell load and one card over an unused day warm the server up (imports,
event store opened), so "cold" means a server that is up but has no cached answer.
The server's own dashboard warm-up (``SIYU_DASHBOARD_WARMUP``, which computes the
default view in the background at start) is off unless ``--warmup``: with it the
first load usually finds the answer already computed.

    .venv/bin/python benchmarks/bench_dashboard.py --data-dir /tmp/bench-dashboard/100k
    .venv/bin/python benchmarks/bench_dashboard.py                        # builds a 100 000-customer demo first
    .venv/bin/python benchmarks/bench_dashboard.py --customers 1000000    # the figure's brand (slow to build)

``--data-dir`` is used in place: the analyst ``bench-dashboard`` is created there
(its password reset when it exists) and the server syncs the event store as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

FIGURE_CUSTOMERS, FIGURE_SECONDS = 1_000_000, 2.0
CHARTS = 8
USERNAME = "bench-dashboard"
CHROMIUM = os.environ.get("SIYU_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]
CARD_URL = "/analytics/overview/"
DRAWN = ".metric-card .chart[data-chart-ready] svg, .metric-card .chart[data-chart-ready] canvas"
BIN = Path(sys.executable).parent

# Runs in every document before its scripts: counts htmx requests in flight, notes when the 8th
# chart is drawn (not while a filter change is waiting for its swap), the long tasks, and when a
# click on the date-range control is handled.
PROBE = """
(() => {
  const b = window.__bench = {inflight: 0, requests: 0, chartsAt: null, pending: false, longTasks: [],
                              clickAt: null, clickDelay: null, changeAt: null};
  try {
    new PerformanceObserver(list => { for (const e of list.getEntries()) b.longTasks.push([e.startTime, e.duration]); })
      .observe({type: "longtask", buffered: true});
  } catch (e) {}
  const check = () => {
    const n = document.querySelectorAll(DRAWN).length;
    if (n < CHARTS) { b.chartsAt = null; } else if (!b.pending && b.chartsAt === null) { b.chartsAt = performance.now(); }
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true,
                                                 attributeFilter: ["data-chart-ready"]});
  document.addEventListener("htmx:beforeRequest", () => { b.inflight++; b.requests++; });
  document.addEventListener("htmx:afterRequest", () => { b.inflight--; });
  document.addEventListener("htmx:afterSwap", e => {
    if (e.detail.target && e.detail.target.id === "overview-cards") { b.pending = false; check(); }
  });
  document.addEventListener("change", e => {
    if (e.target.id === "id_range") { b.pending = true; b.chartsAt = null; b.changeAt = performance.now(); }
  }, true);
  document.addEventListener("click", e => {
    if (e.target.closest && e.target.closest("label[for=id_range], #id_range") && b.clickAt === null) {
      b.clickAt = performance.now(); b.clickDelay = b.clickAt - e.timeStamp;
    }
  }, true);
})();
""".replace("DRAWN", json.dumps(DRAWN)).replace("CHARTS", str(CHARTS))
READY = "() => window.__bench && window.__bench.chartsAt !== null && window.__bench.inflight === 0"
SHELL_READY = (f"() => window.__bench && document.readyState !== 'loading' && window.__bench.requests >= {CHARTS}"
               " && window.__bench.inflight === 0")


# -- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def siyu(data_dir: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "siyu"), *args], env={**os.environ, "SIYU_DATA_DIR": data_dir},
                          capture_output=True, text=True, check=check)


def build_demo(customers: int) -> str:
    data_dir = tempfile.mkdtemp(prefix=f"bench-dashboard-{customers}-")
    print(f"building the demo ({customers:,} customers) in {data_dir} ...", flush=True)
    t0 = time.monotonic()
    subprocess.run([str(BIN / "siyu"), "demo", "--customers", str(customers), "--no-serve"],
                   env={**os.environ, "SIYU_DATA_DIR": data_dir}, check=True, stdout=subprocess.DEVNULL)
    print(f"  built in {time.monotonic() - t0:.0f}s", flush=True)
    return data_dir


def create_analyst(data_dir: str) -> str:
    """The analyst to sign in as; an existing one (an earlier run) gets a new password."""
    password = secrets.token_urlsafe(12)
    done = siyu(data_dir, "user", "create", USERNAME, "--role", "data_analyst", "--password", password, check=False)
    if done.returncode != 0:
        reset = ("import django; django.setup(); from django.contrib.auth import get_user_model; "
                 f"u = get_user_model().objects.get(username={USERNAME!r}); u.set_password({password!r}); u.save()")
        subprocess.run([sys.executable, "-c", reset], check=True,
                       env={**os.environ, "SIYU_DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "siyu.settings"})
    return password


@contextmanager
def server(data_dir: str, threads: int, warmup: bool) -> Iterator[str]:
    """``siyu serve`` on a free port until it answers; stopped (and killed if need be) on exit."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"bench-dashboard-serve-{port}.log"
    with log_path.open("w") as log:
        yield from _serve(data_dir, threads, warmup, port, log)


def _serve(data_dir: str, threads: int, warmup: bool, port: int, log: Any) -> Iterator[str]:
    env = {**os.environ, "SIYU_DATA_DIR": data_dir, "SIYU_DASHBOARD_WARMUP": "1" if warmup else "0"}
    proc = subprocess.Popen([str(BIN / "siyu"), "serve", "--port", str(port), "--threads", str(threads)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"siyu serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(url + "/login/", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"siyu serve did not answer in 180 s; see {log.name}") from None
                time.sleep(0.3)
        yield url
    except BaseException:
        print(f"(the server's output is in {log.name})", file=sys.stderr)
        raise
    else:
        os.unlink(log.name)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- one load ------------------------------------------------------------------------------------
@dataclass
class Load:
    dom: float  # ms from navigation start
    drawn: float | None
    interactive: float
    click_delay: float
    long_tasks: int
    long_ms: float
    cards: dict[str, float] = field(default_factory=dict)  # metric -> server ms (sent to first byte)


def card_timings(page) -> tuple[dict[str, float], Any]:
    """Collects, per card request, the server's time: request sent to response's first byte."""
    cards: dict[str, float] = {}

    def done(request) -> None:
        path = request.url.split("?")[0]
        if CARD_URL in path:
            t = request.timing
            cards[path.rstrip("/").rsplit("/", 1)[-1]] = t["responseStart"] - t["requestStart"]

    page.on("requestfinished", done)
    return cards, done


def load_once(page, url: str, shell: bool, timeout_ms: int) -> Load:
    cards, listener = card_timings(page)
    try:
        page.goto(url + "/analytics/", wait_until="domcontentloaded")
        page.wait_for_function(SHELL_READY if shell else READY, timeout=timeout_ms)
        page.click("label[for=id_range]")
        page.wait_for_function("() => window.__bench.clickAt !== null")
        page.wait_for_timeout(50)  # long tasks are reported a little after they end
        b = page.evaluate("""() => ({b: window.__bench,
            dom: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd})""")
    finally:
        page.remove_listener("requestfinished", listener)
    tasks = [(s, d) for s, d in b["b"]["longTasks"] if s < b["b"]["clickAt"]]
    return Load(dom=b["dom"], drawn=b["b"]["chartsAt"], interactive=b["b"]["clickAt"],
                click_delay=b["b"]["clickDelay"], long_tasks=len(tasks), long_ms=sum(d for _, d in tasks),
                cards=dict(cards))


def change_filter(page, url: str, timeout_ms: int) -> tuple[float, dict[str, float]]:
    """From a drawn dashboard (last 30 days), select the last 7 days: ms until 8 new charts are drawn."""
    page.goto(url + "/analytics/", wait_until="domcontentloaded")
    page.wait_for_function(READY, timeout=timeout_ms)
    cards, listener = card_timings(page)
    try:
        page.select_option("#id_range", "7")
        page.wait_for_function(READY + " && window.__bench.changeAt !== null", timeout=timeout_ms)
        b = page.evaluate("() => window.__bench")
    finally:
        page.remove_listener("requestfinished", listener)
    return b["chartsAt"] - b["changeAt"], dict(cards)


# -- report --------------------------------------------------------------------------------------
def s(ms: float | None) -> str:
    return "—" if ms is None else f"{ms / 1000:.2f} s"


def verdict(ms: float) -> str:
    return "met" if ms < FIGURE_SECONDS * 1000 else "NOT MET"


def slowest(cards: dict[str, float]) -> str:
    return ", ".join(f"{k} {v / 1000:.2f}" for k, v in sorted(cards.items(), key=lambda kv: -kv[1]))


def report(dash: list[Load], shell: list[Load], changes: list[tuple[float, dict[str, float]]]) -> None:
    print()
    for i, (d, sh) in enumerate(zip(dash, shell, strict=True)):
        print(f"  load {i + 1} ({'cold' if i == 0 else 'warm'}): dashboard DOMContentLoaded {s(d.dom)}, "
              f"charts {s(d.drawn)}, interactive {s(d.interactive)} (click handled {d.click_delay:.0f} ms after "
              f"it was sent; {d.long_tasks} long tasks, {d.long_ms:.0f} ms) | shell DOMContentLoaded {s(sh.dom)}, "
              f"interactive {s(sh.interactive)}")
        print(f"      server s per card (sent → first byte): {slowest(d.cards)}")
    rows = [("cold", dash[:1], shell[:1], "first load")]
    if len(dash) > 1:
        rows.append(("warm", dash[1:], shell[1:], f"median of {len(dash) - 1}"))
    print()
    for name, d, sh, note in rows:
        inter = statistics.median(x.interactive for x in d)
        drawn = statistics.median(x.drawn for x in d)
        dom = statistics.median(x.dom for x in d)
        base = statistics.median(x.interactive for x in sh)
        print(f"dashboard ({CHARTS} charts), {name}: interactive {s(inter)} ({note}) | all charts drawn {s(drawn)} "
              f"| DOMContentLoaded {s(dom)} | shell {s(base)} ({inter / base:.1f}x) | < {FIGURE_SECONDS:g} s: "
              f"{verdict(inter)}")
    if changes:
        print(f"filter change (30 → 7 days, {CHARTS} charts redrawn), cold: {s(changes[0][0])} "
              f"| server s per card: {slowest(changes[0][1])}")
        if len(changes) > 1:
            print(f"filter change, warm: {s(statistics.median(c for c, _ in changes[1:]))} "
                  f"(median of {len(changes) - 1}) | < {FIGURE_SECONDS:g} s: "
                  f"{verdict(statistics.median(c for c, _ in changes[1:]))}")


# -- main ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="an existing demo build (default: build one in a temporary folder)")
    parser.add_argument("--customers", type=int, default=100_000,
                        help=f"customers of the demo built without --data-dir (the figure: {FIGURE_CUSTOMERS:,})")
    parser.add_argument("--repeats", type=int, default=5, help="loads of the dashboard (first cold)")
    parser.add_argument("--threads", type=int, default=16, help="siyu serve --threads")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for one load's charts")
    parser.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                        help="skip timing each card's query alone")
    parser.add_argument("--keep", action="store_true", help="keep the demo built without --data-dir")
    parser.add_argument("--warmup", action="store_true",
                        help="leave the server's dashboard warm-up on (SIYU_DASHBOARD_WARMUP), as users run it;"
                             " by default it is off so the first load's query is really cold")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SIYU_CHROMIUM)")
    built = args.data_dir is None
    data_dir = build_demo(args.customers) if built else str(Path(args.data_dir).resolve())
    try:
        run(args, data_dir)
    finally:
        if built and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def run(args: argparse.Namespace, data_dir: str) -> None:
    from playwright.sync_api import sync_playwright

    password = create_analyst(data_dir)
    timeout_ms = int(args.timeout * 1000)
    with server(data_dir, args.threads, args.warmup) as url, sync_playwright() as pw:
        print(f"serving {data_dir} on {url} (dashboard warm-up {'on' if args.warmup else 'off'}); "
              f"{args.repeats} loads of /analytics/; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            state = sign_in(browser, url, password)
            contexts = []

            def new_page():
                context = browser.new_context(locale="en-US", viewport={"width": 1366, "height": 900},
                                              storage_state=state)
                contexts.append(context)
                context.add_init_script(PROBE)
                page = context.new_page()
                page.set_default_timeout(timeout_ms)
                return page

            # The shell first: it runs no query, so the dashboard's first load stays cold. Untimed, a
            # shell load and one card over a day no load asks for warm the server up (its first requests
            # import the analytics code and open the event store), as a server that has been up a while.
            warm = shell_page_of(new_page())
            load_once(warm, url, True, timeout_ms)
            day = (date.today() - timedelta(days=60)).isoformat()
            warm.context.request.get(f"{url}{CARD_URL}orders/?range=custom&date_from={day}&date_to={day}",
                                     timeout=timeout_ms)
            shell_page = shell_page_of(new_page())
            shell = [load_once(shell_page, url, True, timeout_ms) for _ in range(args.repeats)]
            dash_page = new_page()
            dash = [load_once(dash_page, url, False, timeout_ms) for _ in range(args.repeats)]
            changes = [change_filter(dash_page, url, timeout_ms) for _ in range(args.repeats)]
            alone = diagnose(contexts[-1], url, sorted(dash[0].cards)) if args.diagnose else None
            for context in contexts:
                context.close()
        finally:
            browser.close()
    report(dash, shell, changes)
    if alone:
        report_alone(*alone)


def shell_page_of(page):
    """The page with every card's request answered 204: htmx swaps nothing, no query runs."""
    page.route(f"**{CARD_URL}**", lambda route: route.fulfill(status=204, body=""))
    return page


def diagnose(context, url: str, metrics: list[str]) -> tuple[dict[str, float], float]:
    """Server seconds of each card's query alone (one request at a time), and of one overview query
    with all the metrics (the CSV export): each over a 30-day range not asked for before, so cold."""
    def timed(path: str, shift: int) -> float:
        end = date.today() - timedelta(days=shift)
        query = f"range=custom&date_from={end - timedelta(days=29)}&date_to={end}"
        t0 = time.monotonic()
        response = context.request.get(f"{url}{path}?{query}", timeout=600_000)
        assert response.ok, (path, response.status)
        return time.monotonic() - t0

    alone = {metric: timed(f"{CARD_URL}{metric}/", 1 + i) for i, metric in enumerate(metrics)}
    return alone, timed("/analytics/export.csv", 1 + len(alone))


def report_alone(alone: dict[str, float], whole: float) -> None:
    print(f"each card's query alone, cold (s): {slowest({k: v * 1000 for k, v in alone.items()})} "
          f"| sum {sum(alone.values()):.2f} s | all 8 cards' metrics in one overview query (CSV export): "
          f"{whole:.2f} s")


def sign_in(browser, url: str, password: str) -> dict:
    """Sign in through the form (Enter in the password field); the session cookie for the other contexts."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(url + "/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", password)
    page.press("#id_password", "Enter")
    page.wait_for_url(lambda u: "/login/" not in u)
    state = context.storage_state()
    context.close()
    return state


if __name__ == "__main__":
    main()
