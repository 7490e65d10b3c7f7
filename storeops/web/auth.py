"""Who is signed in to the inbox: credentials, sessions, CSRF tokens and sign-in throttling.

Edge module, standard library only (no FastAPI here, so the CLI's `passwd` and `token`
commands import it cheaply). Passwords and tokens are stored as salted scrypt hashes in
STOREOPS_HOME/credentials.json, written atomically under a file lock; sessions are
HMAC-signed cookies keyed by STOREOPS_HOME/inbox-secret. Nothing secret is ever logged.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CREDENTIALS_FILE = "credentials.json"
SECRET_FILE = "inbox-secret"
#: scrypt cost: 16 MiB and ~50 ms per check; enough to make offline guessing slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
SESSION_SECONDS = 12 * 3600
#: Sign-in attempts allowed per person within THROTTLE_WINDOW seconds (until one succeeds).
THROTTLE_FAILURES = 5
THROTTLE_WINDOW = 600.0


class CredentialError(ValueError):
    """A password or token cannot be set (unknown person, too short)."""


# ---------------------------------------------------------------- hashing


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def hash_secret(secret: str) -> dict[str, Any]:
    """A salted scrypt record of `secret`, as stored in credentials.json."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {
        "scheme": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": salt.hex(),
        "hash": digest.hex(),
    }


def check_secret(secret: str, record: dict[str, Any] | None) -> bool:
    """Whether `secret` matches `record` (constant time). A missing record costs the same
    scrypt work as a real one, so timing does not tell who has credentials."""
    if not record or record.get("scheme") != "scrypt":
        _scrypt(secret, b"\0" * 16, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    try:
        salt = bytes.fromhex(str(record["salt"]))
        expected = bytes.fromhex(str(record["hash"]))
        found = _scrypt(secret, salt, int(record["n"]), int(record["r"]), int(record["p"]))
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(found, expected)


# ---------------------------------------------------------------- the credentials file


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise writers of credentials.json across processes (CLI and inbox)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / (CREDENTIALS_FILE + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_credentials(home: Path) -> dict[str, Any]:
    """{person: {"password": record, "token": record, "generation": int}}; {} when none."""
    try:
        data = json.loads((home / CREDENTIALS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialError(f"{home / CREDENTIALS_FILE} cannot be read: {exc}") from exc
    people = data.get("people") if isinstance(data, dict) else None
    return people if isinstance(people, dict) else {}


def _update(
    home: Path,
    person: str,
    change: dict[str, Any] | Callable[[dict[str, Any]], None],
    *,
    new_generation: bool,
) -> None:
    with _locked(home):
        people = read_credentials(home)
        entry = dict(people.get(person) or {})
        if callable(change):
            change(entry)
        else:
            entry.update(change)
        if new_generation or "generation" not in entry:
            entry["generation"] = int(entry.get("generation", 0)) + 1
        people[person] = entry
        text = json.dumps({"version": 1, "people": people}, indent=2, sort_keys=True) + "\n"
        _write_private(home / CREDENTIALS_FILE, text)


def set_password(home: Path, person: str, password: str) -> None:
    """Set `person`'s inbox password; their sessions signed in before end (new generation)."""
    if len(password) < MIN_PASSWORD:
        raise CredentialError(f"a password needs at least {MIN_PASSWORD} characters")
    _update(home, person, {"password": hash_secret(password)}, new_generation=True)


def issue_token(home: Path, person: str) -> str:
    """A new sign-in token for `person` (replaces their previous one). Shown once: only its
    hash is stored. Form `PERSON.SECRET`, so signing in needs the token alone."""
    token = f"{person}.{secrets.token_urlsafe(24)}"
    # a new token ends the sessions of the old one (it may have leaked)
    _update(home, person, {"token": hash_secret(token)}, new_generation=True)
    return token


def revoke(home: Path, person: str) -> None:
    """Remove `person`'s password and token and end their sessions."""
    _update(home, person, {"password": None, "token": None}, new_generation=True)


def end_session(home: Path, session: Session, *, now: float | None = None) -> None:
    """Sign one session out for good: its cookie is refused from now on even where a copy
    was kept (a shared computer, a copied cookie). Ended sessions are remembered until they
    would have expired anyway; the person's other sessions go on."""
    moment = time.time() if now is None else now

    def change(entry: dict[str, Any]) -> None:
        ended = {
            nonce: until
            for nonce, until in (entry.get("ended") or {}).items()
            if isinstance(until, int | float) and until > moment
        }
        ended[session.nonce] = session.expires
        entry["ended"] = ended

    _update(home, session.person, change, new_generation=False)


def token_person(token: str) -> str:
    """The person a token names (`PERSON.SECRET`), or "" when it is not shaped like one."""
    person, dot, secret = token.strip().rpartition(".")
    return person if dot and person and secret else ""


# ---------------------------------------------------------------- signing


def load_secret(home: Path) -> bytes:
    """The inbox's signing key, generated into STOREOPS_HOME/inbox-secret on first use."""
    path = home / SECRET_FILE
    home.mkdir(parents=True, exist_ok=True)
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    for _ in range(50):  # another process may be writing it this very moment
        text = path.read_text().strip()
        if text:
            return bytes.fromhex(text)
        time.sleep(0.01)
    raise CredentialError(f"{path} is empty; delete it and restart the inbox")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    person: str
    generation: int
    expires: float
    nonce: str


class Signer:
    """Signs session cookies and derives CSRF tokens from one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}\x1f{text}".encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, person: str, generation: int, *, now: float | None = None) -> str:
        payload = {
            "p": person,
            "g": generation,
            "e": int((now if now is not None else time.time()) + SESSION_SECONDS),
            "n": secrets.token_urlsafe(12),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac('session', body)}"

    def read_session(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        body, _dot, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac("session", body).encode()):
            return None
        try:
            payload = json.loads(_unb64(body))
            found = Session(str(payload["p"]), int(payload["g"]), float(payload["e"]), payload["n"])
        except (ValueError, KeyError, TypeError):
            return None
        if found.expires < (now if now is not None else time.time()):
            return None
        return found

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of forms shown within one session (or one sign-in page)."""
        return self._mac("csrf", nonce)[:40]

    def check_csrf(self, nonce: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(
            self.csrf_token(nonce).encode(), str(given).encode()
        )


# ---------------------------------------------------------------- throttling


class Throttle:
    """At most `limit` sign-in attempts per person within `window` seconds, per process,
    until one succeeds.

    `attempt` counts an attempt before its password is checked, so parallel guesses cannot
    slip past the limit while the (slow) checks run; a success clears the count. While a
    person is throttled even the right password is refused, so guessing cannot go on; the
    count empties as attempts age out of the window. Callers key unknown names together,
    so made-up names cannot grow this table."""

    def __init__(self, limit: int = THROTTLE_FAILURES, window: float = THROTTLE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._attempts.get(key) or deque()
        while found and found[0] <= now - self.window:
            found.popleft()
        if found:
            self._attempts[key] = found
        else:
            self._attempts.pop(key, None)
        return found

    def wait_seconds(self, key: str, *, now: float | None = None) -> float:
        """0 when `key` may try; otherwise how long until the oldest attempt ages out."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            return self._wait(self._recent(key, moment), moment)

    def _wait(self, recent: deque[float], moment: float) -> float:
        if len(recent) < self.limit:
            return 0.0
        return max(0.0, recent[0] + self.window - moment)

    def attempt(self, key: str, *, now: float | None = None) -> float:
        """Count an attempt by `key` and return 0, or (throttled) count nothing and return
        how long until it may try again."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(key, moment)
            wait = self._wait(recent, moment)
            if wait == 0:
                recent.append(moment)
                self._attempts[key] = recent
            return wait

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._attempts.pop(key, None)

    def tracked(self) -> int:
        """How many keys have attempts in the window (for tests and health)."""
        with self._lock:
            return len(self._attempts)


def authenticate_password(home: Path, person: str, password: str) -> int | None:
    """The person's credential generation when `password` is theirs, else None."""
    entry = read_credentials(home).get(person) or {}
    if check_secret(password, entry.get("password")):
        return int(entry.get("generation", 1))
    return None


def authenticate_token(home: Path, token: str) -> tuple[str, int] | None:
    """(person, generation) when `token` is a person's current token, else None."""
    person = token_person(token)
    entry = (read_credentials(home).get(person) or {}) if person else {}
    if check_secret(token.strip(), entry.get("token")):
        return person, int(entry.get("generation", 1))
    return None


def current_generation(home: Path, person: str) -> int | None:
    """The generation a session of `person` must carry to be valid (None: no credentials)."""
    entry = read_credentials(home).get(person)
    if not entry or not (entry.get("password") or entry.get("token")):
        return None
    return int(entry.get("generation", 1))
