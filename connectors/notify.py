"""Notification channels: e-mail over SMTP and group chat robots (Slack, DingTalk, WeCom, Feishu).

Edge module: stdlib smtplib/email and httpx; `ChannelOutbox` implements
`storeops.runtime.Outbox`, so the engine hands it (person, channel, subject, text, link) and
records the returned delivery id or the `DeliveryError`. Endpoints and secrets come from the
environment only (`ChannelConfig.from_env`); no secret reaches a repr, a log record, an error
message or a return value. Must not import Prefect.

Errors (every failure leaves this module as one of these)::

    storeops.errors.OperationError      `.error` is a spec.ERROR_CLASSES name
    └── DeliveryError                   one message was not delivered; `.retryable` says
                                        whether sending it again can help
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from storeops.errors import ConfigError, OperationError
from storeops.roster import Roster

__all__ = [
    "CHANNELS",
    "ChannelConfig",
    "ChannelOutbox",
    "DeliveryError",
    "Message",
    "RobotSettings",
    "Secret",
    "SmtpSettings",
    "dingtalk_sign",
    "feishu_sign",
    "redact_url",
]

log = logging.getLogger("storeops.notify")

#: Channel names a roster entry may use; `inbox` means "nothing to send, the web inbox shows it".
CHANNELS = ("email", "slack", "dingtalk", "wecom", "feishu", "inbox")
DEFAULT_TIMEOUT = 10.0
#: WeCom documents 4096 bytes (UTF-8) as the limit of `markdown.content`.
WECOM_MARKDOWN_LIMIT = 4096

_ENV = {
    "smtp": "STOREOPS_SMTP_URL",
    "slack": "STOREOPS_SLACK_WEBHOOK",
    "dingtalk": "STOREOPS_DINGTALK_WEBHOOK",
    "dingtalk_secret": "STOREOPS_DINGTALK_SECRET",
    "wecom": "STOREOPS_WECOM_WEBHOOK",
    "feishu": "STOREOPS_FEISHU_WEBHOOK",
    "feishu_secret": "STOREOPS_FEISHU_SECRET",
    "timeout": "STOREOPS_NOTIFY_TIMEOUT",
}


# ---------------------------------------------------------------- errors


class DeliveryError(OperationError):
    """A message to one person over one channel was not delivered.

    `retryable` is True for what may pass on a later try (timeouts, broken connections,
    HTTP 408/425/429/5xx, SMTP 4xx, robot rate limits) and False for what cannot (bad
    signature or credentials, unknown webhook, malformed message, HTTP 4xx, SMTP 5xx).
    A retry after a broken connection may deliver twice: chat robots have no idempotency key.
    """

    def __init__(
        self,
        channel: str,
        error: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        code: int | str | None = None,
    ) -> None:
        super().__init__(error, message, retryable=retryable, retry_after=retry_after)
        self.channel = channel
        self.code = code


# ---------------------------------------------------------------- secrets and configuration


class Secret:
    """A credential that shows itself only through `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("a Secret is not pickled: it would leave the process in clear text")


#: Path segments of the platforms' webhook URLs that carry no credential; every other
#: segment (Slack's T…/B…/token, Feishu's hook id) is shown as *** when a URL is redacted.
_PUBLIC_SEGMENTS = frozenset(
    {"", "services", "robot", "send", "cgi-bin", "webhook", "open-apis", "bot", "v2", "hook"}
)


def redact_url(url: str) -> str:
    """`url` with user-info, every query value and credential-like path segments as ***."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + port
    path = "/".join(s if s in _PUBLIC_SEGMENTS else "***" for s in parts.path.split("/"))
    query = "&".join(f"{k}=***" for k, _v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send e-mail: `smtp://` (optionally STARTTLS) or `smtps://` (TLS)."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: Secret | None = None
    starttls: bool = True
    implicit_tls: bool = False

    @classmethod
    def from_url(cls, url: str, *, variable: str = _ENV["smtp"]) -> SmtpSettings:
        """Parse `smtp[s]://[user[:password]@]host[:port]?from=ADDR[&starttls=0|1]`.

        User and password are percent-decoded. STARTTLS is on by default for `smtp://`;
        `smtps://` speaks TLS from the first byte and takes no `starttls`.
        """
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{variable}: cannot parse {shown!r} ({exc})") from None
        if parts.scheme not in ("smtp", "smtps"):
            raise ConfigError(
                f"{variable}: scheme {parts.scheme!r} in {shown!r}; expected smtp:// or smtps://"
            )
        if not parts.hostname:
            raise ConfigError(f"{variable}: {shown!r} names no host")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - {"from", "starttls"})
        if unknown:
            raise ConfigError(
                f"{variable}: unknown option(s) {', '.join(unknown)} in {shown!r}; "
                "allowed: from, starttls"
            )
        sender = options.get("from") or (unquote(parts.username or "") or "")
        if "@" not in sender:
            raise ConfigError(
                f"{variable}: no sender address in {shown!r}; add ?from=ops@example.com"
            )
        implicit = parts.scheme == "smtps"
        starttls_text = options.get("starttls", "0" if implicit else "1").lower()
        if starttls_text not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"{variable}: starttls={starttls_text!r}; expected 0 or 1")
        starttls = starttls_text in ("1", "true", "yes")
        if implicit and starttls:
            raise ConfigError(f"{variable}: smtps:// is TLS already; drop starttls=1")
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            sender=sender,
            username=unquote(parts.username) if parts.username else None,
            password=Secret(unquote(parts.password)) if parts.password else None,
            starttls=starttls,
            implicit_tls=implicit,
        )


@dataclass(frozen=True, repr=False)
class RobotSettings:
    """A chat robot's webhook URL as the platform issued it (token included) and its
    optional signing secret."""

    url: Secret
    secret: Secret | None = None

    @property
    def shown(self) -> str:
        """The URL as logs and messages may show it."""
        return redact_url(self.url.reveal())

    def __repr__(self) -> str:
        signed = ", secret=Secret('***')" if self.secret else ""
        return f"RobotSettings(url={self.shown!r}{signed})"


def _webhook(
    environ: Mapping[str, str],
    channel: Literal["slack", "dingtalk", "wecom", "feishu"],
    needs_query: str | None = None,
) -> RobotSettings | None:
    variable = _ENV[channel]
    secret_variable = _ENV.get(f"{channel}_secret")
    url = environ.get(variable, "").strip()
    secret = environ.get(secret_variable, "").strip() if secret_variable else ""
    if not url:
        if secret:
            raise ConfigError(f"{secret_variable} is set but {variable} is not; set both")
        return None
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as exc:
        raise ConfigError(f"{variable}: cannot parse {shown!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{variable}: {shown!r} is not an http(s) URL")
    if needs_query and needs_query not in dict(parse_qsl(parts.query)):
        raise ConfigError(
            f"{variable}: {shown!r} has no {needs_query}= query parameter; "
            "use the webhook URL exactly as the platform shows it"
        )
    return RobotSettings(Secret(url), Secret(secret) if secret else None)


@dataclass(frozen=True)
class ChannelConfig:
    """Which channels are configured, and how. Build it with `from_env`."""

    smtp: SmtpSettings | None = None
    slack: RobotSettings | None = None
    dingtalk: RobotSettings | None = None
    wecom: RobotSettings | None = None
    feishu: RobotSettings | None = None
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ChannelConfig:
        """Read the STOREOPS_* variables; an unset variable leaves its channel unconfigured.

        STOREOPS_SMTP_URL, STOREOPS_SLACK_WEBHOOK, STOREOPS_DINGTALK_WEBHOOK (+ _SECRET),
        STOREOPS_WECOM_WEBHOOK, STOREOPS_FEISHU_WEBHOOK (+ _SECRET), STOREOPS_NOTIFY_TIMEOUT
        (seconds per call, default 10). Raises ConfigError naming the variable, never its
        secret.
        """
        smtp_url = environ.get(_ENV["smtp"], "").strip()
        timeout_text = environ.get(_ENV["timeout"], "").strip()
        try:
            timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 300:
            raise ConfigError(
                f"{_ENV['timeout']}={timeout_text!r}; expected seconds, more than 0, at most 300"
            )
        return cls(
            smtp=SmtpSettings.from_url(smtp_url) if smtp_url else None,
            slack=_webhook(environ, "slack"),
            dingtalk=_webhook(environ, "dingtalk", needs_query="access_token"),
            wecom=_webhook(environ, "wecom", needs_query="key"),
            feishu=_webhook(environ, "feishu"),
            timeout=timeout,
        )

    def configured(self) -> list[str]:
        """Names of the channels that can deliver (always including `inbox`)."""
        found = ["email"] if self.smtp else []
        found += [n for n in ("slack", "dingtalk", "wecom", "feishu") if getattr(self, n)]
        return [*found, "inbox"]

    def secrets(self) -> list[str]:
        """Every credential in clear text: for scrubbing text that came from outside."""
        values: list[Secret | None] = [self.smtp.password if self.smtp else None]
        for robot in (self.slack, self.dingtalk, self.wecom, self.feishu):
            if robot is not None:
                values += [robot.secret, *_url_credentials(robot.url.reveal())]
        return [v.reveal() for v in values if v is not None and v.reveal()]


def _url_credentials(url: str) -> list[Secret]:
    parts = urlsplit(url)
    found = [v for _k, v in parse_qsl(parts.query)]
    found += [s for s in parts.path.split("/") if s not in _PUBLIC_SEGMENTS]
    return [Secret(v) for v in found if len(v) >= 4]


def _scrub(text: str, known: list[str]) -> str:
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------- signatures


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk custom robot signature, before URL encoding.

    base64(HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}")); the timestamp is in
    milliseconds and must be within an hour of DingTalk's clock.
    """
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu/Lark custom bot signature (sent in the JSON body, not URL-encoded).

    base64(HMAC-SHA256(key=f"{timestamp_s}\\n{secret}", msg=b"")): unlike DingTalk the
    string is the key and the message is empty; the timestamp is in seconds.
    """
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


# ---------------------------------------------------------------- the message and channels


@dataclass(frozen=True)
class Message:
    """One message to one person: what every channel's `send` takes."""

    person: str
    name: str
    address: str
    locale: str
    subject: str
    text: str
    link: str

    @property
    def body(self) -> str:
        """The text, unless it only repeats the subject (assignment notices do)."""
        text = self.text.strip()
        return "" if text == self.subject.strip() else text


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> str:
        """Deliver; return a delivery id; raise DeliveryError."""
        ...


def _delivery_id(channel: str, message: Message, salt: str) -> str:
    parts = (channel, message.person, message.subject, message.text, message.link, salt)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{channel}-{digest}"


class EmailChannel:
    """Plain-text UTF-8 e-mail; the delivery id is the Message-ID."""

    name = "email"

    def __init__(self, settings: SmtpSettings, *, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    def compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage(policy=SMTP_POLICY)
        mail["From"] = self.settings.sender
        mail["To"] = Address(display_name=message.name, addr_spec=message.address)
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(datetime.now(UTC))
        # Short enough not to be folded (RFC 5322 lines of 78): 96 random bits, the domain.
        domain = self.settings.sender.rpartition("@")[2] or "storeops.invalid"
        mail["Message-ID"] = f"<{secrets.token_hex(12)}@{domain}>"
        # RFC 3834: an automatic message; auto-responders must not answer it.
        mail["Auto-Submitted"] = "auto-generated"
        body = message.text.rstrip()
        mail.set_content(f"{body}\n\n{message.link}\n", charset="utf-8")
        return mail

    def send(self, message: Message) -> str:
        s = self.settings
        mail = self.compose(message)
        where = f"SMTP {s.host}:{s.port}"
        context = ssl.create_default_context() if s.implicit_tls or s.starttls else None
        try:
            client = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=self.timeout, context=context)
                if s.implicit_tls
                else smtplib.SMTP(s.host, s.port, timeout=self.timeout)
            )
            with client:
                client.ehlo()
                if s.starttls:
                    client.starttls(context=context)
                    client.ehlo()
                if s.username is not None:
                    client.login(s.username, s.password.reveal() if s.password else "")
                client.send_message(mail)
        except smtplib.SMTPException as exc:
            raise _smtp_error(where, exc) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                "email",
                "Unauthorized",
                f"{where}: TLS certificate refused: {exc.verify_message}",
                retryable=False,
            ) from None
        except TimeoutError:
            raise DeliveryError(
                "email", "Timeout", f"{where}: no answer in {self.timeout:g} s", retryable=True
            ) from None
        except OSError as exc:
            raise DeliveryError(
                "email",
                "Unavailable",
                f"{where}: {type(exc).__name__}: {exc.strerror or 'connection failed'}",
                retryable=True,
            ) from None
        return str(mail["Message-ID"])


def _smtp_error(where: str, exc: smtplib.SMTPException) -> DeliveryError:
    """SMTP replies: 4xx is temporary (retry), 5xx is permanent; a lost server is temporary."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(
            "email",
            "NotConfigured",
            f"{where}: the server does not offer this ({exc}); check starttls= and the port",
            retryable=False,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(
            "email", "Unavailable", f"{where}: the server closed the connection", retryable=True
        )
    code: int | None = None
    reply = ""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        for refused_code, refused_reply in exc.recipients.values():
            code, reply = refused_code, refused_reply.decode("utf-8", "replace")
    elif isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        raw = exc.smtp_error
        reply = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if code is None:
        return DeliveryError("email", "Error", f"{where}: {type(exc).__name__}", retryable=False)
    kind = (
        "Unauthorized"
        if code in (530, 534, 535, 538)
        else ("Unavailable" if code < 500 else "Invalid")
    )
    return DeliveryError(
        "email",
        kind,
        f"{where}: {type(exc).__name__}: {code} {' '.join(reply.split())[:200]}",
        retryable=400 <= code < 500,
        code=code,
    )


# ---------------------------------------------------------------- chat robots

_RETRYABLE_STATUS = {408: "Timeout", 425: "Unavailable", 429: "RateLimited"}
_STATUS_CLASS = {400: "Invalid", 401: "Unauthorized", 403: "Unauthorized", 404: "NotFound"}


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    text: str

    def json(self) -> dict[str, Any] | None:
        try:
            found = json.loads(self.text)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None


@dataclass
class _Poster:
    """POSTs JSON through an httpx transport and maps failures to DeliveryError.

    The transport is called directly, not through httpx.Client: the client logs every
    request URL at INFO level, and these URLs carry the robots' tokens.
    """

    transport: httpx.BaseTransport
    timeout: float
    secrets: list[str] = field(default_factory=list)

    def post(self, channel: str, url: str, shown: str, payload: Mapping[str, Any]) -> _Answer:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = httpx.Request(
            "POST",
            url,
            content=body,
            headers={"Content-Type": "application/json; charset=utf-8"},
            extensions={"timeout": httpx.Timeout(self.timeout).as_dict()},
        )
        where = f"{channel} {shown}"
        try:
            response = self.transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TimeoutException:
            raise DeliveryError(
                channel, "Timeout", f"{where}: no answer in {self.timeout:g} s", retryable=True
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise DeliveryError(
                channel, "NotConfigured", f"{where}: {type(exc).__name__}", retryable=False
            ) from None
        except httpx.TransportError as exc:
            raise DeliveryError(
                channel,
                "Unavailable",
                f"{where}: {type(exc).__name__}: connection failed or was dropped",
                retryable=True,
            ) from None
        answer = _Answer(response.status_code, response.headers, response.text)
        log.debug("%s answered HTTP %d", where, answer.status)
        if answer.status >= 300:
            raise self._status_error(channel, where, answer)
        return answer

    def _status_error(self, channel: str, where: str, answer: _Answer) -> DeliveryError:
        status = answer.status
        retryable = status in _RETRYABLE_STATUS or status >= 500
        kind = _RETRYABLE_STATUS.get(status) or (
            "Unavailable" if status >= 500 else _STATUS_CLASS.get(status, "Error")
        )
        detail = _scrub(" ".join(answer.text.split())[:300], self.secrets)
        return DeliveryError(
            channel,
            kind,
            f"{where}: HTTP {status}" + (f": {detail}" if detail else ""),
            retryable=retryable,
            retry_after=_retry_after(answer.headers.get("retry-after")),
            code=status,
        )

    def check_code(
        self,
        channel: str,
        where: str,
        answer: _Answer,
        key: str,
        rules: Mapping[int, tuple[str, bool, float | None]],
    ) -> None:
        """Robots answer HTTP 200 with a code; anything but 0 is a refusal."""
        found = answer.json()
        if found is None:
            raise DeliveryError(
                channel,
                "Error",
                f"{where}: expected a JSON answer with {key!r}, found "
                f"{_scrub(answer.text[:120], self.secrets)!r}; it may or may not have posted",
                retryable=False,
            )
        code = found.get(key, found.get("StatusCode"))  # Feishu's older answers: StatusCode
        if code == 0:
            return
        text = found.get("errmsg", found.get("msg", found.get("StatusMessage", "")))
        kind, retryable, retry_after = (
            rules.get(code, ("Invalid", False, None))
            if isinstance(code, int)
            else ("Error", False, None)
        )
        raise DeliveryError(
            channel,
            kind,
            f"{where}: refused with {key} {code}: {_scrub(str(text), self.secrets)[:300]}",
            retryable=retryable,
            retry_after=retry_after,
            code=code if isinstance(code, int | str) else None,
        )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """Append params, each percent-encoded exactly once (base64 '+', '/', '=' included)."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_MOBILE = re.compile(r"^\+?[0-9][0-9 -]{5,}$")


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackRobot:
    """Slack incoming webhook: `text` in mrkdwn; answers `ok` or an HTTP error with a word."""

    name = "slack"

    def __init__(self, settings: RobotSettings, poster: _Poster) -> None:
        self.settings = settings
        self.poster = poster

    def payload(self, message: Message) -> dict[str, Any]:
        who = (
            f"<@{message.address}>"
            if _SLACK_ID.match(message.address)
            else _slack_escape(message.name or message.address)
        )
        lines = [f"*{_slack_escape(message.subject)}*", who]
        if message.body:
            lines.append(_slack_escape(message.body))
        lines.append(f"<{message.link.replace('|', '%7C').replace('>', '%3E')}>")
        return {"text": "\n".join(lines), "unfurl_links": False}

    def send(self, message: Message) -> str:
        where = f"slack {self.settings.shown}"
        answer = self.poster.post(
            "slack", self.settings.url.reveal(), self.settings.shown, self.payload(message)
        )
        if answer.text.strip() != "ok":
            raise DeliveryError(
                "slack",
                "Error",
                f"{where}: expected the answer 'ok', found {answer.text[:120]!r}",
                retryable=False,
            )
        return _delivery_id("slack", message, str(time.time_ns()))


#: errcode -> (error class, retryable, retry after seconds). DingTalk throttles a robot for
#: 10 minutes after more than 20 messages in a minute.
_DINGTALK_CODES: dict[int, tuple[str, bool, float | None]] = {
    130101: ("RateLimited", True, 600.0),
    300005: ("NotFound", False, None),
    310000: ("Unauthorized", False, None),
}


class DingTalkRobot:
    """DingTalk custom robot, markdown, signed when a secret is set (`timestamp`, `sign`)."""

    name = "dingtalk"

    def __init__(
        self, settings: RobotSettings, poster: _Poster, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.poster = poster
        self.clock = clock

    def payload(self, message: Message) -> dict[str, Any]:
        # The @ shows only if the text names the same id that `at` lists.
        by_mobile = bool(_MOBILE.match(message.address))
        parts = [f"#### {message.subject}", f"@{message.address}"]
        if message.body:
            parts.append(message.body)
        parts.append(f"[{message.link}]({message.link})")
        at = {"atMobiles" if by_mobile else "atUserIds": [message.address], "isAtAll": False}
        return {
            "msgtype": "markdown",
            "markdown": {"title": message.subject, "text": "\n\n".join(parts)},
            "at": at,
        }

    def send(self, message: Message) -> str:
        timestamp = str(int(self.clock() * 1000))
        url = self.settings.url.reveal()
        if self.settings.secret is not None:
            sign = dingtalk_sign(self.settings.secret.reveal(), timestamp)
            url = _with_query(url, {"timestamp": timestamp, "sign": sign})
        answer = self.poster.post("dingtalk", url, self.settings.shown, self.payload(message))
        where = f"dingtalk {self.settings.shown}"
        self.poster.check_code("dingtalk", where, answer, "errcode", _DINGTALK_CODES)
        return _delivery_id("dingtalk", message, timestamp)


_WECOM_CODES: dict[int, tuple[str, bool, float | None]] = {
    45009: ("RateLimited", True, 60.0),  # more than 20 messages a minute
    93000: ("NotFound", False, None),  # invalid webhook url (wrong or deleted key)
}


def _fit_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: max(0, limit - 3)].decode("utf-8", "ignore") + "…"


class WeComRobot:
    """WeCom (企业微信) group robot, markdown with `<@userid>`; the key in the URL is the
    only credential (WeCom robots have no signing)."""

    name = "wecom"

    def __init__(self, settings: RobotSettings, poster: _Poster) -> None:
        self.settings = settings
        self.poster = poster

    def payload(self, message: Message) -> dict[str, Any]:
        head = f"**{message.subject}**\n<@{message.address}>\n"
        tail = f"\n[{message.link}]({message.link})"
        room = WECOM_MARKDOWN_LIMIT - len((head + tail).encode("utf-8"))
        body = _fit_utf8(message.body, room) if message.body else ""
        return {"msgtype": "markdown", "markdown": {"content": head + body + tail}}

    def send(self, message: Message) -> str:
        answer = self.poster.post(
            "wecom", self.settings.url.reveal(), self.settings.shown, self.payload(message)
        )
        where = f"wecom {self.settings.shown}"
        self.poster.check_code("wecom", where, answer, "errcode", _WECOM_CODES)
        return _delivery_id("wecom", message, str(time.time_ns()))


_FEISHU_CODES: dict[int, tuple[str, bool, float | None]] = {
    11232: ("RateLimited", True, None),  # frequency limit (100 a minute, 5 a second)
    19001: ("NotFound", False, None),  # the hook token is not valid
    19021: ("Unauthorized", False, None),  # bad signature or timestamp off by over an hour
    19022: ("Unauthorized", False, None),  # IP not allowed
    19024: ("Invalid", False, None),  # keyword missing
}


class FeishuRobot:
    """Feishu/Lark custom bot, rich text (`msg_type: post`) with an `at` of the person;
    signed in the body (`timestamp` in seconds, `sign`) when a secret is set."""

    name = "feishu"

    def __init__(
        self, settings: RobotSettings, poster: _Poster, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.poster = poster
        self.clock = clock

    def payload(self, message: Message) -> dict[str, Any]:
        rows: list[list[dict[str, str]]] = [
            [{"tag": "at", "user_id": message.address, "user_name": message.name}]
        ]
        rows += [[{"tag": "text", "text": line}] for line in message.body.splitlines()]
        rows.append([{"tag": "a", "text": message.link, "href": message.link}])
        language = "en_us" if message.locale.startswith("en") else "zh_cn"
        return {
            "msg_type": "post",
            "content": {"post": {language: {"title": message.subject, "content": rows}}},
        }

    def send(self, message: Message) -> str:
        timestamp = str(int(self.clock()))
        payload = self.payload(message)
        if self.settings.secret is not None:
            sign = feishu_sign(self.settings.secret.reveal(), timestamp)
            payload = {"timestamp": timestamp, "sign": sign, **payload}
        answer = self.poster.post(
            "feishu", self.settings.url.reveal(), self.settings.shown, payload
        )
        where = f"feishu {self.settings.shown}"
        self.poster.check_code("feishu", where, answer, "code", _FEISHU_CODES)
        return _delivery_id("feishu", message, timestamp)


# ---------------------------------------------------------------- the outbox


class ChannelOutbox:
    """`storeops.runtime.Outbox` over real channels; addresses come from the roster.

    `deliver` sends one message and returns its delivery id (the SMTP Message-ID, or a
    hash for robots and `inbox`), or raises DeliveryError. It holds one HTTP connection
    pool: `close()` it (or use it as a context manager) when done. Safe to share between
    threads.
    """

    def __init__(
        self,
        roster: Roster,
        config: ChannelConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.roster = roster
        self.config = config
        self._transport = transport or httpx.HTTPTransport()
        self._owns_transport = transport is None
        poster = _Poster(self._transport, config.timeout, config.secrets())
        channels: list[Channel] = []
        if config.smtp:
            channels.append(EmailChannel(config.smtp, timeout=config.timeout))
        if config.slack:
            channels.append(SlackRobot(config.slack, poster))
        if config.dingtalk:
            channels.append(DingTalkRobot(config.dingtalk, poster, clock))
        if config.wecom:
            channels.append(WeComRobot(config.wecom, poster))
        if config.feishu:
            channels.append(FeishuRobot(config.feishu, poster, clock))
        self.channels: dict[str, Channel] = {c.name: c for c in channels}

    @classmethod
    def from_env(cls, roster: Roster, environ: Mapping[str, str]) -> ChannelOutbox:
        return cls(roster, ChannelConfig.from_env(environ))

    def can_reach(self, channel: str) -> bool:
        """True for `inbox` and for every channel configured in the environment."""
        return channel == "inbox" or channel in self.channels

    def deliver(self, person: str, channel: str, subject: str, text: str, link: str) -> str:
        entry = self.roster.people.get(person)
        if entry is None:
            raise DeliveryError(
                channel, "Invalid", f"no person {person!r} in the roster", retryable=False
            )
        if channel == "inbox":
            message = Message(person, entry.name, "", entry.locale, subject, text, link)
            return _delivery_id("inbox", message, str(time.time_ns()))
        address = entry.channels.get(channel, "").strip()
        if not address:
            known = ", ".join(entry.channels) or "none"
            raise DeliveryError(
                channel,
                "Invalid",
                f"{person} has no {channel} address in the roster; their channels: {known}",
                retryable=False,
            )
        sender = self.channels.get(channel)
        if sender is None:
            hint = (
                f"set {_ENV['smtp' if channel == 'email' else channel]}"
                if channel in ("email", "slack", "dingtalk", "wecom", "feishu")
                else f"known channels: {', '.join(CHANNELS)}"
            )
            raise DeliveryError(
                channel,
                "NotConfigured",
                f"cannot reach {person} by {channel}: the channel is not configured; {hint}",
                retryable=False,
            )
        message = Message(person, entry.name, address, entry.locale, subject, text, link)
        try:
            delivery = sender.send(message)
        except DeliveryError as exc:
            log.warning("delivery to %s by %s failed: %s", person, channel, exc)
            raise
        log.info("delivered to %s by %s: %s", person, channel, delivery)
        return delivery

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> ChannelOutbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ChannelOutbox(channels={self.config.configured()!r}, timeout={self.config.timeout:g})"
        )
