"""Notification channels against real servers on loopback: aiosmtpd and four chat robots that
check signatures and formats the way their platforms document them."""

from __future__ import annotations

import copy
import logging
import pickle
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from connectors.notify import (
    ChannelConfig,
    ChannelOutbox,
    DeliveryError,
    Secret,
    SmtpSettings,
    dingtalk_sign,
    feishu_sign,
    redact_url,
)
from storeops.errors import ConfigError, OperationError
from storeops.roster import Roster
from storeops.runtime import Engine
from tests.connectors.receivers import (
    DingTalkRobot,
    FeishuBot,
    Robot,
    SlackWebhook,
    SmtpServer,
    WeComRobot,
)

SMTP_USER = "ops@example.com"
SMTP_PASSWORD = "pw-S3cr3t:/@%"  # characters that need percent-encoding in a URL
DINGTALK_TOKEN = "dt0token1b2c3d4e5f60718293a4b5c6d"
DINGTALK_SECRET = "SECdingtalk9f8e7d6c5b4a39281706f5e4d3c2b1a0"
WECOM_KEY = "693a91f6-7b2c-4bc4-97a0-0ec2sifa5aaa"
FEISHU_HOOK = "2f8c6a1e-93b4-4d1f-b1c7-5e0a9d3c7b11"
FEISHU_SECRET = "fsSecretQx7Lw2Zp9Rv4Ty6Ub8"
SLACK_PATH = "/services/T0STOREOPS/B0NOTIFY1/xoxWebhookSecretPart42"
ROBOTS = ["slack", "dingtalk", "wecom", "feishu"]
SECRETS = [
    SMTP_PASSWORD,
    DINGTALK_TOKEN,
    DINGTALK_SECRET,
    WECOM_KEY,
    FEISHU_HOOK,
    FEISHU_SECRET,
    "xoxWebhookSecretPart42",
]

ROSTER = Roster.model_validate(
    {
        "roles": {"ops_lead": {"zh-CN": "负责人", "en": "Ops lead"}},
        "people": {
            "li.wei": {
                "name": "李伟",
                "roles": ["ops_lead"],
                "locale": "zh-CN",
                "channels": {
                    "email": "li.wei@example.com",
                    "wecom": "li.wei",
                    "dingtalk": "li.wei",
                    "feishu": "ou_7d8a6e6df7621556ce0d21922b676706",
                    "slack": "U024BE7LH",
                },
            },
            "anna": {
                "name": "Anna Schmidt",
                "locale": "en",
                "channels": {
                    "email": "anna@example.com",
                    "slack": "anna",
                    "feishu": "ou_anna",
                    "dingtalk": "+86-138-0000-1111",
                    "wecom": "anna.schmidt",
                },
            },
            "nobody": {"name": "No Channels", "locale": "en"},
        },
    }
)

SUBJECT = "新任务：核对库存（大促准备）"
TEXT = "请在今天 18:00 前核对 SKU-1001 的库存。\n数量：1,200 件 <注意> & 确认"
LINK = "http://127.0.0.1:8765/runs/promo-20261109-ab12cd34/steps/check_stock"


def assert_no_secrets(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"a secret leaked into: {text!r}"


def chain(exc: BaseException) -> list[str]:
    """The messages of an exception and of everything chained to it."""
    found: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(found) < 10:
        found += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return found


@dataclass
class Stack:
    smtp: SmtpServer
    slack: SlackWebhook
    dingtalk: DingTalkRobot
    wecom: WeComRobot
    feishu: FeishuBot

    def env(self, **overrides: str) -> dict[str, str]:
        password = SMTP_PASSWORD.replace("%", "%25").replace(":", "%3A").replace("/", "%2F")
        password = password.replace("@", "%40")
        user = SMTP_USER.replace("@", "%40")
        env = {
            "STOREOPS_SMTP_URL": (
                f"smtp://{user}:{password}@127.0.0.1:{self.smtp.port}"
                f"?from=storeops@shop.example.com&starttls=0"
            ),
            "STOREOPS_SLACK_WEBHOOK": f"{self.slack.base}{SLACK_PATH}",
            "STOREOPS_DINGTALK_WEBHOOK": (
                f"{self.dingtalk.base}/robot/send?access_token={DINGTALK_TOKEN}"
            ),
            "STOREOPS_DINGTALK_SECRET": DINGTALK_SECRET,
            "STOREOPS_WECOM_WEBHOOK": f"{self.wecom.base}/cgi-bin/webhook/send?key={WECOM_KEY}",
            "STOREOPS_FEISHU_WEBHOOK": f"{self.feishu.base}/open-apis/bot/v2/hook/{FEISHU_HOOK}",
            "STOREOPS_FEISHU_SECRET": FEISHU_SECRET,
        }
        env.update(overrides)
        return env

    def robot(self, channel: str) -> Robot:
        found = getattr(self, channel)
        assert isinstance(found, Robot)
        return found


@pytest.fixture(scope="module")
def servers() -> Iterator[Stack]:
    smtp = SmtpServer(SMTP_USER, SMTP_PASSWORD)
    smtp.start()
    robots = [
        SlackWebhook(SLACK_PATH),
        DingTalkRobot(DINGTALK_TOKEN, DINGTALK_SECRET),
        WeComRobot(WECOM_KEY),
        FeishuBot(FEISHU_HOOK, FEISHU_SECRET),
    ]
    for robot in robots:
        robot.start()
    try:
        yield Stack(smtp, *robots)  # type: ignore[arg-type]
    finally:
        for robot in robots:
            robot.stop()
        smtp.stop()


@pytest.fixture
def stack(servers: Stack) -> Stack:
    """The module's servers, answering normally and with nothing received yet."""
    for channel in ROBOTS:
        servers.robot(channel).reset()
    servers.smtp.mailbox.messages.clear()
    servers.smtp.mailbox.refuse_with = None
    return servers


@pytest.fixture
def outbox(stack: Stack) -> Iterator[ChannelOutbox]:
    with ChannelOutbox(ROSTER, ChannelConfig.from_env(stack.env())) as made:
        yield made


# ---------------------------------------------------------------- e-mail


def test_email_arrives_with_chinese_subject_body_and_link(
    stack: Stack, outbox: ChannelOutbox
) -> None:
    delivery = outbox.deliver("li.wei", "email", SUBJECT, TEXT, LINK)

    [(envelope, mail)] = stack.smtp.mailbox.messages
    assert "storeops@shop.example.com" == envelope.mail_from
    assert ["li.wei@example.com"] == envelope.rcpt_tos
    assert SUBJECT == mail["Subject"]
    assert "李伟" == mail["To"].addresses[0].display_name
    assert delivery == mail["Message-ID"].strip()
    assert delivery.endswith("@shop.example.com>")
    assert "auto-generated" == mail["Auto-Submitted"]
    body = mail.get_content().replace("\r\n", "\n")  # SMTP sends CRLF line ends
    assert TEXT in body
    assert LINK in body
    assert "utf-8" == mail.get_content_charset()


def test_email_wrong_password_is_refused_and_not_retryable(stack: Stack) -> None:
    env = stack.env()
    env["STOREOPS_SMTP_URL"] = env["STOREOPS_SMTP_URL"].replace("pw-S3cr3t", "pw-wrong")
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", "email", SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert "Unauthorized" == info.value.error
    assert 535 == info.value.code
    assert [] == stack.smtp.mailbox.messages
    assert_no_secrets(*chain(info.value), "pw-wrong")


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 try again later", True), ("550 5.7.1 relaying denied", False)],
    ids=["temporary-4xx", "permanent-5xx"],
)
def test_email_server_replies_decide_retry(
    stack: Stack, outbox: ChannelOutbox, reply: str, retryable: bool
) -> None:
    stack.smtp.mailbox.refuse_with = reply
    with pytest.raises(DeliveryError) as info:
        outbox.deliver("li.wei", "email", SUBJECT, TEXT, LINK)
    assert retryable == info.value.retryable
    assert int(reply[:3]) == info.value.code
    assert reply[:3] in str(info.value)


def test_email_unreachable_server_is_retryable(stack: Stack) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = stack.env()
    env["STOREOPS_SMTP_URL"] = env["STOREOPS_SMTP_URL"].replace(
        f":{stack.smtp.port}?", f":{closed_port}?"
    )
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", "email", SUBJECT, TEXT, LINK)
    assert info.value.retryable
    assert "Unavailable" == info.value.error
    assert_no_secrets(*chain(info.value))


def test_email_starttls_asked_of_a_server_without_it_is_a_config_error(stack: Stack) -> None:
    env = stack.env()
    env["STOREOPS_SMTP_URL"] = env["STOREOPS_SMTP_URL"].replace("starttls=0", "starttls=1")
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", "email", SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert "NotConfigured" == info.value.error
    assert [] == stack.smtp.mailbox.messages


# ---------------------------------------------------------------- chat robots, success


def test_slack_posts_mrkdwn_and_mentions_a_user_id(stack: Stack, outbox: ChannelOutbox) -> None:
    delivery = outbox.deliver("li.wei", "slack", SUBJECT, TEXT, LINK)
    outbox.deliver("anna", "slack", "New task: check stock", "Check SKU-1001 today.", LINK)

    first, second = stack.slack.accepted
    text = first.body["text"]
    assert text.startswith(f"*{SUBJECT}*\n<@U024BE7LH>\n")
    assert "&lt;注意&gt; &amp; 确认" in text  # Slack's three control characters escaped
    assert f"<{LINK}>" in text
    assert "Anna Schmidt" in second.body["text"]  # not an id: named, not mentioned
    assert "<@" not in second.body["text"]
    assert delivery.startswith("slack-")
    assert_no_secrets(delivery)


def test_dingtalk_posts_signed_markdown_that_ats_the_person(
    stack: Stack, outbox: ChannelOutbox
) -> None:
    delivery = outbox.deliver("li.wei", "dingtalk", SUBJECT, TEXT, LINK)
    outbox.deliver("anna", "dingtalk", "New task", "Check stock.", LINK)

    zh, en = stack.dingtalk.accepted
    assert "markdown" == zh.body["msgtype"]
    assert SUBJECT == zh.body["markdown"]["title"]
    text = zh.body["markdown"]["text"]
    assert "@li.wei" in text  # DingTalk shows the @ only if the text names the id too
    assert TEXT in text
    assert f"[{LINK}]({LINK})" in text
    assert {"atUserIds": ["li.wei"], "isAtAll": False} == zh.body["at"]
    assert {"atMobiles": ["+86-138-0000-1111"], "isAtAll": False} == en.body["at"]
    # Encoded once: '=' (always there) is %3D, never %253D.
    assert "%253D" not in zh.raw_query
    assert "%3D" in zh.raw_query.split("sign=")[1]
    assert delivery.startswith("dingtalk-")


def test_wecom_posts_markdown_with_a_mention(stack: Stack, outbox: ChannelOutbox) -> None:
    outbox.deliver("li.wei", "wecom", SUBJECT, TEXT, LINK)

    [received] = stack.wecom.accepted
    assert "markdown" == received.body["msgtype"]
    content = received.body["markdown"]["content"]
    assert content.startswith(f"**{SUBJECT}**\n<@li.wei>\n")
    assert TEXT in content
    assert LINK in content


def test_wecom_cuts_long_text_to_its_limit_but_keeps_the_link(
    stack: Stack, outbox: ChannelOutbox
) -> None:
    outbox.deliver("li.wei", "wecom", SUBJECT, "库存" * 2000, LINK)

    [received] = stack.wecom.accepted
    content = received.body["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096
    assert content.endswith(f"[{LINK}]({LINK})")


def test_feishu_posts_signed_rich_text_in_the_persons_language(
    stack: Stack, outbox: ChannelOutbox
) -> None:
    outbox.deliver("li.wei", "feishu", SUBJECT, TEXT, LINK)
    outbox.deliver("anna", "feishu", "New task: check stock", "Check SKU-1001 today.", LINK)

    zh, en = stack.feishu.accepted
    assert "post" == zh.body["msg_type"]
    post = zh.body["content"]["post"]["zh_cn"]
    assert SUBJECT == post["title"]
    assert {"tag": "at", "user_id": "ou_7d8a6e6df7621556ce0d21922b676706", "user_name": "李伟"} == (
        post["content"][0][0]
    )
    lines = [row[0]["text"] for row in post["content"][1:-1]]
    assert TEXT.splitlines() == lines
    assert {"tag": "a", "text": LINK, "href": LINK} == post["content"][-1][0]
    assert ["en_us"] == list(en.body["content"]["post"])
    assert zh.body["timestamp"].isdigit()
    assert len(zh.body["timestamp"]) == 10


@pytest.mark.parametrize("channel", ["email", *ROBOTS])
def test_the_text_arrives_as_the_caller_rendered_it(
    stack: Stack, outbox: ChannelOutbox, channel: str
) -> None:
    """The engine renders per person's locale; the channel passes it on untouched."""
    english = "Stock check for the 11.11 sale: count SKU-1001 before 18:00."
    outbox.deliver("anna", channel, "New task: stock check", english, LINK)
    if channel == "email":
        [(_envelope, mail)] = stack.smtp.mailbox.messages
        assert english in mail.get_content()
        assert "New task: stock check" == mail["Subject"]
        return
    [received] = stack.robot(channel).accepted
    assert english in repr(received.body)
    assert LINK in repr(received.body)


def test_text_that_only_repeats_the_subject_is_not_sent_twice(
    stack: Stack, outbox: ChannelOutbox
) -> None:
    outbox.deliver("li.wei", "wecom", SUBJECT, SUBJECT, LINK)
    [received] = stack.wecom.accepted
    assert 1 == received.body["markdown"]["content"].count(SUBJECT)


# ---------------------------------------------------------------- chat robots, refusals


@pytest.mark.parametrize(
    ("channel", "variable", "code"),
    [("dingtalk", "STOREOPS_DINGTALK_SECRET", 310000), ("feishu", "STOREOPS_FEISHU_SECRET", 19021)],
)
def test_a_wrong_signing_secret_is_refused_and_not_retryable(
    stack: Stack, channel: str, variable: str, code: int
) -> None:
    env = stack.env(**{variable: "SECnot-the-right-secret-at-all"})
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert "Unauthorized" == info.value.error
    assert code == info.value.code
    assert str(code) in str(info.value)
    assert [] == stack.robot(channel).accepted
    assert_no_secrets(*chain(info.value))
    assert "SECnot-the-right-secret-at-all" not in str(info.value)


@pytest.mark.parametrize("channel", ["dingtalk", "feishu"])
def test_a_signature_older_than_an_hour_is_refused(stack: Stack, channel: str) -> None:
    config = ChannelConfig.from_env(stack.env())
    with (
        ChannelOutbox(ROSTER, config, clock=lambda: time.time() - 3700) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert [] == stack.robot(channel).accepted


@pytest.mark.parametrize(
    ("channel", "variable", "wrong"),
    [
        ("slack", "STOREOPS_SLACK_WEBHOOK", "/services/T0STOREOPS/B0NOTIFY1/revoked"),
        ("dingtalk", "STOREOPS_DINGTALK_WEBHOOK", "/robot/send?access_token=revoked"),
        ("wecom", "STOREOPS_WECOM_WEBHOOK", "/cgi-bin/webhook/send?key=revoked"),
        ("feishu", "STOREOPS_FEISHU_WEBHOOK", "/open-apis/bot/v2/hook/revoked"),
    ],
)
def test_an_unknown_webhook_is_not_retryable(
    stack: Stack, channel: str, variable: str, wrong: str
) -> None:
    env = stack.env(**{variable: stack.robot(channel).base + wrong})
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert "NotFound" == info.value.error


@pytest.mark.parametrize("channel", ROBOTS)
@pytest.mark.parametrize("mode", ["500", "drop"])
def test_server_errors_and_dropped_connections_are_retryable(
    stack: Stack, outbox: ChannelOutbox, channel: str, mode: str
) -> None:
    stack.robot(channel).mode = mode
    with pytest.raises(DeliveryError) as info:
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert info.value.retryable
    assert "Unavailable" == info.value.error
    assert isinstance(info.value, OperationError)  # the engine records it as a failure
    assert_no_secrets(*chain(info.value))


@pytest.mark.parametrize("channel", ROBOTS)
def test_no_answer_within_the_timeout_is_retryable(stack: Stack, channel: str) -> None:
    stack.robot(channel).mode = "slow"
    config = ChannelConfig.from_env(stack.env(STOREOPS_NOTIFY_TIMEOUT="0.3"))
    started = time.monotonic()
    with (
        ChannelOutbox(ROSTER, config) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert time.monotonic() - started < 3
    assert info.value.retryable
    assert "Timeout" == info.value.error


def test_http_429_is_retryable_after_the_servers_delay(stack: Stack, outbox: ChannelOutbox) -> None:
    stack.slack.mode = "429"
    with pytest.raises(DeliveryError) as info:
        outbox.deliver("anna", "slack", "New task", "Check stock.", LINK)
    assert info.value.retryable
    assert "RateLimited" == info.value.error
    assert 7.0 == info.value.retry_after


@pytest.mark.parametrize(("channel", "code"), [("dingtalk", 130101), ("wecom", 45009)])
def test_a_robots_rate_limit_code_is_retryable(
    stack: Stack, outbox: ChannelOutbox, channel: str, code: int
) -> None:
    stack.robot(channel).rate_limited = True
    with pytest.raises(DeliveryError) as info:
        outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
    assert info.value.retryable
    assert "RateLimited" == info.value.error
    assert code == info.value.code


# ---------------------------------------------------------------- routing


def test_inbox_sends_nothing_and_returns_an_id(stack: Stack, outbox: ChannelOutbox) -> None:
    delivery = outbox.deliver("nobody", "inbox", SUBJECT, TEXT, LINK)
    assert delivery.startswith("inbox-")
    assert [] == stack.smtp.mailbox.messages
    assert all(stack.robot(c).requests == 0 for c in ROBOTS)


@pytest.mark.parametrize(
    ("person", "channel", "error", "says"),
    [
        ("ghost", "email", "Invalid", "no person 'ghost'"),
        ("nobody", "email", "Invalid", "no email address"),
        ("li.wei", "pager", "Invalid", "no pager address"),
    ],
)
def test_people_without_an_address_are_not_retryable(
    outbox: ChannelOutbox, person: str, channel: str, error: str, says: str
) -> None:
    with pytest.raises(DeliveryError) as info:
        outbox.deliver(person, channel, SUBJECT, TEXT, LINK)
    assert not info.value.retryable
    assert error == info.value.error
    assert says in str(info.value)


def test_a_channel_without_configuration_says_which_variable_to_set(stack: Stack) -> None:
    env = stack.env()
    del env["STOREOPS_FEISHU_WEBHOOK"], env["STOREOPS_FEISHU_SECRET"]
    with (
        ChannelOutbox(ROSTER, ChannelConfig.from_env(env)) as outbox,
        pytest.raises(DeliveryError) as info,
    ):
        outbox.deliver("li.wei", "feishu", SUBJECT, TEXT, LINK)
    assert "NotConfigured" == info.value.error
    assert not info.value.retryable
    assert "STOREOPS_FEISHU_WEBHOOK" in str(info.value)


# ---------------------------------------------------------------- configuration and secrets


def test_smtp_url_is_parsed_with_percent_decoded_credentials() -> None:
    settings = SmtpSettings.from_url(
        "smtp://ops%40example.com:p%40ss%3Aw%2Frd@mail.example.com:587?from=ops@example.com"
    )
    assert "mail.example.com" == settings.host
    assert 587 == settings.port
    assert "ops@example.com" == settings.username
    assert settings.password is not None
    assert "p@ss:w/rd" == settings.password.reveal()
    assert settings.starttls  # on unless turned off
    tls = SmtpSettings.from_url("smtps://mail.example.com?from=ops@example.com")
    assert (465, True, False) == (tls.port, tls.implicit_tls, tls.starttls)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"STOREOPS_SMTP_URL": "http://u:pw-S3cr3t@h/?from=a@b"}, "expected smtp:// or smtps://"),
        ({"STOREOPS_SMTP_URL": "smtp://u:pw-S3cr3t@h:25"}, "add ?from="),
        ({"STOREOPS_SMTP_URL": "smtp://h?from=a@b&tls=1"}, "unknown option(s) tls"),
        ({"STOREOPS_SMTP_URL": "smtps://h?from=a@b&starttls=1"}, "drop starttls=1"),
        ({"STOREOPS_DINGTALK_SECRET": DINGTALK_SECRET}, "STOREOPS_DINGTALK_WEBHOOK is not"),
        (
            {
                "STOREOPS_DINGTALK_WEBHOOK": f"https://oapi.dingtalk.com/robot/send?t={DINGTALK_TOKEN}"
            },
            "no access_token=",
        ),
        ({"STOREOPS_WECOM_WEBHOOK": f"https://qyapi.weixin.qq.com/?k={WECOM_KEY}"}, "no key="),
        ({"STOREOPS_FEISHU_WEBHOOK": f"ftp://x/{FEISHU_HOOK}"}, "not an http(s) URL"),
        ({"STOREOPS_NOTIFY_TIMEOUT": "0"}, "more than 0"),
        ({"STOREOPS_NOTIFY_TIMEOUT": "soon"}, "expected seconds"),
    ],
)
def test_bad_configuration_names_the_variable_but_not_the_secret(
    env: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ChannelConfig.from_env(env)
    assert says in str(info.value)
    assert "STOREOPS_" in str(info.value)
    assert_no_secrets(*chain(info.value), "pw-S3cr3t")
    assert "pw-S3cr3t" not in str(info.value)


def test_secrets_stay_out_of_reprs_logs_errors_and_delivery_ids(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    config = ChannelConfig.from_env(stack.env())
    seen: list[Any] = [repr(config), str(config), config.configured()]
    with ChannelOutbox(ROSTER, config) as outbox:
        seen.append(repr(outbox))
        for channel in ["email", *ROBOTS]:
            seen.append(outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK))
        for channel in ROBOTS:
            stack.robot(channel).mode = "500"
            with pytest.raises(DeliveryError) as info:
                outbox.deliver("li.wei", channel, SUBJECT, TEXT, LINK)
            seen += chain(info.value)
    assert 5 == len(stack.smtp.mailbox.messages) + sum(len(stack.robot(c).accepted) for c in ROBOTS)
    assert any("delivered to li.wei by dingtalk" in r.getMessage() for r in caplog.records)
    assert "127.0.0.1" in " ".join(map(str, seen))  # the endpoints are shown, redacted
    assert_no_secrets(*seen, caplog.text)


def test_redacted_urls_keep_the_host_and_hide_every_credential() -> None:
    assert "https://oapi.dingtalk.com/robot/send?access_token=***&sign=***" == redact_url(
        "https://oapi.dingtalk.com/robot/send?access_token=abc123&sign=x%2By"
    )
    assert "https://hooks.slack.com/services/***/***/***" == redact_url(
        "https://hooks.slack.com/services/T0/B0/xyz"
    )
    assert "https://open.feishu.cn/open-apis/bot/v2/hook/***" == redact_url(
        "https://open.feishu.cn/open-apis/bot/v2/hook/0f1e2d"
    )
    assert "smtp://***@mail.example.com:587" == redact_url("smtp://u:pw@mail.example.com:587")
    assert "Secret('***')" == repr(Secret("hunter2")) == str(Secret("hunter2"))


def test_signatures_follow_the_documented_recipes() -> None:
    # A published DingTalk vector (timestamp 1700000000000, secret "secret"), base64 before
    # URL encoding; Feishu's recipe swaps the roles: the string is the key, the message empty.
    assert "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY=" == dingtalk_sign(
        "secret", "1700000000000"
    )
    assert feishu_sign("secret", "1700000000") != dingtalk_sign("secret", "1700000000")


# ---------------------------------------------------------------- in the engine

ANNOUNCE_SOP = """\
id: announce
version: 1
title: {zh-CN: 上新通知, en: Launch notice}
roles: [lead]
params:
  sku: {type: string, required: true}
start: tell
states:
  tell:
    type: notify
    to: [lead]
    message: {zh-CN: "新品已上架：SKU-1001", en: "New listing is live: SKU-1001"}
    next: done
  done: {type: succeed}
"""

ANNOUNCE_TEAM = """\
roles:
  lead: {zh-CN: 负责人, en: Lead}
people:
  li.wei: {name: 李伟, roles: [lead], locale: zh-CN, channels: {dingtalk: li.wei}}
  anna: {name: Anna Schmidt, roles: [lead], locale: en, channels: {slack: U024BE7LH}}
"""


@pytest.mark.parametrize("failing", [False, True], ids=["delivered", "robot-down"])
def test_the_engine_delivers_through_the_channels_and_records_failures(
    stack: Stack, tmp_path: Path, make_engine: Callable[..., Engine], failing: bool
) -> None:
    (tmp_path / "announce.yaml").write_text(ANNOUNCE_SOP, encoding="utf-8")
    (tmp_path / "team.yaml").write_text(ANNOUNCE_TEAM, encoding="utf-8")
    engine = make_engine(sops_dir=tmp_path)
    if failing:
        stack.dingtalk.mode = "500"
    with ChannelOutbox(engine.roster, ChannelConfig.from_env(stack.env())) as outbox:
        engine.outbox = outbox
        run_id = engine.start("announce", {"sku": "SKU-1001"}, actor="test")

    types = [e.type for e in engine.ledger.events(run_id)]
    if failing:  # one person's robot is down: the others are still told, the miss recorded
        [sent] = [e for e in engine.ledger.events(run_id) if e.type == "notification.sent"]
        assert {"anna": "slack"} == sent.data["delivered"]
        assert "HTTP 500" in sent.data["failed"]["li.wei"]
        assert sent.data["failed"]["li.wei"].startswith("dingtalk: ")
        assert_no_secrets(sent.data)
        assert "notification.failed" not in types
        return
    assert "notification.sent" in types
    [zh] = stack.dingtalk.accepted
    assert "新品已上架：SKU-1001" in zh.body["markdown"]["text"]
    assert f"/runs/{run_id}" in zh.body["markdown"]["text"]
    [en] = stack.slack.accepted
    assert "New listing is live: SKU-1001" in en.body["text"]


def test_a_secret_copies_but_does_not_pickle() -> None:
    config = ChannelConfig.from_env({"STOREOPS_FEISHU_WEBHOOK": "https://x/hook/abcd1234"})
    assert config == copy.deepcopy(config)
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(config)


def test_email_send_reaches_an_address_outside_the_roster(stack: Stack) -> None:
    from connectors.executor import ConnectorExecutor

    executor = ConnectorExecutor(stack.env())
    try:
        sent = executor.run(
            "email.send",
            {"to": "orders@supplier.example", "name": "杭州茶厂", "subject": "补货申请 TEA-0007",
             "text": "请于 7 日内补货 120 件。"},
            idempotency_key="restock-1/request/1",
            timeout=10,
        )  # fmt: skip
        with pytest.raises(OperationError) as bad:
            executor.run("email.send", {"to": "nobody"}, idempotency_key="k", timeout=10)
    finally:
        executor.close()
    assert "orders@supplier.example" == sent["to"]
    [(envelope, mail)] = stack.smtp.mailbox.messages
    assert ["orders@supplier.example"] == envelope.rcpt_tos
    assert "补货申请 TEA-0007" == mail["Subject"]
    assert "请于 7 日内补货 120 件。" in mail.get_content()
    assert "Invalid" == bad.value.error
