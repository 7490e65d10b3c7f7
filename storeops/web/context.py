"""What every inbox page shares: the engine, the signed-in person, rendering and CSRF.

Edge module (FastAPI, Jinja2). Routers (the inbox's own, and `storeops/web/analytics.py`
when it exists) reach this through `request.app.state.inbox` and the `signed_in`
dependency. Page templates are the inbox's own (storeops/web/templates), autoescaped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from storeops.errors import StoreopsError
from storeops.settings import Settings
from storeops.web import auth
from storeops.web.evidence import EvidenceStore
from storeops.web.messages import pick_locale, translate

log = logging.getLogger("storeops.inbox")

SESSION_COOKIE = "storeops_session"
SIGNIN_COOKIE = "storeops_signin"
HERE = Path(__file__).resolve().parent

#: Security headers on every answer: no inline script or style runs, nothing frames us.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def is_lead_role(role: str) -> bool:
    """Lead roles (ops_lead, cs_lead, lead) see open work of every role on Today."""
    return role == "lead" or role.endswith("_lead")


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as pages see them."""

    person: str
    name: str
    roles: tuple[str, ...]
    locale: str
    csrf: str
    nonce: str

    @property
    def is_lead(self) -> bool:
        return any(is_lead_role(r) for r in self.roles)


class SignInRequired(Exception):
    """Raised by `signed_in`; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is edited or replaced (inode, mtime, size), or None."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_ino, found.st_mtime_ns, found.st_size)


class Inbox:
    """One per app: settings, the engine (opened on first use), signing and the stores."""

    def __init__(self, settings: Settings, *, max_upload_mib: int = 25) -> None:
        self.settings = settings
        self.home = settings.home
        self.signer = auth.Signer(auth.load_secret(settings.home))
        self.throttle = auth.Throttle()
        self.evidence = EvidenceStore(settings.home, max_bytes=max_upload_mib << 20)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = when
        self._engine: Any = None
        self._roster_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._credentials: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        self.sop_cache: dict[str, tuple[float, Any]] = {}

    @property
    def engine(self) -> Any:
        """The storeops Engine (settings.engine()); thread-safe to share between requests.
        A changed roster file is read again, so someone removed from the team (or made
        inactive, or given other roles) is treated so at their next request."""
        with self._lock:
            stamp = _stamp(self.settings.roster_path)
            if self._engine is None or self._engine.closed:
                self._engine = self.settings.engine()
                self._roster_stamp = stamp
            elif stamp != self._roster_stamp:
                self._roster_stamp = stamp
                try:
                    self._engine.roster = self.settings.roster()
                except StoreopsError as exc:  # a half-edited file: keep the team we have
                    log.error("roster not reloaded, the previous one stays in force: %s", exc)
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    # ------------------------------------------------------------ people

    def _credentials_of(self, person: str) -> dict[str, Any]:
        """`person`'s entry of credentials.json (cached until the file changes)."""
        # every write replaces the file (a new inode), so this sees writes within one tick
        stamp = _stamp(self.home / auth.CREDENTIALS_FILE)
        if stamp is None:
            return {}
        if self._credentials is None or self._credentials[0] != stamp:
            self._credentials = (stamp, auth.read_credentials(self.home))
        entry = self._credentials[1].get(person)
        return entry if isinstance(entry, dict) else {}

    def generation(self, person: str) -> int | None:
        """The credential generation of `person`'s valid sessions (None: no credentials)."""
        entry = self._credentials_of(person)
        if not (entry.get("password") or entry.get("token")):
            return None
        return int(entry.get("generation", 1))

    def session(self, request: Request) -> auth.Session | None:
        """The valid session `request` carries: signed, unexpired, of the person's current
        credentials, and not signed out."""
        session = self.signer.read_session(request.cookies.get(SESSION_COOKIE))
        if session is None or self.generation(session.person) != session.generation:
            return None
        if session.nonce in (self._credentials_of(session.person).get("ended") or {}):
            return None
        return session

    def viewer(self, request: Request) -> Viewer | None:
        """The person whose valid session cookie came with `request`, else None."""
        session = self.session(request)
        if session is None:
            return None
        roster = self.engine.roster
        entry = roster.people.get(session.person)
        if entry is None or not entry.active:
            return None
        return Viewer(
            person=session.person,
            name=entry.name,
            roles=tuple(entry.roles),
            locale=entry.locale,
            csrf=self.signer.csrf_token("session:" + session.nonce),
            nonce=session.nonce,
        )

    def check_csrf(self, viewer: Viewer, given: Any) -> bool:
        return self.signer.check_csrf("session:" + viewer.nonce, str(given or ""))

    # ------------------------------------------------------------ pages

    def locale_for(self, request: Request, viewer: Viewer | None) -> str:
        if viewer is not None:
            return viewer.locale
        return pick_locale(request.headers.get("accept-language"), self.settings.locale)

    def page(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None,
        *,
        status_code: int = 200,
        notices: Sequence[Mapping[str, str]] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        locale = self.locale_for(request, viewer)

        def t(key: str, **values: Any) -> str:
            return translate(locale, key, **values)

        html = self.templates.get_template(template).render(
            t=t,
            locale=locale,
            viewer=viewer,
            notices=notices or [],
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def message(
        self,
        request: Request,
        viewer: Viewer | None,
        *,
        status_code: int,
        title: str,
        text: str,
        detail: str = "",
    ) -> HTMLResponse:
        """A page that says one thing (a refusal, an expired form, a missing run)."""
        return self.page(
            request,
            "message.html",
            viewer,
            status_code=status_code,
            title=title,
            text=text,
            detail=detail,
        )


def inbox_of(request: Request) -> Inbox:
    found: Inbox = request.app.state.inbox
    return found


def signed_in(request: Request) -> Viewer:
    """FastAPI dependency: the signed-in person; otherwise off to the sign-in page."""
    viewer = inbox_of(request).viewer(request)
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return viewer


def when(value: Any) -> Markup:
    """An ISO instant as `<time>` (UTC text; inbox.js shows it in the browser's zone)."""
    if not value:
        return Markup("")
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
        shown = moment.strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        shown = text
    return Markup('<time datetime="{}">{}</time>').format(escape(text), escape(shown))


#: A route parameter typed `Me` is the signed-in person (sign-in page otherwise).
Me = Annotated[Viewer, Depends(signed_in)]
