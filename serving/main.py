"""The FastAPI application: settings, middleware, error handlers, and start-up."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.predictor import META_FILE, Predictor
from model.loading import load_predictor
from renda import __version__
from renda.settings import Settings, get_settings
from serving.page import install_page
from serving.routers import UPLOAD_PATH, router
from serving.retrain import RetrainBusy, Retrainer
from serving.service import ClientGone, ModelNotReady, ModelService, QueueFull
from serving.validation import InputProblem

log = logging.getLogger("renda.http")


def error_body(detail: str, errors: list[dict] | None = None) -> dict:
    return {"detail": detail, "errors": errors or []}


def unreadable_body(cause: BaseException | None) -> str | None:
    """Why a JSON body could not be read, in words, when the cause says so."""
    if isinstance(cause, UnicodeDecodeError):
        return (f"not UTF-8 (byte 0x{cause.object[cause.start]:02x} at position {cause.start}): "
                "send JSON in UTF-8, or a report file as multipart/form-data")
    if isinstance(cause, RecursionError):
        return "JSON nested too deeply to read"
    return None


def _field(loc: tuple | list) -> str:
    """('body', 'paragraphs', 2) → 'paragraphs[2]'."""
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


# POST /v1/reports with a file (multipart/form-data) is served by the upload route; its size limit is the file's.
UPLOAD_ROUTES = {"/v1/reports": UPLOAD_PATH}
UPLOAD_OVERHEAD = 64 * 1024  # multipart headers and the form's other fields, beside the file itself


class BodyLimit:
    """Pure ASGI middleware: 413 for bodies over the limit, counted as they stream in (a missing
    or false Content-Length does not get past it); 415 for POSTs with a body that is neither JSON
    nor, where a file is taken, multipart/form-data (sent on to the upload route, with the file's limit)."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int):
        self.app, self.max_bytes, self.max_upload_bytes = app, max_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        limit = self.max_bytes
        declared = headers.get(b"content-length")
        empty = declared == b"0" or (declared is None and b"transfer-encoding" not in headers)
        if not content_type and empty:
            pass  # a POST without a body (POST /v1/retrain): nothing to type
        elif content_type == "multipart/form-data" and scope["path"] in UPLOAD_ROUTES:
            upload = UPLOAD_ROUTES[scope["path"]]
            scope = {**scope, "path": upload, "raw_path": upload.encode()}
            limit = self.max_upload_bytes
        elif content_type != "application/json":
            shown = content_type or "none"
            also = " (or multipart/form-data with a `file`, on /v1/reports)" if scope["path"] in UPLOAD_ROUTES else ""
            return await self._reject(send, 415, f"Content-Type must be application/json{also} (got {shown})")
        if declared and declared.isdigit() and int(declared) > limit:
            return await self._reject(send, 413, f"request body is {int(declared):,} bytes; the limit is {limit:,}")
        seen, too_large, started = 0, False, False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                too_large = True
                raise _TooLarge()
            return message

        async def guarded(message: Message) -> None:
            # FastAPI catches the error raised while it reads the body and answers 400 itself;
            # that answer is dropped here so the client gets the 413 below.
            nonlocal started
            if too_large and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except _TooLarge:
            pass
        if too_large and not started:
            await self._reject(send, 413, f"request body is over the limit of {limit:,} bytes")

    @staticmethod
    async def _reject(send: Send, status: int, detail: str) -> None:
        body = json.dumps(error_body(detail, [{"field": "body", "message": detail}])).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = []
        for item in error.errors():
            field = _field(item.get("loc", ()))
            kind = item.get("type", "")
            message = item["msg"]
            if kind == "json_invalid":  # its loc is ('body', character offset): the field is the body
                where = item.get("loc", ())[-1:]
                at = f" at character {where[0]}" if where and isinstance(where[0], int) else ""
                field, message = "body", f"malformed JSON{at}: " + str(item.get("ctx", {}).get("error", item["msg"]))
            elif "Expected UploadFile" in message:  # a form field named `file` that is no file part (no file name)
                field = field.split("[")[0]  # `file`, not the list index the upload route takes it by
                message = "must be a file part with a file name (curl -F file=@report.pdf)"
            errors.append({"field": field, "message": message})
        status = 400 if any(e["message"].startswith("malformed JSON") for e in errors) else 422
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(status_code=status, content=error_body(detail, errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(_: Request, error: StarletteHTTPException) -> JSONResponse:
        """The framework's own answers (404, 405, a body it could not read) in the service's error
        shape; an unreadable body says why, where FastAPI says only "error parsing the body"."""
        if error.status_code != 400:
            return JSONResponse(status_code=error.status_code, content=error_body(str(error.detail)), headers=error.headers)
        message = unreadable_body(error.__cause__) or str(error.detail)
        return JSONResponse(status_code=400, content=error_body(f"body: {message}", [{"field": "body", "message": message}]))

    @app.exception_handler(InputProblem)
    async def problem(_: Request, error: InputProblem) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return JSONResponse(status_code=error.status, content=error_body(str(error), [{"field": error.field, "message": error.message}]),
                            headers=headers)

    @app.exception_handler(RetrainBusy)
    async def busy(_: Request, error: RetrainBusy) -> JSONResponse:
        return JSONResponse(status_code=409, content=error_body(str(error)))

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, error: QueueFull) -> JSONResponse:
        return JSONResponse(status_code=503, content=error_body(str(error)), headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, error: ClientGone) -> JSONResponse:
        # nobody reads it: the client closed the connection (499, as nginx logs such a request)
        return JSONResponse(status_code=499, content=error_body(str(error)))

    @app.exception_handler(ModelNotReady)
    async def not_ready(_: Request, error: ModelNotReady) -> JSONResponse:
        return JSONResponse(status_code=503, content=error_body(f"model not ready: {error}"), headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content=error_body("internal error; see the service log"))


class RequestLog:
    """Pure ASGI middleware: each request's id (the client's `x-request-id`, else a new one) on its
    answer, and one JSON log line. Not `@app.middleware("http")`: that wrapper's receive hides a
    client's disconnect from the routes, which ask for it to drop an abandoned request's work."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex[:12]
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(json.dumps({"request_id": request_id, "method": scope["method"], "path": scope["path"],
                                 "status": status, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}))


class BrokenModel(RuntimeError):
    """A model folder that is there but cannot be loaded (its message names the folder, for /readyz)."""


def load_model_folder(folder: Path, threads: int | None = None, **options) -> Predictor:
    """`load_predictor`, but a folder that fails to load is reported in one line naming the folder and,
    where it can tell, the bad file (a missing model keeps its own FileNotFoundError)."""
    try:
        return load_predictor(folder, threads=threads, **options)
    except FileNotFoundError:
        raise
    except Exception as error:
        reason = f"{type(error).__name__}: {error}"
        for path in sorted(Path(folder).glob("*.json")):  # which JSON file is broken, if one is
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as bad:  # JSONDecodeError, UnicodeDecodeError
                reason = f"{path.name} is not valid JSON ({bad})"
                break
            if path.name == META_FILE and not (isinstance(content, dict) and isinstance(content.get("kind"), str)):
                reason = f"{META_FILE} does not say what kind of model this is (no `kind`)"
                break
        raise BrokenModel(f"{folder}: cannot load the model: {reason}") from error


def create_app(settings: Settings | None = None, load: Callable[[], Predictor] | None = None, model_dir: Path | None = None) -> FastAPI:
    """The app. `load` builds the predictor (default: the model folder in settings)."""
    settings = settings or get_settings()
    folder = Path(model_dir or settings.model_dir)
    # BERT inference options from this app's settings (backend, cache, batch budget; the baseline ignores them)
    options = dict(backend=settings.backend, cache_size=settings.cache_size, max_batch_tokens=settings.max_batch_tokens)
    service = ModelService(load or (lambda: load_model_folder(folder, threads=settings.threads or None, **options)),
                           settings.batch_wait_ms, settings.max_batch_paragraphs, settings.max_batch_chars,
                           settings.max_queue_paragraphs)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()  # loads in a thread: /healthz answers at once, /readyz once loaded
        yield
        app.state.retrainer.stop()
        service.stop()

    app = FastAPI(title="renda-sections", version=__version__, lifespan=lifespan,
                  description="Labels the paragraphs of people's congress standing committee work reports by section.")
    app.state.settings, app.state.service = settings, service
    app.state.retrainer = Retrainer(settings, folder, service)
    app.include_router(router)
    install_page(app)  # GET /: the review page
    install_error_handlers(app)
    if settings.cors_origins:  # off unless origins are configured
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"], allow_headers=["*"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_file_bytes + UPLOAD_OVERHEAD)
    app.add_middleware(RequestLog)  # added last, so outermost: the body limit's 413 and 415 are logged and carry the request id too
    return app


def serve(model_dir: Path, host: str, port: int) -> None:
    """Run the service until SIGTERM or Ctrl-C, then exit 0 once the requests in flight are answered.

    It starts even when `model_dir` holds no model or a broken one: /healthz answers and /readyz
    gives the reason with a 503 (so does every model endpoint) instead of the process dying."""
    import signal
    import sys

    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not (Path(model_dir) / META_FILE).is_file():
        log.warning(f"%s holds no trained model (no {META_FILE}): serving anyway, /readyz answers 503 until "
                    "restarted on a model folder (run `make train`, or `make serve`, which trains when there is none)", model_dir)
    # uvicorn handles SIGTERM itself (stops accepting, answers the requests in flight, then shuts the app
    # down) and re-raises the signal afterwards: this handler turns that into a clean exit, status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(create_app(settings, model_dir=model_dir), host=host, port=port, log_level=settings.log_level.lower())
