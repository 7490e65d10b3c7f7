"""The inbox's pages: sign-in, Today, a task, a run, and starting an SOP.

Edge module (FastAPI, Jinja2; never Prefect or httpx). Every completion goes through
`Engine.complete(drive=False)`, which checks roles, keeps one winner and records refusals;
then the runner is woken (or, with no runner, the run is driven in this process). Pages
are rendered on the server; the only script is the small static/inbox.js.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storeops import spec as s
from storeops.errors import (
    AlreadyCompletedError,
    DefinitionError,
    InvalidInputError,
    NotAllowedError,
    RunNotFoundError,
    StepNotActiveError,
    StoreopsError,
)
from storeops.graph import to_mermaid
from storeops.ledger import LedgerError
from storeops.settings import Settings
from storeops.timeline import describe
from storeops.wake import wake_runner
from storeops.web import auth
from storeops.web.context import (
    HERE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Inbox,
    Me,
    SignInRequired,
    Viewer,
    inbox_of,
    is_lead_role,
)
from storeops.web.diagram import state_svg
from storeops.web.evidence import (
    INLINE_TYPES,
    SNIFF_BYTES,
    EvidenceError,
    accepts,
    media_type_of,
)
from storeops.web.forms import (
    checklist_answers,
    field_widgets,
    shown_values,
    typed_values,
    zone_suffix,
)
from storeops.web.markup import markdown
from storeops.web.messages import pick_locale, translate

log = logging.getLogger("storeops.inbox")

STATIC = {"inbox.css": "text/css; charset=utf-8", "inbox.js": "text/javascript; charset=utf-8"}
#: Form limits: many checklist items and fields, a handful of files per evidence item.
MAX_FIELDS, MAX_FILES = 1000, 100


def create_app(settings: Settings, *, max_upload_mib: int = 25) -> FastAPI:
    """The inbox as an ASGI app over `settings` (STOREOPS_HOME, ledger, library, roster)."""
    inbox = Inbox(settings, max_upload_mib=max_upload_mib)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            inbox.close()

    app = FastAPI(
        title="storeops inbox", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.inbox = inbox

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(SignInRequired)
    async def to_sign_in(request: Request, exc: SignInRequired) -> Response:
        return RedirectResponse(f"/signin?next={quote(exc.next_path, safe='')}", status_code=303)

    # a step may take several files; the whole submission is bounded at four times one file
    app.add_middleware(BodyLimit, max_bytes=(4 * max_upload_mib) << 20)

    _routes_session(app)
    _routes_work(app)
    _routes_runs(app)
    _include_analytics(app)
    return app


class BodyTooLarge(Exception):
    """A request body past the inbox's limit (raised while the body is being read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class BodyLimit:
    """Bounds every request body (ASGI middleware), so uploads cannot fill the disk where
    Starlette spools them before any handler sees them: a declared Content-Length past the
    limit is refused unread, a body that grows past it stops being read."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse_unread(scope, send, self.max_bytes)
            return
        seen = 0
        started = False
        limit = self.max_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception as exc:
            # raised inside the app (through task groups): answer 413 unless it answered
            if started or not _caused_by(exc, BodyTooLarge):
                raise
            await _refuse_unread(scope, send, limit)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by(inner, kind) for inner in exc.exceptions)
    return exc.__cause__ is not None and _caused_by(exc.__cause__, kind)


async def _refuse_unread(scope: Scope, send: Send, limit: int) -> None:
    locale = pick_locale(dict(scope.get("headers") or []).get(b"accept-language", b"").decode())
    text = translate(locale, "error.request_too_large", limit=limit >> 20).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


def _include_analytics(app: FastAPI) -> None:
    """Mount `storeops/web/analytics.py` under /analytics when that module exists: it
    defines `router` (a FastAPI APIRouter, paths relative to /analytics) and may use
    `storeops.web.context.signed_in` and `request.app.state.inbox`."""
    if importlib.util.find_spec("storeops.web.analytics") is None:
        return
    module = importlib.import_module("storeops.web.analytics")
    app.include_router(module.router, prefix="/analytics")


def _safe_next(target: str | None) -> str:
    """Only paths of this inbox may follow a sign-in (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _texts(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


# ---------------------------------------------------------------- sign-in and out


def _routes_session(app: FastAPI) -> None:
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "service": "storeops-inbox"}

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])

    @app.get("/signin")
    def signin_page(request: Request, next: str = "/", out: str = "") -> Response:
        inbox = inbox_of(request)
        locale = inbox.locale_for(request, None)
        signed_out = out not in ("", "0")
        notices = (
            [{"kind": "ok", "text": translate(locale, "signin.signed_out")}] if signed_out else []
        )
        return _signin_form(request, inbox, next_path=next, notices=notices)

    @app.post("/signin")
    async def signin(request: Request) -> Response:
        inbox = inbox_of(request)
        form = await request.form(max_files=0, max_fields=20)
        locale = inbox.locale_for(request, None)
        next_path = _safe_next(_text(form, "next"))
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if not nonce or not inbox.signer.check_csrf("signin:" + nonce, _text(form, "csrf")):
            return _signin_form(
                request, inbox, next_path=next_path, status_code=403,
                notices=[{"kind": "error", "text": translate(locale, "csrf")}],
            )  # fmt: skip
        token = _text(form, "token").strip()
        person = auth.token_person(token) if token else _text(form, "person").strip().lower()
        person = person[:100]
        # people not on the team share one key: made-up names cannot grow the table
        key = person if person in inbox.engine.roster.people else "?"
        wait = inbox.throttle.attempt(key)  # counted before the slow check: no parallel slip
        if wait > 0:
            minutes = max(1, int(wait // 60) + (1 if wait % 60 else 0))
            shown = person or "?"
            text = translate(locale, "signin.throttled", person=shown, minutes=minutes)
            return _signin_form(
                request, inbox, next_path=next_path, status_code=429, person=person,
                notices=[{"kind": "error", "text": text}],
            )  # fmt: skip
        if token:
            found = await run_in_threadpool(auth.authenticate_token, inbox.home, token)
            generation = found[1] if found else None
        else:
            password = _text(form, "password")
            generation = await run_in_threadpool(
                auth.authenticate_password, inbox.home, person, password
            )
        entry = inbox.engine.roster.people.get(person)
        if generation is None or entry is None or not entry.active:
            return _signin_form(
                request, inbox, next_path=next_path, status_code=401, person=person,
                notices=[{"kind": "error", "text": translate(locale, "signin.wrong")}],
            )  # fmt: skip
        inbox.throttle.succeeded(key)
        log.info("%s signed in", person)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            inbox.signer.session_cookie(person, generation),
            max_age=auth.SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            path="/",
        )
        response.delete_cookie(SIGNIN_COOKIE, path="/")
        return response

    @app.post("/signout")
    async def signout(request: Request) -> Response:
        inbox = inbox_of(request)
        viewer = inbox.viewer(request)
        form = await request.form(max_files=0, max_fields=10)
        if viewer is not None and not inbox.check_csrf(viewer, form.get("csrf")):
            return _csrf_refused(request, inbox, viewer)
        session = inbox.session(request)
        if session is not None:  # ended for good, not just forgotten by this browser
            await run_in_threadpool(auth.end_session, inbox.home, session)
            log.info("%s signed out", session.person)
        response = RedirectResponse("/signin?out=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
        return response


def _signin_form(
    request: Request,
    inbox: Inbox,
    *,
    next_path: str,
    status_code: int = 200,
    person: str = "",
    notices: list[dict[str, str]] | None = None,
) -> Response:
    nonce = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(16)
    response = inbox.page(
        request,
        "signin.html",
        None,
        status_code=status_code,
        notices=notices,
        csrf=inbox.signer.csrf_token("signin:" + nonce),
        next_path=_safe_next(next_path),
        person=person,
    )
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="lax", path="/")
    return response


def _csrf_refused(request: Request, inbox: Inbox, viewer: Viewer | None) -> Response:
    locale = inbox.locale_for(request, viewer)
    return inbox.message(
        request,
        viewer,
        status_code=403,
        title=translate(locale, "error.refused"),
        text=translate(locale, "csrf"),
    )


# ---------------------------------------------------------------- today and tasks


def _routes_work(app: FastAPI) -> None:
    @app.get("/")
    def today(
        request: Request,
        viewer: Me,
        done: str = "",
        step: str = "",
        outcome: str = "",
        started: str = "",
    ) -> Response:
        inbox = inbox_of(request)
        engine = inbox.engine
        mine = engine.tasks(person=viewer.person)
        for task in mine:
            task["title_text"] = s.localize(task["title"], viewer.locale) or task["step"]
            task["link"] = _step_link(task["run"], task["step"])
            task["roles_text"] = ", ".join(
                engine.roster.role_title(r, viewer.locale) for r in task["roles"]
            )
        by_role: list[dict[str, Any]] = []
        if viewer.is_lead:
            counts: dict[str, list[int]] = {}
            for task in engine.tasks():
                for role in task["roles"]:
                    found = counts.setdefault(role, [0, 0])
                    found[0] += 1
                    found[1] += 1 if task["overdue"] else 0
            by_role = [
                {
                    "role": role,
                    "title": engine.roster.role_title(role, viewer.locale),
                    "open": n,
                    "overdue": late,
                    "lead": is_lead_role(role),
                }
                for role, (n, late) in sorted(counts.items())
            ]
        notices = []
        if done and step:
            key = "today.rejected" if outcome == "rejected" else "today.done"
            notices.append(
                {"kind": "ok", "text": translate(viewer.locale, key, step=step, run=done)}
            )
        if started:
            notices.append(
                {"kind": "ok", "text": translate(viewer.locale, "today.started", run=started)}
            )
        return inbox.page(
            request, "today.html", viewer, tasks=mine, by_role=by_role, notices=notices
        )

    @app.get("/runs/{run_id}/steps/{step}")
    def task_page(
        request: Request,
        run_id: str,
        step: str,
        viewer: Me,
    ) -> Response:
        return _task_view(request, inbox_of(request), viewer, run_id, step)

    @app.post("/runs/{run_id}/steps/{step}")
    async def complete_step(
        request: Request,
        run_id: str,
        step: str,
        viewer: Me,
    ) -> Response:
        inbox = inbox_of(request)
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
        try:
            if not inbox.check_csrf(viewer, form.get("csrf")):
                return _csrf_refused(request, inbox, viewer)
            return await _complete(request, inbox, viewer, run_id, step, form)
        finally:
            await form.close()

    @app.post("/runs/{run_id}/steps/{step}/claim")
    async def claim_step(
        request: Request,
        run_id: str,
        step: str,
        viewer: Me,
    ) -> Response:
        """Take the step, or (a lead) hand it to `to`: only that person may complete it."""
        inbox = inbox_of(request)
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
        try:
            if not inbox.check_csrf(viewer, form.get("csrf")):
                return _csrf_refused(request, inbox, viewer)
            to = _text(form, "to").strip() or None
        finally:
            await form.close()
        try:
            await run_in_threadpool(
                lambda: inbox.engine.claim(run_id, step, actor=viewer.person, to=to)
            )
        except (NotAllowedError, AlreadyCompletedError, StepNotActiveError) as exc:
            return inbox.message(
                request,
                viewer,
                status_code=403 if isinstance(exc, NotAllowedError) else 409,
                title=translate(viewer.locale, "error.refused"),
                text=str(exc),
                detail=translate(viewer.locale, "error.refused_recorded"),
            )
        except RunNotFoundError:
            return _not_found(request, inbox, viewer, run_id)
        return RedirectResponse(_step_link(run_id, step), status_code=303)

    @app.get("/evidence/{digest}")
    def evidence_file(
        request: Request,
        digest: str,
        viewer: Me,
    ) -> Response:
        inbox = inbox_of(request)
        found = inbox.evidence.describe(digest)
        if found is None or not inbox.evidence.may_see(
            found.digest, viewer.person, viewer.roles, viewer.is_lead
        ):
            return _not_found(request, inbox, viewer, digest)
        inline = found.media_type in INLINE_TYPES
        return FileResponse(
            inbox.evidence.path(digest),
            media_type=found.media_type if inline else "application/octet-stream",
            filename=found.name,
            content_disposition_type="inline" if inline else "attachment",
        )


def _step_link(run_id: str, step: str) -> str:
    return f"/runs/{quote(run_id, safe='')}/steps/{quote(step, safe='')}"


def _not_found(request: Request, inbox: Inbox, viewer: Viewer | None, what: str) -> Response:
    locale = inbox.locale_for(request, viewer)
    return inbox.message(
        request,
        viewer,
        status_code=404,
        title=translate(locale, "not_found", what=what),
        text="",
    )


def _may_view_run(viewer: Viewer, run: Any, stored: Sequence[Any]) -> bool:
    """Leads, holders of a role the SOP uses, and whoever started or acted in the run:
    a run's parameters and answers (a customer's address, an order) are not for all."""
    if viewer.is_lead or set(viewer.roles) & set(run.sop.roles):
        return True
    return any(e.data.get("actor") == viewer.person for e in stored)


def _not_yours(request: Request, inbox: Inbox, viewer: Viewer, run_id: str) -> Response:
    return inbox.message(
        request,
        viewer,
        status_code=403,
        title=translate(viewer.locale, "error.refused"),
        text=translate(viewer.locale, "run.forbidden", run=run_id),
    )


def _task_view(
    request: Request,
    inbox: Inbox,
    viewer: Viewer,
    run_id: str,
    step: str,
    *,
    status_code: int = 200,
    error: str = "",
    form: dict[str, str] | None = None,
    kept: dict[str, list[dict[str, Any]]] | None = None,
) -> Response:
    """The task page: the step's work when it is open and the viewer's, else why not."""
    engine = inbox.engine
    t = viewer.locale
    try:
        run, _head, _stored = engine.load(run_id)
    except RunNotFoundError:
        return _not_found(request, inbox, viewer, run_id)
    try:
        task = engine.describe_task(run_id, step, viewer.locale)
    except StepNotActiveError:
        done = run.steps.get(step) or {}
        text = translate(t, "task.closed")
        if done.get("actor") and done.get("outcome"):
            outcome = translate(t, f"outcome.{done['outcome']}")
            at = _iso(done["completed_at"])
            text = translate(t, "task.closed_by", outcome=outcome, actor=done["actor"], at=at)
        return inbox.page(
            request,
            "closed.html",
            viewer,
            status_code=status_code,
            run_id=run_id,
            step=step,
            text=text,
            error=error,
            run_link=f"/runs/{quote(run_id, safe='')}",
        )
    mine = bool(set(task["roles"]) & set(viewer.roles))
    token = run.token(step)
    state = run.states.get(token.state) if token is not None else None
    if not mine and not viewer.is_lead:  # whose step it is, not what it is about (a customer)
        task = {**task, "title": s.localize(getattr(state, "title", None), t) or step}
    rejectable = task["type"] == "approval" or getattr(state, "on_reject", None) is not None
    values = form or {}
    checklist = []
    for item in task["checklist"]:
        number = item["number"]
        checklist.append(
            {
                **item,
                "answer": values.get(f"c.{number}", ""),
                "reason": values.get(f"c.{number}.reason", ""),
            }
        )
    evidence = []
    for item in task["evidence"]:
        spec = next((e for e in getattr(state, "evidence", []) if e.name == item["name"]), None)
        evidence.append(
            {
                **item,
                "kinds": list(getattr(spec, "kinds", []) or []),
                "kept": (kept or {}).get(item["name"], []),
            }
        )
    return inbox.page(
        request,
        "task.html",
        viewer,
        status_code=status_code,
        task=task,
        sop_title=s.localize(run.sop.title, viewer.locale),
        mine=mine,
        roles_text=", ".join(engine.roster.role_title(r, t) for r in task["roles"]),
        my_roles_text=", ".join(engine.roster.role_title(r, t) for r in viewer.roles)
        or translate(t, "none"),
        instructions=markdown(task["instructions"]) if mine else "",
        checklist=checklist,
        widgets=field_widgets(task["fields"], shown_values("f.", task["fields"], values)),
        evidence=evidence,
        rejectable=rejectable,
        note=values.get("note", ""),
        reason=values.get("reason", ""),
        error=error,
        action=_step_link(run_id, step),
        run_link=f"/runs/{quote(run_id, safe='')}",
        approvals_given=len(task["approvals"]["given"]),
        claimed_by=token.claimed_by if token is not None else None,
        can_reassign=viewer.is_lead,
        holders=sorted({p for r in task["roles"] for p in engine.roster.holders(r)}),
        claim_action=_step_link(run_id, step) + "/claim",
    )


def _iso(value: Any) -> str:
    from storeops.durations import us_to_iso

    text = us_to_iso(int(value)) if isinstance(value, int) else str(value)
    return text[:19].replace("T", " ") + " UTC"


async def _store_uploads(
    inbox: Inbox, viewer: Viewer, task: dict[str, Any], form: FormData, state: Any
) -> tuple[dict[str, list[str]], dict[str, list[dict[str, Any]]]]:
    """Store each uploaded file by digest; keep digests uploaded by an earlier try.

    Returns the evidence for the engine and, per item, what to show as already uploaded."""
    evidence: dict[str, list[str]] = {}
    shown: dict[str, list[dict[str, Any]]] = {}
    specs = {e.name: e for e in getattr(state, "evidence", [])}
    for item in task["evidence"]:
        name = item["name"]
        for digest in form.getlist("k." + name):
            found = inbox.evidence.describe(str(digest))
            if found is None or not inbox.evidence.uploaded_by(found.digest, viewer.person):
                continue  # only a file this person uploaded may be attached again
            if found.digest not in evidence.get(name, []):
                evidence.setdefault(name, []).append(found.digest)
                shown.setdefault(name, []).append({"digest": found.digest, "name": found.name})
        for upload in form.getlist("e." + name):
            if not isinstance(upload, UploadFile) or not upload.filename:
                continue
            head = await upload.read(SNIFF_BYTES)
            await upload.seek(0)
            media_type = media_type_of(upload.filename, upload.content_type, head)
            kinds = list(getattr(specs.get(name), "kinds", []) or [])
            if not accepts(kinds, media_type):
                raise EvidenceError(
                    "kind",
                    f"{name} accepts {', '.join(kinds)}",
                    evidence=item["title"],
                    kinds=", ".join(kinds),
                    found=media_type,
                    file=upload.filename,
                )
            try:
                stored = await run_in_threadpool(
                    partial(
                        inbox.evidence.save,
                        upload.file,
                        upload.filename,
                        media_type,
                        by=viewer.person,
                        roles=list(task["roles"]),
                    )
                )
            except EvidenceError as exc:
                exc.details.setdefault("file", upload.filename)
                raise
            if stored.digest not in evidence.get(name, []):
                evidence.setdefault(name, []).append(stored.digest)
                shown.setdefault(name, []).append({"digest": stored.digest, "name": stored.name})
    return evidence, shown


async def _complete(
    request: Request, inbox: Inbox, viewer: Viewer, run_id: str, step: str, form: FormData
) -> Response:
    engine = inbox.engine
    locale = viewer.locale
    values = _texts(form)
    reject = _text(form, "action") == "reject"
    try:
        run, _head, _stored = await run_in_threadpool(engine.load, run_id)
    except RunNotFoundError:
        return _not_found(request, inbox, viewer, run_id)
    try:
        task: dict[str, Any] | None = await run_in_threadpool(
            engine.describe_task, run_id, step, locale
        )
    except StepNotActiveError:
        task = None  # the engine's own check below says why, and records the refusal
    evidence: dict[str, list[str]] = {}
    kept: dict[str, list[dict[str, Any]]] = {}
    fields: dict[str, Any] = {}
    checklist: dict[int, str] = {}
    if task is not None and set(task["roles"]) & set(viewer.roles) and not reject:
        token = run.token(step)
        state = run.states.get(token.state) if token is not None else None
        try:
            evidence, kept = await _store_uploads(inbox, viewer, task, form, state)
        except EvidenceError as exc:
            why = (
                translate(locale, "error.too_large", **exc.details)
                if exc.reason == "too_large"
                else translate(locale, "error.kind", **exc.details)
            )
            error = translate(locale, "error.upload", file=exc.details.get("file", ""), why=why)
            return _task_view(
                request, inbox, viewer, run_id, step, status_code=422, error=error, form=values
            )
        zone = zone_suffix(_text(form, "tz"))
        fields = typed_values("f.", task["fields"], values, zone)
        checklist = checklist_answers(len(task["checklist"]), values)
    try:
        await run_in_threadpool(
            lambda: engine.complete(
                run_id,
                step,
                actor=viewer.person,
                fields=fields,
                evidence=evidence,
                checklist=checklist,
                note=_text(form, "note").strip() or None,
                reject=reject,
                reason=_text(form, "reason"),
                drive=False,
            )
        )
    except InvalidInputError as exc:
        error = f"{translate(locale, 'error.invalid')}: {exc}"
        return _task_view(
            request, inbox, viewer, run_id, step,
            status_code=422, error=error, form=values, kept=kept,
        )  # fmt: skip
    except (NotAllowedError, AlreadyCompletedError, StepNotActiveError) as exc:
        title, code = {
            NotAllowedError: ("error.refused", 403),
            AlreadyCompletedError: ("error.already", 409),
            StepNotActiveError: ("error.not_active", 409),
        }[type(exc)]
        return inbox.message(
            request,
            viewer,
            status_code=code,
            title=translate(locale, title),
            text=str(exc),
            detail=translate(locale, "error.refused_recorded"),
        )
    except RunNotFoundError:
        return _not_found(request, inbox, viewer, run_id)
    await run_in_threadpool(_carry_on, inbox, run_id)
    outcome = "rejected" if reject else "done"
    target = f"/?done={quote(run_id, safe='')}&step={quote(step, safe='')}&outcome={outcome}"
    return RedirectResponse(target, status_code=303)


def _carry_on(inbox: Inbox, run_id: str) -> None:
    """Hand the run to the runner; with none answering, drive it here. The completion is
    already in the ledger, so a failure here loses nothing (the run stays due)."""
    if wake_runner(inbox.home, run_id):
        return
    try:
        inbox.engine.drive(run_id)
    except (StoreopsError, LedgerError):
        log.exception("driving run %s after a completion failed; it stays due", run_id)


# ---------------------------------------------------------------- runs and starting


def _routes_runs(app: FastAPI) -> None:
    @app.get("/runs/{run_id}")
    def run_page(
        request: Request,
        run_id: str,
        viewer: Me,
    ) -> Response:
        inbox = inbox_of(request)
        engine = inbox.engine
        try:
            run, _head, stored = engine.load(run_id)
        except RunNotFoundError:
            return _not_found(request, inbox, viewer, run_id)
        if not _may_view_run(viewer, run, stored):
            return _not_yours(request, inbox, viewer, run_id)
        record = engine.ledger.get_run(run_id)
        lines = []
        files = []
        for event in stored:
            text = describe(
                {"type": event.type, "at": event.at, "data": event.data}, run.sop, viewer.locale
            )
            if text is not None:
                lines.append({"seq": event.seq, "at": event.at, "type": event.type, "text": text})
            if event.type == "task.completed":
                for name, digests in (event.data.get("evidence") or {}).items():
                    for digest in digests:
                        found = inbox.evidence.describe(str(digest))
                        files.append(
                            {
                                "step": event.data.get("step"),
                                "evidence": name,
                                "digest": digest,
                                "name": found.name if found else None,
                                "size": found.size if found else None,
                            }
                        )
        visited = {str(e.data.get("state")) for e in stored if e.type == "state.entered"}
        current = {t.state for t in run.tokens.values()} if run.status == "running" else set()
        report = engine.ledger.verify(run_id)
        waiting = [
            {
                "step": t.step,
                "title": s.localize(getattr(run.states[t.state], "title", None), viewer.locale),
                "roles": list(t.roles),
                "link": _step_link(run_id, t.step),
            }
            for t in run.active_tasks()
        ]
        return inbox.page(
            request,
            "run.html",
            viewer,
            run_id=run_id,
            record=record,
            status=run.status,
            sop_title=s.localize(run.sop.title, viewer.locale),
            params=run.params,
            lines=lines,
            files=files,
            waiting=waiting,
            diagram=state_svg(run.sop, viewer.locale, current=current, visited=visited),
            mermaid=to_mermaid(run.sop, viewer.locale),
            chain_ok=report.ok,
            chain_events=report.events_checked,
            chain_problems="; ".join(str(p) for p in report.problems),
        )

    @app.get("/start")
    def start_list(
        request: Request,
        viewer: Me,
    ) -> Response:
        inbox = inbox_of(request)
        sops = [_sop_entry(inbox, viewer, path) for path in _library(inbox)]
        return inbox.page(request, "start.html", viewer, sops=sops)

    @app.get("/start/{sop_id}")
    def start_form(
        request: Request,
        sop_id: str,
        viewer: Me,
    ) -> Response:
        return _start_view(request, inbox_of(request), viewer, sop_id)

    @app.post("/start/{sop_id}")
    async def start_run(
        request: Request,
        sop_id: str,
        viewer: Me,
    ) -> Response:
        inbox = inbox_of(request)
        form = await request.form(max_files=0, max_fields=MAX_FIELDS)
        if not inbox.check_csrf(viewer, form.get("csrf")):
            return _csrf_refused(request, inbox, viewer)
        path = inbox.settings.sops / f"{sop_id}.yaml"
        if path not in _library(inbox):
            return _not_found(request, inbox, viewer, sop_id)
        entry = _sop_entry(inbox, viewer, path)
        values = _texts(form)
        if entry["problems"] or not entry["may_start"]:
            return _start_view(request, inbox, viewer, sop_id, status_code=403, form=values)
        spec: s.SopSpec = entry["spec"]
        params = typed_values(
            "p.", {k: v.model_dump() for k, v in spec.params.items()}, values,
            zone_suffix(_text(form, "tz")),
        )  # fmt: skip
        key = _text(form, "key").strip() or None
        engine = inbox.engine
        try:
            run_id = await run_in_threadpool(
                lambda: engine.start(sop_id, params, actor=viewer.person, key=key, drive=False)
            )
        except InvalidInputError as exc:
            error = f"{translate(viewer.locale, 'error.invalid')}: {exc}"
            return _start_view(
                request, inbox, viewer, sop_id, status_code=422, form=values, error=error
            )
        await run_in_threadpool(_carry_on, inbox, run_id)
        return RedirectResponse(f"/runs/{quote(run_id, safe='')}", status_code=303)


def _library(inbox: Inbox) -> list[Path]:
    folder = inbox.settings.sops
    return sorted(
        p for p in folder.glob("*.yaml") if p.stem not in ("team", "monitors") and p.is_file()
    )


def _sop_entry(inbox: Inbox, viewer: Viewer, path: Path) -> dict[str, Any]:
    """An SOP of the library for the start pages (loaded once per file modification)."""
    stamp = path.stat().st_mtime
    cached = inbox.sop_cache.get(path.stem)
    if cached is None or cached[0] != stamp:
        try:
            loaded: Any = inbox.engine.load_definition(path.stem)
            problems: list[str] = []
        except DefinitionError as exc:
            loaded, problems = None, [str(d) for d in exc.diagnostics]
        except StoreopsError as exc:
            loaded, problems = None, [str(exc)]
        cached = (stamp, (loaded, problems))
        inbox.sop_cache[path.stem] = cached
    loaded, problems = cached[1]
    spec = loaded.spec if loaded is not None else None
    roles = list(spec.roles) if spec is not None else []
    may_start = viewer.is_lead or bool(set(roles) & set(viewer.roles))
    return {
        "id": path.stem,
        "spec": spec,
        "title": s.localize(spec.title, viewer.locale) if spec else path.stem,
        "summary": s.localize(spec.summary, viewer.locale) if spec else "",
        "version": spec.version if spec else None,
        "roles": roles,
        "problems": problems,
        "may_start": may_start,
        "link": f"/start/{quote(path.stem, safe='')}",
    }


def _start_view(
    request: Request,
    inbox: Inbox,
    viewer: Viewer,
    sop_id: str,
    *,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    error: str = "",
) -> Response:
    path = inbox.settings.sops / f"{sop_id}.yaml"
    if path not in _library(inbox):
        return _not_found(request, inbox, viewer, sop_id)
    entry = _sop_entry(inbox, viewer, path)
    spec = entry["spec"]
    widgets: list[dict[str, Any]] = []
    if spec is not None:
        specs = {
            name: {**p.model_dump(), "title": s.localize(p.title, viewer.locale) or name}
            for name, p in spec.params.items()
        }
        widgets = field_widgets(specs, shown_values("p.", specs, form or {}))
    roles_text = ", ".join(inbox.engine.roster.role_title(r, viewer.locale) for r in entry["roles"])
    return inbox.page(
        request,
        "start_form.html",
        viewer,
        status_code=status_code,
        sop=entry,
        widgets=widgets,
        key=(form or {}).get("key", ""),
        error=error,
        roles_text=roles_text,
        action=entry["link"],
    )
