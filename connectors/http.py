"""What every HTTP connector shares: mapping answers and transport failures to
`OperationError` (whose class says whether a retry is allowed), `Retry-After`, and
keeping secrets out of messages.

Edge module: imports httpx. Stores, webhooks and chat robots all go through here, so one
rule decides what is retryable: 408/425/429/5xx, timeouts and broken connections are;
other 4xx answers are not (sending the same request again cannot help).
"""

from __future__ import annotations

import email.utils
import re
import time
import urllib.parse
from collections.abc import Iterable, Mapping

import httpx

from storeops.errors import OperationError

__all__ = [
    "error_for_response",
    "error_for_transport",
    "redact",
    "retry_after_seconds",
    "url_secrets",
]

_BY_STATUS = {
    400: ("Invalid", False),
    401: ("Unauthorized", False),
    403: ("Unauthorized", False),
    404: ("NotFound", False),
    408: ("Timeout", True),
    409: ("Conflict", False),
    422: ("Invalid", False),
    425: ("Unavailable", True),
    429: ("RateLimited", True),
}

_SECRET_QUERY = re.compile(
    r"(?i)((?:access_token|token|key|secret|sign|signature|password|consumer_secret)=)[^&\s]+"
)
_USERINFO = re.compile(r"(://)[^/@\s]+@")


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def url_secrets(url: str) -> list[str]:
    """Values in a configured URL that may be credentials: the password and query values
    (robot and webhook URLs carry their token there), to pass to `redact`."""
    parts = urllib.parse.urlsplit(url)
    found = [v for _k, v in urllib.parse.parse_qsl(parts.query)]
    if parts.password:
        found.append(parts.password)
    return [v for v in found if len(v) >= 6]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: URL user-info, token-like query values, given secrets."""
    text = _USERINFO.sub(r"\1***@", text)
    text = _SECRET_QUERY.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def error_for_response(
    what: str, status: int, headers: Mapping[str, str], body: str = ""
) -> OperationError:
    """The error for a non-2xx answer; `what` names the call without secrets."""
    error, retryable = _BY_STATUS.get(
        status, ("Unavailable", True) if status >= 500 else ("Error", False)
    )
    detail = " ".join(body.split())[:300]
    return OperationError(
        error,
        f"{what}: HTTP {status}" + (f": {detail}" if detail else ""),
        retryable=retryable,
        retry_after=retry_after_seconds(headers.get("retry-after")),
    )


def error_for_transport(what: str, exc: httpx.HTTPError) -> OperationError:
    """The error for a request that got no answer: always retryable (the server may not
    have seen it, or may have applied it; callers send an idempotency key)."""
    if isinstance(exc, httpx.TimeoutException):
        return OperationError(
            "Timeout", f"{what}: no answer in time ({type(exc).__name__})", retryable=True
        )
    return OperationError(
        "Unavailable",
        f"{what}: {type(exc).__name__}: connection failed or was reset",
        retryable=True,
    )
