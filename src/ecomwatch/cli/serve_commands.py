"""`ecomwatch serve` (collector, API, metrics) and `ecomwatch replay` (a file into a collector)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from ecomwatch.cli.alert_outputs import (
    Listeners,
    StoreOption,
    WebhookOption,
    close_glue_sync,
    close_store_writer,
    close_webhook,
    open_glue_sync,
    open_store_writer,
    open_webhook,
)
from ecomwatch.cli.detect_commands import RulesOption, load_rules_or_exit
from ecomwatch.cli.metrics_outputs import MetricsOption, close_metrics, metrics_kinds, open_metrics
from ecomwatch.cli.weblog_commands import (
    FormatOption,
    SessionCookieOption,
    UrlMapOption,
    with_weblog,
)
from ecomwatch.console import error_line

err = Console(stderr=True, soft_wrap=True)
TOKENS_VARIABLE = "ECOMWATCH_TOKENS"


def _draining_server_class():  # type: ignore[no-untyped-def]
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn, but SIGINT/SIGTERM only stop the server: uvicorn re-raises the signal on
        exit, which would kill the process before the pipeline drains and commits."""

        on_exit: Callable[[], None] | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.on_exit is not None:
                self.on_exit()  # ends the dashboard's event streams, which never end by themselves
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return DrainingServer


def serve(
    lake: Annotated[str, typer.Option("--lake", help="Lake directory (or s3://) to write.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    alerts: Annotated[
        Path | None,
        typer.Option("--alerts", help="Alerts file (default: inside the lake's aux folder)."),
    ] = None,
    rules: RulesOption = None,
    store: StoreOption = None,
    webhook: WebhookOption = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML configuration file.", exists=True, dir_okay=False),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Read a Kinesis stream (kinesis://STREAM) instead of running the collector.",
        ),
    ] = None,
    start_from: Annotated[
        str | None,
        typer.Option("--from", help="A stream never read: trim-horizon, latest or a time."),
    ] = None,
    metrics: MetricsOption = None,
) -> None:
    """Run the collector (POST /v1/events), the API, /metrics and the live pipeline.

    SIGTERM or Ctrl-C stops taking events, drains the queue, commits the lake and exits: every
    event answered with a 2xx is in the table. Tokens: [serve] tokens in the config, or
    ECOMWATCH_TOKENS=token1,token2. With --source kinesis://STREAM the pipeline reads the stream
    (the dashboard, API and /metrics as usual; POST /v1/events answers 409). /metrics serves
    Prometheus whatever --metrics says.
    """
    import uvicorn

    from ecomwatch.config import ConfigError, load_config
    from ecomwatch.lake.base import LakeError
    from ecomwatch.serve.app import create_app
    from ecomwatch.serve.collector import Limits
    from ecomwatch.serve.memory import use_returning_allocators
    from ecomwatch.serve.service import Service

    use_returning_allocators()
    try:
        settings = load_config(config)
        metric_kinds = metrics_kinds(metrics, settings)
    except (ConfigError, ValueError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc
    tokens = [*settings.serve.tokens, *os.environ.get(TOKENS_VARIABLE, "").split(",")]
    tokens = [t.strip() for t in tokens if t.strip()]
    s = settings.serve
    stream = None
    if source is not None:
        from ecomwatch.cli.stream_commands import open_stream
        from ecomwatch.sources.kinesis_api import is_stream_uri

        if not is_stream_uri(source):
            err.print(error_line(f"--source takes kinesis://STREAM, not {source!r}"))
            raise typer.Exit(2)
        stream = open_stream(source, start=start_from, until_caught_up=False, config=settings)
    glue = open_glue_sync(lake, settings, err)
    try:
        service = Service(
            lake,
            config=settings,
            rules=load_rules_or_exit(rules),
            alerts=alerts,
            limits=Limits(max_body_bytes=s.max_body_bytes, max_batch_rows=s.max_batch_rows),
            commit_seconds=s.commit_seconds,
            batch_seconds=s.batch_seconds,
            batch_rows=s.batch_rows,
            max_queue_events=s.queue_events,
            max_queue_seconds=s.queue_seconds,
            stream=stream,
            on_commit_days=glue.committed if glue is not None else None,
        )
    except LakeError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    hook = open_webhook(
        webhook,
        service.alerts_path,
        settings.webhook,
        live=True,
        dashboard=f"http://{shown}:{port}",
    )
    writer = open_store_writer(store, err, service.alerts_path)
    listeners = Listeners.of(hook, writer)
    for listener in listeners.alerts:
        service.send_alerts_to(listener)
    for listener in listeners.incidents:
        service.send_incidents_to(listener)
    publishing = open_metrics(metric_kinds, service.metrics.registry, settings, err)
    app = create_app(service, tokens=tokens)
    server_class = _draining_server_class()
    server = server_class(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    )
    server.on_exit = app.state.stopping.set
    auth = f"{len(tokens)} token(s)" if tokens else "no authentication (set tokens to require)"
    reading = f"reading {stream.name}, collector off" if stream else "collector on"
    err.print(f"ecomwatch serving on http://{host}:{port}/ — {reading}; lake {lake}; {auth}")
    service.start()
    try:
        server.run()  # returns after SIGINT/SIGTERM, once in-flight requests are answered
    finally:
        err.print("stopping: draining the queue and committing the lake")
        try:
            summary = service.stop()
        finally:
            close_webhook(hook, err)
            store_failed = close_store_writer(writer, store, err)
            glue_failed = close_glue_sync(glue, err)
            close_metrics(publishing, err)
    if summary is not None:
        err.print(
            f"stopped: {summary.accepted:,} events committed in {summary.checkpoints} commits, "
            f"{summary.rejected:,} rejected"
        )
    if store_failed or glue_failed:
        raise typer.Exit(1)


def replay(
    inputs: Annotated[list[Path], typer.Argument(help="REES46 files or web logs to send.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Collector base URL (http://127.0.0.1:8080) or a Kinesis stream "
            "(kinesis://STREAM, name or ARN).",
        ),
    ],
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as accepted).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Pace by event time: 1.0 real time, 60 a minute/s.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Events per request.")] = 500,
    connections: Annotated[int, typer.Option(min=1, max=64, help="Parallel connections.")] = 1,
    compress: Annotated[bool, typer.Option("--gzip", help="gzip request bodies.")] = False,
    repeat_for: Annotated[
        float | None,
        typer.Option("--for", help="Send the files over and over for this many seconds."),
    ] = None,
    per_record: Annotated[
        int,
        typer.Option(
            "--per-record", min=1, max=10_000, help="A stream: events packed in one record."
        ),
    ] = 1,
    partition_key: Annotated[
        str, typer.Option("--partition-key", help="A stream: ip or user_session.")
    ] = "ip",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    url_map: UrlMapOption = None,
    log_format: FormatOption = None,
    session_cookie: SessionCookieOption = None,
) -> None:
    """Send files (REES46 events or web logs) to a running collector (token from
    ECOMWATCH_TOKENS) or into a Kinesis stream (PutRecords), at a chosen pace."""
    import json

    from ecomwatch.config import Config, ConfigError
    from ecomwatch.decode.url_map import UrlMapError
    from ecomwatch.serve.replay import replay as run_replay
    from ecomwatch.sources.kinesis_api import is_stream_uri

    if rate is not None and speed is not None:
        err.print(error_line("give --rate or --speed, not both"))
        raise typer.Exit(2)
    try:
        settings = with_weblog(
            Config(), url_map=url_map, log_format=log_format, session_cookie=session_cookie
        )
    except (ConfigError, UrlMapError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc
    if is_stream_uri(to):
        from ecomwatch.cli.stream_commands import produce

        produce(
            inputs, to, rate=rate, speed=speed, per_record=per_record,
            partition_key=partition_key, console=err, as_json=as_json, config=settings,
        )  # fmt: skip
        return
    token = os.environ.get(TOKENS_VARIABLE, "").split(",")[0].strip() or None
    try:
        stats = run_replay(
            inputs, to, token=token, rate=rate, speed=speed, batch=batch,
            connections=connections, compress=compress, repeat_for_s=repeat_for, config=settings,
        )  # fmt: skip
    except (OSError, ValueError, RuntimeError) as exc:
        err.print(error_line(exc))
        raise typer.Exit(1) from exc
    figures = stats.to_json()
    if as_json:
        print(json.dumps(figures))
    else:
        err.print(
            f"sent {figures['sent']:,} events in {figures['requests']:,} requests: "
            f"{figures['accepted']:,} accepted, {figures['rejected']:,} rejected, "
            f"{figures['retries_429']} retried after 429; {figures['events_per_s']:,} events/s, "
            f"p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms"
        )


def live_demo(directory: Path, port: int) -> None:
    """`ecomwatch demo --live`: serve + a replayed attack scenario, until Ctrl-C."""
    import subprocess
    import sys
    import time
    import urllib.request

    from ecomwatch.serve.replay import replay as run_replay
    from ecomwatch.simulate.attacks import (
        AttackScenario,
        in_chunks,
        labels_path_for,
        write_labels,
    )
    from ecomwatch.simulate.traffic import TrafficSpec
    from ecomwatch.simulate.writers import write_traffic

    directory.mkdir(parents=True, exist_ok=True)
    sample = directory / "live-attacks.csv"
    if not sample.exists():
        err.print(f"simulating a shop's 2.4 hours with attacks → {sample}")
        table, labels = AttackScenario(TrafficSpec(events=50_000, seed=21, days=0.1)).build()
        write_traffic(in_chunks(table), sample)
        write_labels(labels, labels_path_for(sample))
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != TOKENS_VARIABLE}
    server = subprocess.Popen(
        [sys.executable, "-m", "ecomwatch.cli.main", "serve", "--lake",
         str(directory / "live-lake"), "--port", str(port)],
        env=env,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        err.print(
            f"[bold]open {url}/ in a browser[/]; replaying at 60 times real time (Ctrl-C stops)"
        )
        stats = run_replay([sample], url, speed=60.0, batch=500)
        err.print(f"replayed {stats.accepted:,} events; the service keeps running — Ctrl-C to stop")
        server.wait()
    except KeyboardInterrupt:
        err.print("stopping")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=120)
