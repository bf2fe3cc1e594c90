"""Create the web application."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import logging
import os
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlparse

import anyio.to_thread
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hemicare import __version__
from hemicare.audit import service as audit_service
from hemicare.db import engine as db
from hemicare.db.base import local_day
from hemicare.engine import KnowledgeBase, load_default
from hemicare.engine.assessment import Findings, History, finding_names, yes_no_labels
from hemicare.engine.decision_aid import OUT_OF_DATE, out_of_date
from hemicare.engine.intake import NUL_WORDS
from hemicare.engine.plan import diagnosis_label, flagged
from hemicare.engine.render import DELIVERED, WEIGHED
from hemicare.engine.schema import Acupoint
from hemicare.engine.toxin import UNVERIFIED_DOSE
from hemicare.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from hemicare.limits import REASON_MAX
from hemicare.outcomes.service import subscale_words
from hemicare.recalls.service import lateness
from hemicare.sessions.service import HELD_BACK
from hemicare.web import once
from hemicare.web.auth import COOKIE, PasswordChangeRequired, SignInRequired, audit_refusal, signed_in_user
from hemicare.web.charts import icon_array
from hemicare.web.chinese import mark_chinese
from hemicare.web.openapi import api_document
from hemicare.web.turns import Turns

LOG = logging.getLogger("hemicare.web")
HERE = Path(str(resources.files("hemicare.web")))
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # default-src does not cover where forms may post, who may frame a page, or a page's base address: said apart.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


# Threads for the routes that are plain functions (pages, most of the API; the event loop stays free). They share one
# interpreter lock, so more threads than this only take turns at it: with the default 40, 50 clients asking for patient
# pages got 97 pages a second at 11 ms of CPU each, p99 1.4 s against p50 0.4 s; with 4, 132 a second at 8 ms, p99
# 0.44 s (bench/web_load.py). Four still let a thread compute while others wait on the database.
SYNC_THREADS = 4

# The largest request body read: an assessment or a session is a few kilobytes, a full toxin form less than ten. A
# larger body is refused (413) before it is held in memory or parsed (Perimeter).
MAX_BODY_BYTES = 256 * 1024
TOO_LARGE = f"is larger than the {MAX_BODY_BYTES // 1024} KiB a request may carry"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = SYNC_THREADS
    yield


_HEADER_BYTES = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
# Everything but the static files holds patient data or a password handed over once: no browser or proxy keeps it.
_NO_STORE = [*_HEADER_BYTES, (b"cache-control", b"no-store")]
# A static file asked for by an address with its digest (`static_addresses`) never changes under that address.
_IMMUTABLE = (b"cache-control", b"public, max-age=31536000, immutable")


def static_addresses(folder: Path) -> dict[str, str]:
    """Each static file's address with a digest of its contents: a browser that kept the style sheet or script of the
    version before an upgrade fetches the new one, as its address has changed."""
    return {
        path.name: f"/static/{path.name}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def _where(exc: BaseException) -> str:
    """Where an exception was raised: its type and what caused it, and the lines of HemiCare it passed with the last
    line it reached, newest last. What a maintainer needs, without the message, which may quote the patient's data."""
    types: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        types.append(kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}")
        current = current.__cause__ or current.__context__
    frames = traceback.extract_tb(exc.__traceback__)[1:]  # the first is the middleware that caught it
    passed = [
        f"{_source(frame.filename)}:{frame.lineno} {frame.name}"
        for index, frame in enumerate(frames)
        if f"{os.sep}hemicare{os.sep}" in frame.filename or index == len(frames) - 1
    ]
    return f"{' from '.join(types)} at {' > '.join(passed)}"


def _source(filename: str) -> str:
    """A source file named from its package down (hemicare/web/app.py, sqlalchemy/engine/base.py)."""
    for anchor in (f"{os.sep}site-packages{os.sep}", f"{os.sep}src{os.sep}"):
        if anchor in filename:
            return filename.rsplit(anchor, 1)[1]
    return Path(filename).name


Answer = Callable[[Request, int, list[dict[str, str]]], Awaitable[Response]]


class Perimeter:
    """Every request's way in and out of the app: what no route should see is refused here, and every answer leaves
    with the security headers and a log line.

    A plain ASGI middleware: it adds headers to the response start message without buffering the body. Only the
    static files may be cached, and those asked for by their digest are kept for a year. The log line names no
    patient: the method, the route's template, the status and the time to the answer. Refused before any route sees
    them: an address holding a NUL character (422; PostgreSQL cannot compare with it, and a search or a patient code
    holding one failed with a server error) and a body larger than MAX_BODY_BYTES (413; counted as it arrives when
    its length is not declared). A request the app failed to answer (a fault, not the caller's mistake) is answered
    with a reference, and the log line gives the reference and where the fault was but not its message; the fault
    goes no further, so that the server does not log it again with its message and the values in it.
    """

    def __init__(self, app: ASGIApp, answer: Answer, prefixes: Mapping[int, str]) -> None:
        self.app = app
        self.answer = answer  # the app's answer to a request it refuses: its error page, or JSON for the API
        self.prefixes = prefixes  # the prefix each included route is served under, by the route's id

    def route(self, scope: Scope) -> str:
        """The route a request matched, its parameters as names (``/patients/{code}``), never their values; ``-``
        when no route matched (the path asked for may say anything)."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return self.prefixes.get(id(route), "") + path
        return "/static/{path}" if scope["path"].startswith("/static/") else "-"  # the mount sets no route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith("/static/")
        added = _HEADER_BYTES if static else _NO_STORE
        versioned = static and scope["query_string"].startswith(b"v=")
        started = time.perf_counter()
        answered = False

        async def with_headers(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                kept = [_IMMUTABLE] if versioned and message["status"] == 200 else []
                message["headers"] = [*message.get("headers", []), *added, *kept]
                elapsed = (time.perf_counter() - started) * 1000
                LOG.info("%s %s %s %.1f ms", scope["method"], self.route(scope), message["status"], elapsed)
            await send(message)

        if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
            problems = _nul_in_address(scope)
            await (await self.answer(Request(scope, receive), 422, problems))(scope, receive, with_headers)
            return
        length = _declared_length(scope)
        if length is not None and length > MAX_BODY_BYTES:  # said up front: refused before a byte is read
            problems = [{"field": "body", "message": TOO_LARGE}]
            await (await self.answer(Request(scope, receive), 413, problems))(scope, receive, with_headers)
            return
        if length is None and scope["method"] not in ("GET", "HEAD"):  # sent in chunks: counted as it arrives
            receive = _limited(receive)
        try:
            await self.app(scope, receive, with_headers)
        except Exception as exc:
            reference = secrets.token_hex(4)
            LOG.error("%s %s failed, reference %s: %s", scope["method"], self.route(scope), reference, _where(exc))
            if not answered:  # otherwise the answer is cut short and the client sees the connection close
                message = (
                    f"The server failed to answer this request (reference {reference}). If you were saving something, "
                    "open the page again to see whether it was saved. Give the reference to whoever runs HemiCare: "
                    "the server's log says where it failed."
                )
                try:
                    response = await self.answer(Request(scope, receive), 500, [{"field": "", "message": message}])
                except Exception:
                    response = PlainTextResponse(f"The server failed to answer (reference {reference}).", 500)
                await response(scope, receive, with_headers)


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, if it gives one (an unreadable one counts as none: the body is then counted)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else None  # int() refuses 4,300 digits
    return None


def _limited(receive: Receive) -> Receive:
    """``receive`` that raises 413 (answered by the app's handler) once the body outgrows MAX_BODY_BYTES."""
    received = 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise StarletteHTTPException(status.HTTP_413_CONTENT_TOO_LARGE)
        return message

    return counting


def _nul_in_address(scope: Scope) -> list[dict[str, str]]:
    """The address's parts holding a NUL character: the path, or the query parameters by name."""
    found = [{"field": "", "message": f"the address {NUL_WORDS}"}] if "\x00" in scope["path"] else []
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    named = sorted({name for name, value in query if "\x00" in name + value})
    return found + [{"field": name, "message": NUL_WORDS} for name in named]


def point_label(point: Mapping[str, Any] | Acupoint) -> str:
    """An acupoint as its code and pinyin, once where they are the same word (Ashi points have no WHO code)."""
    code, pinyin = (point["code"], point["pinyin"]) if isinstance(point, Mapping) else (point.code, point.pinyin)
    return str(code) if code == pinyin else f"{code} {pinyin}"


def _api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def create_app(
    *, database_url: str | None = None, cookie_secure: bool = True, kb: KnowledgeBase | None = None
) -> FastAPI:
    """The HemiCare web app on a migrated database (run `hemicare db upgrade` first)."""
    engine = db.make_engine(database_url)
    app = FastAPI(
        lifespan=_lifespan,
        title="HemiCare",
        version=__version__,
        description="Evidence-graded, safety-checked care planning for hemifacial spasm. Decision support only.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the reference page is the app's own (web/apidocs.py): no CDN, no inline script
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.schema_head = db.head_revision()
    app.state.sessions = db.session_factory(engine)
    # Page views read in transactions that take no write lock; their audit entries are short separate writes.
    app.state.readers = db.session_factory(db.read_only(engine))
    app.state.kb = kb or load_default()
    app.state.cookie_secure = cookie_secure
    # Plans are computed on the event loop in arrival order, four (about 2 ms) between looks at the sockets: one per
    # look cost about 5% more CPU per plan in bench/web_load.py, and four kept the latency tail as flat.
    app.state.plan_turns = Turns(per_pass=4)
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.templates.env.globals["diagnosis_label"] = diagnosis_label
    app.state.templates.env.globals["point_label"] = point_label
    app.state.templates.env.filters["zh"] = mark_chinese
    app.state.templates.env.filters["icon_array"] = icon_array
    app.state.templates.env.tests["out_of_date"] = lambda aid: out_of_date(aid, dt.date.today())
    app.state.templates.env.tests["flagged"] = flagged
    app.state.templates.env.globals["aid_out_of_date_words"] = OUT_OF_DATE
    app.state.templates.env.globals["unverified_dose"] = UNVERIFIED_DOSE
    app.state.templates.env.filters["subscales"] = subscale_words
    app.state.templates.env.filters["day"] = lambda moment: local_day(moment).isoformat()
    app.state.templates.env.globals["lateness"] = lateness
    app.state.templates.env.globals["delivered"] = DELIVERED
    app.state.templates.env.globals["weighed"] = WEIGHED
    app.state.templates.env.globals["held_back"] = HELD_BACK
    app.state.templates.env.globals["finding_labels"] = yes_no_labels(Findings)
    app.state.templates.env.globals["finding_names"] = finding_names
    app.state.templates.env.globals["history_labels"] = yes_no_labels(History)
    app.state.templates.env.globals["detail_words"] = audit_service.detail_words
    app.state.templates.env.globals["reason_max"] = REASON_MAX
    app.state.templates.env.globals["form_key"] = once.form_key
    # How often a page being typed in tells the server it is in use (app.js): well inside the idle sign-out.
    app.state.templates.env.globals["alive_every_ms"] = 5 * 60 * 1000
    app.state.templates.env.globals["static"] = static_addresses(HERE / "static")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    async def problem(request: Request, code: int, errors: list[dict[str, str]]) -> Response:
        if code == status.HTTP_403_FORBIDDEN:
            await run_in_threadpool(audit_refusal, request)
        if _api(request):
            return JSONResponse({"errors": errors}, status_code=code)
        try:
            user = await run_in_threadpool(signed_in_user, request)  # so that the page keeps its menu
        except SQLAlchemyError:
            user = None  # the error may be the database's own: the page still shows, without the menu
        # "Go back" is a plain link to the page the browser came from (a javascript: link is refused by the CSP).
        came_from = urlparse(request.headers.get("referer", ""))
        back = "/"
        if came_from.netloc == request.url.netloc and came_from.path:
            back = came_from.path + (f"?{came_from.query}" if came_from.query else "")
        templates: Jinja2Templates = app.state.templates
        context = {"code": code, "errors": errors, "user": user, "back": back}
        return templates.TemplateResponse(request, "error.html", context, status_code=code)

    from hemicare.web import api, pages

    mounted = [("" if router is api.router else api.PREFIX, router) for router in api.ROUTERS]
    prefixes = {id(route): prefix for prefix, router in mounted for route in router.routes}
    app.add_middleware(Perimeter, answer=problem, prefixes=prefixes)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> Response:
        return await problem(request, 422, [{"field": p.path, "message": p.message} for p in exc.problems])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(part) for part in err["loc"] if part not in ("body", "query", "path")),
                "message": "is required" if err["type"] == "missing" else str(err["msg"]),  # as a body's field says
            }
            for err in exc.errors()
        ]
        return await problem(request, 422, errors)

    @app.exception_handler(NotFoundError)
    async def _missing(request: Request, exc: NotFoundError) -> Response:
        return await problem(request, 404, [{"field": "", "message": str(exc)}])

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> Response:
        return await problem(request, 409, [{"field": "", "message": str(exc)}])

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> Response:
        return await problem(request, 403, [{"field": "", "message": str(exc)}])

    @app.exception_handler(StarletteHTTPException)  # FastAPI's own and the router's (no such address, method)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == status.HTTP_413_CONTENT_TOO_LARGE:
            return await problem(request, exc.status_code, [{"field": "body", "message": TOO_LARGE}])
        # The router's own (no route has this address, or this method) say only their status's name.
        message = {
            (status.HTTP_404_NOT_FOUND, "Not Found"): "there is nothing at this address",
            (status.HTTP_405_METHOD_NOT_ALLOWED, "Method Not Allowed"): f"this address does not take {request.method}",
        }.get((exc.status_code, str(exc.detail)), str(exc.detail))
        return await problem(request, exc.status_code, [{"field": "", "message": message}])

    @app.exception_handler(OperationalError)
    async def _database_away(request: Request, exc: OperationalError) -> Response:
        # The database did not answer (a server down or restarting; SQLite's write lock held past its ten seconds by
        # a long import): nothing was done, and trying again later is all there is to do. Logged without the message.
        LOG.warning("the database did not answer: %s", _where(exc))  # the request's own line follows, with 503
        message = "the database did not answer; nothing was saved. Try again in a minute."
        response = await problem(request, status.HTTP_503_SERVICE_UNAVAILABLE, [{"field": "", "message": message}])
        response.headers["retry-after"] = "60"
        return response

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        # A browser that still sends a session cookie had a session that ended: the sign-in page says so.
        ended = "&ended=1" if request.cookies.get(COOKIE) else ""
        return RedirectResponse(f"/login?next={quote(request.url.path)}{ended}", status_code=303)

    @app.exception_handler(once.SentAlready)
    async def _sent_already(request: Request, exc: once.SentAlready) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(once.Replayed)
    async def _replayed(request: Request, exc: once.Replayed) -> Response:
        patient = exc.patient
        if patient is not None:  # the answer may hold the patient's record: an access, for the audit trail

            def record() -> None:
                with request.app.state.sessions.begin() as session:
                    detail = {"method": request.method, "path": request.url.path}
                    audit_service.record(
                        session,
                        actor=exc.username,
                        action="replayed",
                        entity="patient",
                        entity_id=patient,
                        detail=detail,
                    )

            await run_in_threadpool(record)
        return JSONResponse(exc.answer, status_code=exc.status, headers={once.REPLAYED: "true"})

    @app.exception_handler(PasswordChangeRequired)
    async def _choose_password(request: Request, exc: PasswordChangeRequired) -> Response:
        return RedirectResponse("/account", status_code=303)

    for prefix, router in mounted:
        app.include_router(router, prefix=prefix)
    app.include_router(pages.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = api_document(app, routers=mounted)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def template(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a page with the app's templates."""
    templates: Jinja2Templates = request.app.state.templates
    response: HTMLResponse = templates.TemplateResponse(request, name, context, status_code=status_code)
    return response


def log_requests() -> None:
    """Send the server's log to standard error: HemiCare's own lines (a line per request: method, route, status and
    time, never a patient) and the warnings and errors of the libraries it uses. Their informational lines are left
    out: they are not for a clinic's log, and some carry what a request handled (the font subsetter behind the PDFs
    listed the letters it set, the patient's name among them)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("hemicare").setLevel(logging.INFO)


def serving_app(*, database_url: str | None = None, cookie_secure: bool = True) -> FastAPI:
    """The app as a server process runs it: created, then its start-up objects frozen out of the cyclic collector.

    A started app holds about 130,000 objects that live as long as the process (the knowledge base above all). A full
    collection scans them all, about 70 ms on this project's machines, and every request in flight waits for it;
    under load that happened every few thousand requests and was a large part of the latency tail. Frozen
    (``gc.freeze``), they are never scanned again; what requests make is collected as before.
    """
    app = create_app(database_url=database_url, cookie_secure=cookie_secure)
    gc.collect()
    gc.freeze()
    return app


def app_from_environment() -> FastAPI:
    """The app as `hemicare serve --workers N` starts it in each server process (each logs on its own)."""
    import os

    log_requests()
    return serving_app(cookie_secure=os.environ.get("HEMICARE_COOKIE_SECURE", "1") != "0")
