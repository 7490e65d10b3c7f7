"""Loopback stand-ins for the notification platforms: an SMTP server and four chat robots.

Each robot checks what its platform documents (the credential in the URL, the signature and
its timestamp window, the message format) and answers with the platform's own error JSON.
They verify signatures with their own code, never with connectors.notify's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOUR = 3600

# ---------------------------------------------------------------- SMTP


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it receives, or refuses with a scripted reply."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refuse_with: str | None = None  # e.g. "451 4.3.0 try later" or "550 5.1.1 no such user"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_with:
            return self.refuse_with
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 2.0.0 OK"


class SmtpServer(Controller):
    """aiosmtpd on 127.0.0.1 and a free port, with LOGIN/PLAIN auth against one account."""

    def __init__(self, user: str, password: str) -> None:
        self.mailbox = Mailbox()
        self._account = (user.encode(), password.encode())
        super().__init__(
            self.mailbox,
            hostname="127.0.0.1",
            port=0,
            authenticator=self._authenticate,
            auth_require_tls=False,  # loopback only; production servers must require TLS
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self._account
        return AuthResult(success=ok, handled=False)

    def _trigger_server(self) -> None:
        # Bound to port 0: learn the real port before aiosmtpd connects to itself.
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------- HTTP robots


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: Any


Answer = tuple[int, str, bytes]  # status, content type, body


def _json(status: int, value: dict[str, Any]) -> Answer:
    return status, "application/json", json.dumps(value, ensure_ascii=False).encode()


class Robot:
    """A threaded HTTP server on 127.0.0.1 that plays one platform.

    `mode` scripts failures: "ok", "500", "drop" (read the request, close without an
    answer), "slow" (answer only when released), "429" (rate limited, Retry-After: 7).
    """

    accepted: list[Received]

    def __init__(self) -> None:
        self.mode = "ok"
        self.rate_limited = False  # robots with a rate-limit code answer it when set
        self.accepted = []
        self.requests = 0
        self._release = threading.Event()
        robot = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                robot.requests += 1
                mode = robot.mode  # as when the request came: a reset may follow
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    robot._release.wait(10)  # the client gives up long before
                    mode = "500"  # and whatever it gets now is never recorded
                if mode == "500":
                    answer: Answer = (500, "text/plain", b"internal error")
                elif mode == "429":
                    answer = (429, "text/plain", b"rate_limited")
                else:
                    answer = robot.answer(self.path, dict(self.headers.items()), raw)
                status, ctype, body = answer
                self.send_response(status)
                self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if status == 429:
                    self.send_header("Retry-After", "7")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = False  # server_close() joins handler threads
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Robot:
        self._thread.start()
        return self

    def reset(self) -> None:
        """Back to answering normally, with nothing received (between tests)."""
        self._release.set()  # wake handlers still holding a "slow" request
        self._release.clear()
        self.mode = "ok"
        self.accepted.clear()
        self.requests = 0
        self.rate_limited = False

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def answer(self, path: str, headers: dict[str, str], raw: bytes) -> Answer:
        parts = urlsplit(path)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        received = Received(parts.path, parse_qs(parts.query), parts.query, headers, body)
        status, ctype, out = self.check(received)
        if status == 200 and self.succeeded(out):
            self.accepted.append(received)
        return status, ctype, out

    def check(self, received: Received) -> Answer:
        raise NotImplementedError

    def succeeded(self, body: bytes) -> bool:
        raise NotImplementedError


def _ok_json_content_type(headers: dict[str, str]) -> bool:
    return headers.get("Content-Type", "").split(";")[0].strip() == "application/json"


class SlackWebhook(Robot):
    """Slack incoming webhook: /services/T…/B…/secret; `text` required; answers `ok`."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def check(self, received: Received) -> Answer:
        if received.path != self.path:
            return 404, "text/html", b"no_service"
        if not isinstance(received.body, dict) or not _ok_json_content_type(received.headers):
            return 400, "text/html", b"invalid_payload"
        text = received.body.get("text")
        if not isinstance(text, str) or not text.strip():
            return 400, "text/html", b"no_text"
        return 200, "text/html", b"ok"

    def succeeded(self, body: bytes) -> bool:
        return body == b"ok"


class DingTalkRobot(Robot):
    """DingTalk custom robot: /robot/send?access_token=…&timestamp=ms&sign=…"""

    def __init__(self, token: str, secret: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.clock = clock

    def expected_sign(self, timestamp: str) -> str:
        mac = hmac.new(self.secret.encode(), f"{timestamp}\n{self.secret}".encode(), "sha256")
        return base64.b64encode(mac.digest()).decode()

    def check(self, received: Received) -> Answer:
        if received.path != "/robot/send" or received.query.get("access_token") != [self.token]:
            return _json(200, {"errcode": 300005, "errmsg": "token is not exist"})
        timestamp = received.query.get("timestamp", [""])[0]
        sign = received.query.get("sign", [""])[0]
        if not timestamp.isdigit() or abs(self.clock() * 1000 - int(timestamp)) > HOUR * 1000:
            return _json(200, {"errcode": 310000, "errmsg": "invalid timestamp"})
        # parse_qs decoded the query once: a twice-encoded sign arrives as "%2B…" and fails.
        if not hmac.compare_digest(sign, self.expected_sign(timestamp)):
            return _json(200, {"errcode": 310000, "errmsg": "sign not match"})
        body = received.body
        if (
            not isinstance(body, dict)
            or body.get("msgtype") != "markdown"
            or not isinstance(body.get("markdown"), dict)
            or not isinstance(body["markdown"].get("title"), str)
            or not isinstance(body["markdown"].get("text"), str)
            or not body["markdown"]["text"]
        ):
            return _json(200, {"errcode": 40035, "errmsg": "缺少参数 json"})
        at = body.get("at", {})
        if not isinstance(at, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v)
            for k, v in at.items()
            if k in ("atUserIds", "atMobiles")
        ):
            return _json(200, {"errcode": 40035, "errmsg": "缺少参数 json"})
        if self.rate_limited:
            return _json(
                200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            )
        return _json(200, {"errcode": 0, "errmsg": "ok"})

    def succeeded(self, body: bytes) -> bool:
        return bool(json.loads(body)["errcode"] == 0)


class WeComRobot(Robot):
    """WeCom group robot: /cgi-bin/webhook/send?key=…; markdown.content up to 4096 bytes."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def check(self, received: Received) -> Answer:
        if received.path != "/cgi-bin/webhook/send" or received.query.get("key") != [self.key]:
            return _json(200, {"errcode": 93000, "errmsg": "invalid webhook url, hint: [x]"})
        body = received.body
        if not isinstance(body, dict) or body.get("msgtype") not in ("text", "markdown"):
            return _json(200, {"errcode": 40008, "errmsg": "invalid message type"})
        section = body.get(body["msgtype"])
        content = section.get("content") if isinstance(section, dict) else None
        if not isinstance(content, str) or not content:
            return _json(200, {"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode("utf-8")) > 4096:
            return _json(200, {"errcode": 40058, "errmsg": "markdown.content exceed max length"})
        if self.rate_limited:
            return _json(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
        return _json(200, {"errcode": 0, "errmsg": "ok"})

    def succeeded(self, body: bytes) -> bool:
        return bool(json.loads(body)["errcode"] == 0)


class FeishuBot(Robot):
    """Feishu custom bot: /open-apis/bot/v2/hook/<id>; `timestamp` (s) and `sign` in the body."""

    def __init__(self, hook: str, secret: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.hook = hook
        self.secret = secret
        self.clock = clock

    def expected_sign(self, timestamp: str) -> str:
        key = f"{timestamp}\n{self.secret}".encode()
        return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()

    def check(self, received: Received) -> Answer:
        if received.path != f"/open-apis/bot/v2/hook/{self.hook}":
            return _json(
                200,
                {
                    "code": 19001,
                    "data": {},
                    "msg": "param invalid: incoming webhook access token invalid",
                },
            )
        body = received.body
        if not isinstance(body, dict):
            return _json(400, {"code": 9499, "data": {}, "msg": "Bad Request"})
        timestamp = str(body.get("timestamp", ""))
        sign = str(body.get("sign", ""))
        fresh = timestamp.isdigit() and abs(self.clock() - int(timestamp)) <= HOUR
        if not fresh or not hmac.compare_digest(sign, self.expected_sign(timestamp)):
            return _json(
                200,
                {
                    "code": 19021,
                    "data": {},
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                },
            )
        if not self.valid_message(body):
            return _json(400, {"code": 9499, "data": {}, "msg": "Bad Request"})
        return _json(200, {"code": 0, "data": {}, "msg": "success"})

    @staticmethod
    def valid_message(body: dict[str, Any]) -> bool:
        content = body.get("content")
        if not isinstance(content, dict):
            return False
        if body.get("msg_type") == "text":
            return isinstance(content.get("text"), str) and bool(content["text"])
        if body.get("msg_type") != "post" or not isinstance(content.get("post"), dict):
            return False
        languages = content["post"]
        if not languages or not set(languages) <= {"zh_cn", "en_us", "ja_jp"}:
            return False
        for post in languages.values():
            rows = post.get("content") if isinstance(post, dict) else None
            if not isinstance(post.get("title", ""), str) or not isinstance(rows, list):
                return False
            for row in rows:
                if not isinstance(row, list):
                    return False
                for item in row:
                    tag = item.get("tag") if isinstance(item, dict) else None
                    needs = {"text": "text", "a": "href", "at": "user_id", "img": "image_key"}
                    if tag not in needs or not isinstance(item.get(needs[tag]), str):
                        return False
        return True

    def succeeded(self, body: bytes) -> bool:
        return bool(json.loads(body)["code"] == 0)
