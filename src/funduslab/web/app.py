"""The HTTP face of :mod:`funduslab.web.service`: one page and a small JSON API (FastAPI).

Routes:

* ``GET /`` — the page (``static/index.html`` + ``app.js`` + ``style.css``, shipped in the
  package; nothing is fetched from elsewhere, and the Content-Security-Policy forbids it).
* ``GET /api/models`` — the served models: picker entries and model cards.
* ``POST /api/predict?model=0&cam=false`` — multipart ``file`` → probabilities and decisions
  (``cam=true`` adds the model's view, CAM overlays and heat maps as base64 PNG).
* ``POST /api/predict_csv?model=0`` — multipart ``files`` → ``predictions.csv``
  (``id,p_<label>…,<label>…``, as ``funduslab predict`` writes it), as a download.

Every refusal is JSON ``{"error": "<one line>"}`` with a fitting status (400, 404, 413, 415,
422, 503). Request bodies are counted as they arrive, so an oversized upload is cut off at the
limit instead of being spooled to disk whole. Model work runs in worker threads, queued by the
service's lock.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from funduslab.web.service import ModelService, ServedModel
from funduslab.web.validate import MAX_FILE_BYTES, MAX_FILES, RequestError

__all__ = ["MAX_BATCH_BYTES", "create_app"]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 200 * 1024 * 1024  # one /api/predict_csv request, all files together
_FORM_OVERHEAD = 1024 * 1024  # multipart boundaries and headers around a file
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _SecurityHeaders:
    """ASGI middleware: every response carries :data:`_HEADERS` (CSP: nothing from elsewhere)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]],
                       send: Callable[..., Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in _HEADERS.items():
                    if key not in headers:
                        headers[key] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class _BodyTooLarge(Exception):
    """The request body passed its limit while it was being read."""


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _static_text(name: str) -> str:
    return resources.files("funduslab.web").joinpath("static", name).read_text("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_files(request: Request, field: str, limit: int,
                      too_large: str) -> list[tuple[str | None, bytes]]:
    """The uploads of multipart ``field``, reading at most ``limit`` body bytes.

    Raises:
        RequestError: 413 over ``limit``; 400 a malformed form or no file under ``field``.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestError(413, f"{too_large} (the request is {_mb(int(length))})")
    seen = 0
    receive = request.receive

    async def counted() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _BodyTooLarge
        return message

    limited = Request(request.scope, counted)
    try:
        async with limited.form(max_files=MAX_FILES + 1, max_fields=16) as form:
            items = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
            return [(item.filename, await item.read()) for item in items]
    except _BodyTooLarge:
        raise RequestError(413, too_large) from None
    except (MultiPartException, StarletteHTTPException) as err:
        detail = getattr(err, "message", None) or getattr(err, "detail", "") or str(err)
        raise RequestError(400, f"malformed upload: {detail}") from None


def create_app(models: ModelService | Sequence[ServedModel],
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The web app over ``models`` (a :class:`ModelService`, or models to wrap in one).

    Args:
        models: What to serve.
        allowed_hosts: ``Host`` header values to answer (a guard against DNS rebinding when
            bound to 127.0.0.1); ``None`` answers any.
    """
    service = models if isinstance(models, ModelService) else ModelService(models)
    app = FastAPI(title="funduslab", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    app.add_middleware(_SecurityHeaders)
    app.add_exception_handler(RequestError, _refused)
    app.add_exception_handler(RequestValidationError, _bad_params)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.include_router(_router)
    return app


def _service(request: Request) -> ModelService:
    """The :class:`ModelService` of the app answering ``request``."""
    return request.app.state.service


async def _refused(request: Request, err: RequestError) -> JSONResponse:
    log.info("refused %s %s: %s", request.method, request.url.path, err.message)
    return _error(err.status, err.message)


async def _bad_params(request: Request, err: RequestValidationError) -> JSONResponse:
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
             for e in err.errors()]
    return _error(400, "bad request parameters: " + "; ".join(parts))


async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
    message = err.detail if isinstance(err.detail, str) else "request refused"
    if err.status_code == 404:
        message = f"no such page: {request.url.path[:80]}"
    return _error(err.status_code, message)


_router = APIRouter()


@_router.get("/", response_class=HTMLResponse)
async def _index() -> HTMLResponse:
    return HTMLResponse(_static_text("index.html"))


@_router.get("/static/{name}")
async def _static(name: str) -> Response:
    if name not in _STATIC:  # a fixed list: no path ever reaches the file system
        raise RequestError(404, f"no such file: {name[:80]!r}")
    return Response(_static_text(name), media_type=_STATIC[name])


@_router.get("/api/models")
async def _list_models(request: Request) -> JSONResponse:
    service = _service(request)
    return JSONResponse({"models": [m.info for m in service.models],
                         "limits": {"max_file_mb": MAX_FILE_BYTES // (1024 * 1024),
                                    "max_files": MAX_FILES,
                                    "max_batch_mb": MAX_BATCH_BYTES // (1024 * 1024)},
                         "cam_method": service.cam_method})


@_router.post("/api/predict")
async def _predict(request: Request, model: str = "0", cam: bool = False,
                  image: bool = False) -> JSONResponse:
    service = _service(request)
    service.resolve(model)  # a bad model key fails before the upload is read
    limit = MAX_FILE_BYTES + _FORM_OVERHEAD
    files = await _read_files(request, "file", limit,
                              f"the upload is larger than the {_mb(MAX_FILE_BYTES)} limit "
                              "per file")
    if len(files) != 1:
        raise RequestError(400, f"attach exactly one image as multipart field 'file' "
                                f"(got {len(files)}); for several use /api/predict_csv")
    name, data = files[0]
    result = await run_in_threadpool(service.predict, model, data, name, cam)
    return JSONResponse(result.as_json(images=cam or image))


@_router.post("/api/predict_csv")
async def _predict_csv(request: Request, model: str = "0") -> Response:
    service = _service(request)
    served = service.resolve(model)
    files = await _read_files(request, "files", MAX_BATCH_BYTES + _FORM_OVERHEAD,
                              f"the upload is larger than the {_mb(MAX_BATCH_BYTES)} limit "
                              "per request: send fewer files at a time")
    text = await run_in_threadpool(service.predictions_csv, model, files)
    filename = re.sub(r"[^A-Za-z0-9._-]+", "_", f"predictions_{served.name}.csv")
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
