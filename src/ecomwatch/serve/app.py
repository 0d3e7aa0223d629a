"""The HTTP side of `ecomwatch serve`: collector, health, API and metrics (FastAPI).

Only `POST /v1/events` writes. With tokens configured, every route but the health checks needs
`Authorization: Bearer <token>` (compared in constant time); tokens never appear in logs.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ecomwatch.serve.collector import BodyError, read_body
from ecomwatch.serve.service import Service

RETRY_AFTER_S = 1


def create_app(service: Service, *, tokens: Sequence[str] = ()) -> FastAPI:
    app = FastAPI(title="ecomwatch", docs_url=None, redoc_url=None, openapi_url=None)
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
        try:
            rows = read_body(
                bytes(body),
                encoding=request.headers.get("content-encoding"),
                limits=service.limits,
            )
        except BodyError as exc:
            return _count(service, _error(exc.status, str(exc)))
        request_id = secrets.token_hex(8)
        decoded = service.submit(rows, request_id)
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
        minutes = service.traffic_minutes()
        totals: dict[str, float] = {}
        for minute in minutes:
            for key, value in minute.items():
                if key != "minute_us":
                    totals[key] = totals.get(key, 0) + value
        alerts = service.alerts(10_000)
        by_severity: dict[str, int] = {}
        for alert in alerts:
            by_severity[alert["severity"]] = by_severity.get(alert["severity"], 0) + 1
        return {
            "events_accepted": service.accepted_events,
            "events_processed": service.stats.processed_events,
            "queue_depth": service.source.depth,
            "lake_commits": len(service.writer.commits),
            "traffic": totals,
            "minutes": minutes[-120:],
            "alerts": {"total": len(alerts), "by_severity": by_severity},
        }

    @app.get("/api/alerts", dependencies=[Depends(authorized)])
    def alerts(limit: int = 100) -> list[dict[str, Any]]:
        return service.alerts(max(1, min(limit, 10_000)))

    @app.get("/api/entities/{kind}/{entity:path}", dependencies=[Depends(authorized)])
    def entity(kind: str, entity: str) -> dict[str, Any]:
        if kind not in ("ip", "subnet", "user", "session", "user_agent", "global"):
            raise HTTPException(404, f"no entity type {kind!r}")
        return service.entity(kind, entity)

    return app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _count(service: Service, response: JSONResponse) -> JSONResponse:
    service.metrics.requests.labels(status=str(response.status_code)).inc()
    return response
