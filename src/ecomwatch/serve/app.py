"""The HTTP side of `ecomwatch serve`: collector, health, API and metrics (FastAPI).

Only `POST /v1/events` writes. With tokens configured, every route but the health checks needs
`Authorization: Bearer <token>` (compared in constant time); tokens never appear in logs.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import secrets
import threading
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from ecomwatch.detect.alert import iso
from ecomwatch.detect.incident import IncidentState
from ecomwatch.detect.incident_actions import ACKNOWLEDGE, RESOLVE, ActionError
from ecomwatch.detect.rules import KeyKind, Severity
from ecomwatch.serve.collector import BodyError
from ecomwatch.serve.incident_view import IncidentQuery
from ecomwatch.serve.service import Service

RETRY_AFTER_S = 1
STREAM_EVERY_S = 1
# Everything the dashboard loads is served from the installed packages (no CDN).
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "plotly.min.js": "text/javascript; charset=utf-8",
}
INCIDENT_STATES = tuple(s.value for s in IncidentState if s is not IncidentState.MERGED)
SEVERITIES = tuple(s.value for s in Severity)
_NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


@functools.cache
def _asset_bytes(name: str) -> bytes:
    package = "plotly" if name == "plotly.min.js" else "ecomwatch.serve"
    folder = "package_data" if package == "plotly" else "static"
    return resources.files(package).joinpath(f"{folder}/{name}").read_bytes()


def create_app(service: Service, *, tokens: Sequence[str] = ()) -> FastAPI:
    app = FastAPI(title="ecomwatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stopping = threading.Event()  # set on shutdown: ends the event streams
    allowed = [t.encode() for t in tokens if t]

    def authorized(request: Request) -> None:
        if not allowed:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        given = token.strip().encode()
        # Compare against every token, always, so timing tells nothing about which matched.
        ok = False
        for candidate in allowed:
            ok |= hmac.compare_digest(given, candidate)
        if scheme.lower() != "bearer" or not ok:
            raise HTTPException(
                401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )

    @app.post("/v1/events", dependencies=[Depends(authorized)])
    async def collect(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length")
        limit = service.limits.max_body_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _count(service, _error(413, f"the body exceeds {limit} bytes"))
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                return _count(service, _error(413, f"the body exceeds {limit} bytes"))
        encoding = request.headers.get("content-encoding")
        request_id = secrets.token_hex(8)
        try:
            # Parsing and validation are CPU work: off the event loop, which keeps serving.
            decoded = await run_in_threadpool(service.submit, bytes(body), encoding, request_id)
        except BodyError as exc:
            return _count(service, _error(exc.status, str(exc)))
        if decoded is None:
            response = _error(429, "the pipeline is busy; retry after the delay")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return _count(service, response)
        rejected = [
            {"index": r["line"], "reason": r["reason"], "detail": r["detail"]}
            for r in decoded.rejects.select(["line", "reason", "detail"]).to_pylist()
        ]
        status = 200 if not rejected else 207 if decoded.events.num_rows else 422
        return _count(
            service,
            JSONResponse(
                {
                    "request_id": request_id,
                    "accepted": decoded.events.num_rows,
                    "rejected": rejected,
                },
                status_code=status,
            ),
        )

    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        page = resources.files("ecomwatch.serve").joinpath("static/index.html").read_bytes()
        return Response(page, media_type="text/html; charset=utf-8", headers=_NO_SNIFF)

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, "no such asset")
        return Response(_asset_bytes(name), media_type=ASSETS[name], headers=_NO_SNIFF)

    @app.get("/api/stream", dependencies=[Depends(authorized)])
    async def stream(request: Request) -> StreamingResponse:
        async def messages() -> AsyncIterator[str]:
            while not app.state.stopping.is_set():
                payload = {
                    "summary": summarize(service),
                    "incidents": service.incidents.query(IncidentQuery()),
                    "incidents_over_time": service.incidents.over_time(),
                }
                yield f"data: {json.dumps(payload)}\n\n"
                for _ in range(STREAM_EVERY_S * 10):
                    if app.state.stopping.is_set() or await request.is_disconnected():
                        return
                    await asyncio.sleep(0.1)

        return StreamingResponse(
            messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if service.running and service.error is None:
            return JSONResponse({"status": "ready", "queue_depth": service.source.depth})
        reason = str(service.error) if service.error else "the pipeline is not running"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    @app.get("/metrics", dependencies=[Depends(authorized)])
    def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/summary", dependencies=[Depends(authorized)])
    def summary() -> dict[str, Any]:
        return summarize(service)

    @app.get("/api/alerts", dependencies=[Depends(authorized)])
    def alerts(limit: int = 100) -> list[dict[str, Any]]:
        return service.alerts(max(1, min(limit, 10_000)))

    @app.get("/api/incidents", dependencies=[Depends(authorized)])
    def incidents(
        state: str | None = None,
        severity: str | None = None,
        kind: str | None = None,
        q: str | None = None,
        since: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> dict[str, Any]:
        """A page of incidents, newest first; `q` is an IP, an entity or words of a title."""
        if state is not None and state not in INCIDENT_STATES:
            raise HTTPException(422, f"state is one of {', '.join(INCIDENT_STATES)}")
        if severity is not None and severity not in SEVERITIES:
            raise HTTPException(422, f"severity is one of {', '.join(SEVERITIES)}")
        query = IncidentQuery(
            state=state,
            severity=severity,
            kind=kind,
            text=q,
            since=since,
            limit=max(1, min(limit, 200)),
            offset=max(0, offset),
        )
        named = service.incidents_naming(q.strip()) if q and q.strip() else None
        return service.incidents.query(query, named)

    @app.get("/api/incidents/{incident_id}", dependencies=[Depends(authorized)])
    def incident(incident_id: str) -> dict[str, Any]:
        found = service.incident(incident_id)
        if found is None:
            raise HTTPException(404, f"no incident {incident_id}")
        return found

    @app.post("/api/incidents/{incident_id}/{action}", dependencies=[Depends(authorized)])
    async def act(incident_id: str, action: str, request: Request) -> dict[str, Any]:
        """`ack` or `resolve`; a JSON body may name who acts: {"by": "dana"}."""
        verb = {"ack": ACKNOWLEDGE, "resolve": RESOLVE}.get(action)
        if verb is None:
            raise HTTPException(404, "the actions are ack and resolve")
        body = await request.body()
        try:
            by = str(json.loads(body).get("by") or "api") if body.strip() else "api"
        except (ValueError, AttributeError):
            raise HTTPException(422, 'the body is JSON like {"by": "dana"}') from None
        at = iso(datetime.now(UTC))
        try:
            return service.incidents.act(incident_id, verb, by=by[:100], at=at)
        except KeyError:
            raise HTTPException(404, f"no incident {incident_id}") from None
        except ActionError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/api/entities/{kind}/{entity:path}", dependencies=[Depends(authorized)])
    def entity(kind: str, entity: str) -> dict[str, Any]:
        if kind not in tuple(KeyKind):
            raise HTTPException(404, f"no entity type {kind!r}")
        return service.entity(kind, entity)

    return app


def summarize(service: Service) -> dict[str, Any]:
    """The dashboard's figures: live traffic per minute, funnel, tops, alerts, pipeline state."""
    minutes = service.traffic_minutes()
    totals: dict[str, float] = {}
    for minute in minutes:
        for key, value in minute.items():
            if key != "minute_us":
                totals[key] = totals.get(key, 0) + value
    by_severity = service.alert_count()
    live = service.live.published
    flagged: dict[int, int] = live.get("flagged_minutes", {})
    views, carts, purchases = (totals.get(k, 0) for k in ("view", "cart", "purchase"))
    return {
        "events_accepted": service.accepted_events,
        "events_processed": service.stats.processed_events,
        "queue_depth": service.source.depth,
        "lake_commits": service.writer.durable_commits,
        "traffic": totals,
        "funnel": {
            "views": views,
            "carts": carts,
            "purchases": purchases,
            "view_to_cart": round(carts / views, 4) if views else None,
            "cart_to_purchase": round(purchases / carts, 4) if carts else None,
        },
        "live": {k: v for k, v in live.items() if k != "flagged_minutes"},
        "minutes": [{**m, "flagged": flagged.get(m["minute_us"], 0)} for m in minutes[-120:]],
        "alerts": {"total": sum(by_severity.values()), "by_severity": by_severity},
        # a web log's requests, when the service receives any (else null: no web panel)
        "web": service.live_web.published if service.live_web.requests else None,
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _count(service: Service, response: JSONResponse) -> JSONResponse:
    service.metrics.requests.labels(status=str(response.status_code)).inc()
    return response
