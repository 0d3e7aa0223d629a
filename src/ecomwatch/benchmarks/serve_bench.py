"""`ecomwatch bench serve`: a bounded load test of the live service on loopback.

One process runs `ecomwatch serve`; a second runs `ecomwatch replay`, sending simulated traffic
in batches of 500 events over several connections for a fixed time. Meanwhile this process
injects fast scrapers (one new IP at a time, stamped with the service's latest event time) and
measures how long after its POST each one shows up in the alerts API — from the first attempt
(a 429 makes it wait the Retry-After second) and from the collector's acceptance — and samples
the resident memory of the serving process and its child (the detector), and the size of the
dashboard's stream message (bounded however many incidents the scrapers open).

The baseline, in the same run: the same client with the same connections and pace against
`null_collector`, a server on the same HTTP stack that counts each body's lines and keeps
nothing: the most this machine's loopback and client let any collector take.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from ecomwatch.benchmarks.child import ecomwatch_command
from ecomwatch.benchmarks.workdir import bench_workdir
from ecomwatch.process_memory import rss_mb, tree_rss_mb
from ecomwatch.testing_servers import free_port


async def null_collector(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that answers every request as the collector would accept all its lines."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    lines = 0
    more = True
    while more:
        message = await receive()
        lines += message.get("body", b"").count(b"\n")
        more = message.get("more_body", False)
    answer = {"status": "ready"} if scope["path"] == "/readyz" else {"accepted": lines}
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send(
        {"type": "http.response.body", "body": json.dumps({**answer, "rejected": []}).encode()}
    )


def wait_ready(url: str, server: subprocess.Popen[str]) -> None:
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"the server ended: {server.communicate()[1][-2000:]}")
        try:
            if _get(url + "/readyz")["status"] == "ready":
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready after a minute")


def _start_replay(
    traffic: Path, url: str, seconds: float, connections: int, rate: float | None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ecomwatch_command("replay", str(traffic), "--to", url,
         "--batch", "500", "--connections", str(connections), "--for", str(seconds),
         "--json", *(["--rate", str(rate)] if rate else [])),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip


def _finish_replay(sender: subprocess.Popen[str]) -> dict[str, Any]:
    out, errors = sender.communicate()
    if sender.returncode != 0:
        raise RuntimeError(f"replay failed: {errors[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "ECOMWATCH_TOKENS"}


@contextmanager
def running_null_collector() -> Iterator[str]:
    """`null_collector` served by uvicorn on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "ecomwatch.benchmarks.serve_bench:null_collector",
         "--port", str(port), "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    try:
        wait_ready(url, server)
        yield url
    finally:
        server.terminate()
        server.communicate(timeout=60)


def null_baseline(
    traffic: Path, *, seconds: float, connections: int, rate: float | None
) -> dict[str, Any]:
    """The replay's figures against `null_collector`."""
    with running_null_collector() as url:
        return _finish_replay(_start_replay(traffic, url, seconds, connections, rate))


def _mb_per_minute(samples: list[tuple[float, float]]) -> float | None:
    """The least-squares slope of memory over time, in MB per minute."""
    try:
        fit = statistics.linear_regression([t for t, _ in samples], [mb for _, mb in samples])
    except statistics.StatisticsError:  # fewer than two samples, or all at one time
        return None
    return round(fit.slope * 60, 1)


def _median_by_minute(samples: list[tuple[float, float]]) -> list[float]:
    """The median memory of each minute of the run (a trend, without the swings of commits)."""
    minutes: dict[int, list[float]] = {}
    for t, mb in samples:
        minutes.setdefault(int(t // 60), []).append(mb)
    return [round(statistics.median(minutes[m]), 1) for m in sorted(minutes)]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _stream_message_bytes(url: str) -> int:
    """The size of one message of the dashboard's event stream (what a browser gets a second:
    the summary, the first page of incidents, the incidents-over-time chart)."""
    with urllib.request.urlopen(url + "/api/stream", timeout=30) as response:
        size = 0
        while line := response.readline():
            if line.startswith(b"data: "):
                size += len(line)
            elif line == b"\n" and size:
                return size
    return size


def _post(url: str, rows: list[dict[str, Any]]) -> float:
    """POST, waiting out 429s (the queue is full under load) as any client should; returns
    when (monotonic) the collector accepted it."""
    body = json.dumps(rows).encode()
    while True:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                return time.monotonic()
        except urllib.error.HTTPError as exc:
            if exc.code != 429:
                raise
            time.sleep(float(exc.headers.get("Retry-After", "1")))


def _percentile(sorted_values: list[float], share: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))], 3)


def _scraper(n: int, at_us: int) -> tuple[str, list[dict[str, Any]]]:
    ip = f"203.0.113.{n % 250 + 1}"
    when = datetime.fromtimestamp(at_us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [
        {"event_time": when, "event_type": "view", "product_id": 9_000_000 + n * 1000 + i,
         "category_id": 1, "price": 1.0, "user_id": 1, "user_session": f"bench-scraper-{n}",
         "ip": ip, "user_agent": "Mozilla/5.0 bench"}
        for i in range(120)
    ]  # fmt: skip
    return ip, rows


def run_serve_bench(
    *,
    seconds: float,
    events: int,
    connections: int,
    workdir: Path | None,
    console: Console,
    rate: float | None = None,
    baseline_seconds: float = 30,
) -> dict[str, Any]:
    with bench_workdir(workdir, "ecomwatch-bench-serve-") as base:
        return _serve_bench(
            base, seconds=seconds, events=events, connections=connections, console=console,
            rate=rate, baseline_seconds=baseline_seconds,
        )  # fmt: skip


def _serve_bench(
    base: Path,
    *,
    seconds: float,
    events: int,
    connections: int,
    console: Console,
    rate: float | None,
    baseline_seconds: float,
) -> dict[str, Any]:
    from ecomwatch.simulate.traffic import TrafficSpec, generate
    from ecomwatch.simulate.writers import write_traffic

    traffic = base / f"traffic-{events}.csv"
    if not traffic.exists():
        console.print(f"simulating {events:,} events → {traffic} (not timed)")
        write_traffic(generate(TrafficSpec(events=events, seed=1)), traffic)
    console.print(f"baseline: {baseline_seconds:.0f} s against a collector that keeps nothing")
    null = null_baseline(traffic, seconds=baseline_seconds, connections=connections, rate=rate)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A fresh lake each run: an old one's alerts would answer for this run's scrapers.
    lake = Path(tempfile.mkdtemp(prefix="lake-", dir=base))
    server = subprocess.Popen(
        ecomwatch_command("serve", "--lake", str(lake), "--port", str(port)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    try:
        wait_ready(url, server)
        console.print(f"loading for {seconds:.0f} s with {connections} connections of 500 events")
        sender = _start_replay(traffic, url, seconds, connections, rate)
        rss: list[tuple[float, float]] = []  # the service with its child processes
        parent_rss: list[tuple[float, float]] = []  # the service's own process
        delays: list[float] = []  # from the first POST attempt to the alert
        after_accept: list[float] = []  # from the collector's 2xx to the alert
        feed: list[tuple[float, float]] = []  # the dashboard's stream message, bytes
        started = time.monotonic()
        n = 0
        while sender.poll() is None:
            elapsed = time.monotonic() - started
            rss.append((elapsed, tree_rss_mb(server.pid)))
            parent_rss.append((elapsed, rss_mb(server.pid)))
            feed.append((elapsed, _stream_message_bytes(url)))
            latest = _get(url + "/api/summary")["live"].get("latest_event_us")
            if latest and elapsed > 5:  # once the load runs: a scraper, then wait for its alert
                ip, rows = _scraper(n, latest)
                n += 1
                sent = time.monotonic()
                accepted = _post(url + "/v1/events", rows)
                while time.monotonic() - sent < 30:
                    if _get(f"{url}/api/entities/ip/{ip}")["alerts"]:
                        delays.append(time.monotonic() - sent)
                        after_accept.append(time.monotonic() - accepted)
                        break
                    time.sleep(0.02)
            time.sleep(1.0)
        load = _finish_replay(sender)
        incidents = _get(url + "/api/incidents?limit=1")["total"]
    finally:
        server.terminate()
        _, server_errors = server.communicate(timeout=300)
        shutil.rmtree(lake, ignore_errors=True)
    after_first_minute = [(t, mb) for t, mb in rss if t >= 60] or rss
    delays.sort()
    after_accept.sort()
    return {
        "seconds": load["seconds"],
        "events_accepted": load["accepted"],
        "events_per_s": load["events_per_s"],
        "baseline_events_per_s": null["events_per_s"],
        "ratio_to_baseline": round(load["events_per_s"] / null["events_per_s"], 3)
        if null["events_per_s"]
        else None,
        "request_p50_ms": load["p50_ms"],
        "request_p99_ms": load["p99_ms"],
        "baseline_request_p50_ms": null["p50_ms"],
        "retries_429": load["retries_429"],
        "attacks_injected": n,
        "attacks_alerted": len(delays),
        "event_to_alert_p50_s": round(statistics.median(delays), 3) if delays else None,
        "event_to_alert_max_s": round(delays[-1], 3) if delays else None,
        "event_to_alert_p99_s": _percentile(delays, 0.99),
        "accepted_to_alert_p50_s": _percentile(after_accept, 0.5),
        "accepted_to_alert_p99_s": _percentile(after_accept, 0.99),
        "serve_rss_mb_first": round(rss[0][1], 1) if rss else None,
        "serve_rss_mb_after_1_min_min": round(min(mb for _, mb in after_first_minute), 1)
        if after_first_minute
        else None,
        "serve_rss_mb_after_1_min_max": round(max(mb for _, mb in after_first_minute), 1)
        if after_first_minute
        else None,
        "serve_rss_mb_per_min_after_1_min": _mb_per_minute(after_first_minute),
        "serve_rss_mb_median_by_minute": _median_by_minute(rss),
        "parent_rss_mb_median_by_minute": _median_by_minute(parent_rss),
        "serve_rss_mb_last": round(rss[-1][1], 1) if rss else None,
        "incidents_at_end": incidents,
        "dashboard_message_bytes_median_by_minute": _median_by_minute(feed),
        "dashboard_message_bytes_max": max((b for _, b in feed), default=None),
        "clean_stop": server.returncode == 0,
        "stop_message": server_errors.strip().splitlines()[-1] if server_errors else "",
        "connections": connections,
        "offered_rate": rate,
        "cpus": os.cpu_count(),
    }
