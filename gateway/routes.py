"""HTTP routes of the gateway: pages, ``/api/*``, ``/health`` and ``/metrics``."""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import psutil
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from gateway.admission import current_capacity
from gateway.context import GatewayContext
from gateway.model_loading import load_across_pool
from shared import admission, metrics, models
from shared.capacity import admission_limit
from shared.errors import http_status
from shared.heartbeats import live_workers
from shared.languages import NAMES
from shared.protocol import ProtocolError, loads_untrusted
from shared.queue import queue_depths_async


def _ctx(request: Request) -> GatewayContext:
    return request.app.state.ctx


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(resources.files("gateway").joinpath("static", name).read_text("utf-8"))


async def index(_: Request) -> Response:
    """The product page: what the service is, the demo, the API."""
    return _page("index.html")


async def demo(_: Request) -> Response:
    """The live browser demo (its CSS, JS and sample clip are under ``/static``)."""
    return _page("demo.html")


async def _redis_ok(ctx: GatewayContext) -> bool:
    try:
        return bool(await ctx.redis.ping())
    except Exception:
        return False


async def _workers(ctx: GatewayContext) -> list[dict[str, Any]]:
    try:
        return [w.as_dict() for w in await live_workers(ctx.redis)]
    except Exception:
        return []


async def _live(ctx: GatewayContext) -> dict[str, Any]:
    """Pool-wide live admission: streams admitted, what the workers carry, the limit."""
    capacity = await current_capacity(ctx.redis, ctx.settings)
    limit = admission_limit(capacity, ctx.settings.max_live_streams)
    return {
        "streams": await admission.admitted_count(ctx.redis),
        "capacity_streams": capacity.streams,
        "workers": capacity.workers,
        "measured": capacity.measured,
        "stream_cost": capacity.stream_cost,
        "limit": limit.streams,
        "limited_by": limit.reason,
        "latency_target_s": ctx.settings.live_latency_target_s,
    }


async def health(request: Request) -> JSONResponse:
    """503 when nobody can transcribe (Redis down or no worker alive), for load balancers."""
    ctx = _ctx(request)
    redis_ok = await _redis_ok(ctx)
    workers = await _workers(ctx) if redis_ok else []
    healthy = redis_ok and bool(workers)
    # Restarts of `whisper-appliance up`'s children; null without `up` (imported here so
    # this handler's change stays in it).
    from shared import supervisor_status

    supervisor = None
    if redis_ok:
        try:
            supervisor = await supervisor_status.read(ctx.redis, ctx.settings.supervisor_id)
        except Exception:
            supervisor = None
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "whisper_model": ctx.settings.model,
        "connected_clients": ctx.connections,
        "memory_usage": {"rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)},
        "uptime": round(time.time() - ctx.started_at, 1),
        "redis": "ok" if redis_ok else "unreachable",
        "workers": len(workers),
        "live_workers": [{k: w[k] for k in ("id", "host", "pid", "models", "busy")} for w in workers],
        "supervisor": supervisor,
    }
    return JSONResponse(body, status_code=200 if healthy else 503)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus exposition. Queue depth and live workers are read from Redis now, at
    scrape time, so every gateway replica reports the same current figures."""
    ctx = _ctx(request)
    metrics.WS_CONNECTIONS.set(ctx.connections)
    if await _redis_ok(ctx):
        for name, depth in (await queue_depths_async(ctx.redis)).items():
            metrics.QUEUE_DEPTH.labels(queue=name).set(depth)
        metrics.WORKERS_ALIVE.set(len(await _workers(ctx)))
        live = await _live(ctx)
        metrics.LIVE_STREAMS.set(live["streams"])
        metrics.LIVE_CAPACITY.set(live["capacity_streams"])
    body, content_type = metrics.exposition(metrics.GATEWAY_REGISTRY)
    return Response(body, media_type=content_type)


async def api_status(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    redis_ok = await _redis_ok(ctx)
    queues: dict[str, int] = {}
    if redis_ok:
        queues = await queue_depths_async(ctx.redis)
    return JSONResponse(
        {
            "model": ctx.settings.model,
            "models_available": models.available_names(),
            "connected_clients": ctx.connections,
            "redis": "ok" if redis_ok else "unreachable",
            "workers": await _workers(ctx) if redis_ok else [],
            "queue_depth": queues,
            "live": await _live(ctx) if redis_ok else None,
            "uptime": round(time.time() - ctx.started_at, 1),
            "limits": {
                "max_audio_bytes": ctx.settings.max_audio_bytes,
                "max_clients": ctx.settings.max_clients,
                "job_timeout_s": ctx.settings.job_timeout_s,
            },
        }
    )


async def api_models(_: Request) -> JSONResponse:
    """Models servable offline here, plus the size names a worker can download when online."""
    return JSONResponse(
        {
            "models": [models.lookup(n).as_dict() for n in models.available_names()],
            "downloadable": list(models.HUB_SIZES),
            "backends": models.installed_backends(),
            "default_backend": models.default_backend(),
        }
    )


async def api_languages(request: Request) -> JSONResponse:
    """``/api/languages?model=NAME`` (default: the deployment's model): the codes the
    model accepts as ``language``; English-only models list ``en`` alone."""
    name = request.query_params.get("model") or _ctx(request).settings.model
    try:
        spec = models.lookup(name)
    except models.UnknownModelError as exc:
        return JSONResponse({"code": "unknown_model", "message": str(exc)}, 404)
    return JSONResponse(
        {
            "model": spec.name,
            "multilingual": spec.multilingual,
            "detection": spec.multilingual,
            "translation": spec.multilingual,
            "languages": [{"code": code, "name": NAMES[code]} for code in spec.languages],
        }
    )


async def api_load_model(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    try:
        body = loads_untrusted(await request.body() or b"{}")
        name = body.get("model_name") or body.get("model") if isinstance(body, dict) else None
    except ValueError:
        name = None
    if not isinstance(name, str) or not name:
        return JSONResponse({"code": "missing_field", "message": "Body must be JSON with 'model_name'"}, 400)
    try:
        return JSONResponse(await load_across_pool(ctx, name))
    except ProtocolError as exc:
        # The model named is what this request acts on: an unknown one is Not Found (404).
        status = http_status(exc.code, target=True)
        return JSONResponse({"code": str(exc.code), "message": exc.message}, status)
