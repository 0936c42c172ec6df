"""The ``slack-notifications`` adapter against a local Slack stand-in over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from schemas.tools.slack import PostMessageArgs, SendNotificationArgs
from tests.helpers import silent_server
from tests.tools.adapters.slack_server import WEBHOOK_PATH, SlackStub, start_slack_stub
from tools.adapters.slack import (
    SlackApiError,
    SlackConfig,
    SlackNotificationsServer,
    SlackRateLimited,
    notification_color,
)
from tools.errors import ToolArgumentError, ToolTimeout, ToolTransientError
from tools.fakes.slack import FakeSlackServer
from tools.spec import ToolServer

TOKEN = "xoxb-test-0000-secret"


@pytest.fixture
async def stub() -> AsyncIterator[tuple[SlackStub, str]]:
    """The stand-in and its base URL."""
    state = SlackStub(token=TOKEN)
    server = await start_slack_stub(state)
    try:
        yield state, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def _server(base: str, **overrides: Any) -> SlackNotificationsServer:
    values: dict[str, Any] = {
        "bot_token": SecretStr(TOKEN),
        "base_url": f"{base}/api",
        "timeout": 5,
    }
    values.update(overrides)
    return SlackNotificationsServer(SlackConfig.model_validate(values))


async def _call(server: ToolServer, name: str, args: BaseModel) -> Any:
    try:
        bound = {t.spec.name: t for t in server.tools()}[f"slack-notifications.{name}"]
        return await bound.call(args)
    finally:
        await server.close()


def test_tool_names() -> None:
    server = SlackNotificationsServer(SlackConfig(bot_token=SecretStr(TOKEN)))
    assert {t.spec.name for t in server.tools()} == {
        "slack-notifications.send_notification",
        "slack-notifications.post_message",
    }


async def test_notification_is_formatted_with_title_color_and_fields(
    stub: tuple[SlackStub, str],
) -> None:
    state, base = stub
    details = {"app": "myapp", "version": "1.2.3", "replicas": 3, "ping": "<!channel>"}
    result = await _call(
        _server(base),
        "send_notification",
        SendNotificationArgs(
            channel="#security-alerts",
            notification_type="security_alert",
            title="Security Issue Detected",
            details=details,
            color="danger",
        ),
    )
    assert result.ok and result.channel == "C0SECURE" and result.ts
    assert result.color == "danger" and result.via == "web_api"

    [message] = state.messages
    assert message.headers["Authorization"] == f"Bearer {TOKEN}"
    body = message.body
    assert body["channel"] == "#security-alerts"
    assert "Security Issue Detected" in body["text"]
    header = body["blocks"][0]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Security Issue Detected", "emoji": True},
    }
    assert "security_alert" in body["blocks"][1]["elements"][0]["text"]
    [attachment] = body["attachments"]
    assert attachment["color"] == "danger"
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields == {
        "app": "myapp",
        "version": "1.2.3",
        "replicas": "3",
        "ping": "&lt;!channel&gt;",
    }


async def test_notification_color_defaults_from_type(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    result = await _call(
        _server(base, default_channel="#deployments"),
        "send_notification",
        SendNotificationArgs(
            notification_type="deployment_success",
            title="Deployed myapp v1.0.0",
            details={"context": {"app": "myapp", "steps": [1, 2]}},
        ),
    )
    assert result.color == "good" and result.channel == "C0DEPLOY"
    [attachment] = state.messages[0].body["attachments"]
    assert attachment["color"] == "good"
    # Nested details are rendered as compact JSON, not Python reprs.
    assert attachment["fields"][0]["value"] == '{"app": "myapp", "steps": [1, 2]}'
    assert notification_color("info", None).startswith("#")
    assert notification_color("deploy_warning", None) == "warning"
    assert notification_color("info", "#123456") == "#123456"


async def test_post_message_with_thread_and_blocks(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    result = await _call(
        _server(base),
        "post_message",
        PostMessageArgs(
            channel="#deployments",
            text="Deployment started: myapp",
            blocks=blocks,
            thread_ts="1700000000.000001",
        ),
    )
    assert result.channel == "C0DEPLOY"
    body = state.messages[0].body
    assert body == {
        "channel": "#deployments",
        "text": "Deployment started: myapp",
        "blocks": blocks,
        "thread_ts": "1700000000.000001",
    }


async def test_unknown_channel_is_a_named_permanent_error(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    with pytest.raises(SlackApiError) as info:
        await _call(_server(base), "post_message", PostMessageArgs(channel="#nope", text="x"))
    assert info.value.error == "channel_not_found"
    assert "channel_not_found" in str(info.value)
    assert info.value.tool == "slack-notifications.post_message"
    assert state.messages == []


async def test_wrong_token_is_invalid_auth_and_never_echoed(stub: tuple[SlackStub, str]) -> None:
    _, base = stub
    wrong = "xoxb-wrong-token"
    with pytest.raises(SlackApiError) as info:
        await _call(
            _server(base, bot_token=SecretStr(wrong)),
            "post_message",
            PostMessageArgs(channel="#deployments", text="x"),
        )
    assert info.value.error == "invalid_auth"
    assert wrong not in str(info.value)


async def test_missing_channel_without_default_names_the_field(
    stub: tuple[SlackStub, str],
) -> None:
    _, base = stub
    with pytest.raises(ToolArgumentError) as info:
        await _call(_server(base), "post_message", PostMessageArgs(text="x"))
    assert info.value.fields == ("channel",)


async def test_429_carries_retry_after(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    state.fail_next(429, '{"ok": false, "error": "ratelimited"}', {"Retry-After": "7"})
    with pytest.raises(SlackRateLimited) as info:
        await _call(
            _server(base), "post_message", PostMessageArgs(channel="#deployments", text="x")
        )
    assert info.value.status == 429
    assert info.value.retry_after == 7.0
    assert isinstance(info.value, ToolTransientError)


async def test_500_is_transient(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    state.fail_next(500, "boom")
    with pytest.raises(ToolTransientError) as info:
        await _call(
            _server(base), "post_message", PostMessageArgs(channel="#deployments", text="x")
        )
    assert info.value.status == 500
    assert not isinstance(info.value, SlackRateLimited)


async def test_unreachable_slack_is_transient() -> None:
    server = _server("http://127.0.0.1:9", timeout=2)
    with pytest.raises(ToolTransientError):
        await _call(server, "post_message", PostMessageArgs(channel="#deployments", text="x"))


async def test_webhook_mode_posts_payload_without_channel(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    hook = f"{base}{WEBHOOK_PATH}"
    server = SlackNotificationsServer(SlackConfig(incoming_webhook_url=SecretStr(hook)))
    result = await _call(
        server,
        "send_notification",
        SendNotificationArgs(channel="#ignored", title="Backup done", details={"size": "3 GB"}),
    )
    assert result.via == "webhook" and result.channel is None
    [message] = state.webhook_messages
    assert "channel" not in message.body
    assert message.body["attachments"][0]["fields"] == [
        {"title": "size", "value": "3 GB", "short": True}
    ]
    assert state.messages == []


async def test_webhook_errors_map_and_hide_the_url(stub: tuple[SlackStub, str]) -> None:
    state, base = stub
    hook = f"{base}/services/T0000/B0000/wrongsecret"
    server = SlackNotificationsServer(SlackConfig(incoming_webhook_url=SecretStr(hook)))
    with pytest.raises(SlackApiError) as info:
        await _call(server, "post_message", PostMessageArgs(text="x"))
    assert info.value.status == 404
    assert "wrongsecret" not in str(info.value)

    good = SlackNotificationsServer(
        SlackConfig(incoming_webhook_url=SecretStr(f"{base}{WEBHOOK_PATH}"))
    )
    state.fail_next(503, "service_unavailable")
    with pytest.raises(ToolTransientError):
        await _call(good, "post_message", PostMessageArgs(text="x"))


def test_config_needs_a_credential_and_hides_it() -> None:
    with pytest.raises(ValidationError):
        SlackConfig()
    config = SlackConfig(bot_token=SecretStr(TOKEN))
    assert TOKEN not in repr(config) and TOKEN not in config.model_dump_json()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"title": ""}, "title"),
        ({"color": "purple"}, "color"),
        ({"channel": "not a channel"}, "channel"),
        ({"notification_type": "Bad Type"}, "notification_type"),
        ({"details": ["not", "a", "dict"]}, "details"),
    ],
)
def test_bad_notification_args_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        SendNotificationArgs.model_validate({"title": "t", **values})
    assert field in {str(err["loc"][0]) for err in info.value.errors()}


def test_empty_message_is_refused_naming_text() -> None:
    with pytest.raises(ValidationError) as info:
        PostMessageArgs(channel="#deployments")
    assert info.value.errors()[0]["loc"] == ("text",)


async def test_fake_records_the_same_payload_as_the_real_adapter(
    stub: tuple[SlackStub, str],
) -> None:
    state, base = stub
    args = SendNotificationArgs(
        channel="#deployments",
        notification_type="deployment_success",
        title="Deployed myapp v2",
        details={"app": "myapp", "version": "2"},
    )
    fake = FakeSlackServer(channels={"#deployments"})
    assert {t.spec.name for t in fake.tools()} == {t.spec.name for t in _server(base).tools()}
    faked = await _call(fake, "send_notification", args)
    real = await _call(_server(base), "send_notification", args)
    assert faked.color == real.color == "good"
    [recorded] = fake.in_channel("#deployments")
    assert recorded.payload == state.messages[0].body
    assert recorded.text == "[deployment_success] Deployed myapp v2"


async def test_fake_refuses_unknown_channels_and_injects_failures() -> None:
    fake = FakeSlackServer(channels={"#deployments"})
    with pytest.raises(SlackApiError) as info:
        await _call(fake, "post_message", PostMessageArgs(channel="#random", text="x"))
    assert info.value.error == "channel_not_found"
    with pytest.raises(ToolArgumentError):
        await _call(fake, "post_message", PostMessageArgs(text="x"))
    fake.fail_next(SlackRateLimited("slow down", retry_after=2.0))
    with pytest.raises(SlackRateLimited):
        await _call(fake, "post_message", PostMessageArgs(channel="#deployments", text="x"))
    posted = await _call(fake, "post_message", PostMessageArgs(channel="#deployments", text="ok"))
    assert posted.ts and [m.text for m in fake.messages] == ["ok"]


async def test_hung_slack_is_a_timeout() -> None:
    async with silent_server() as endpoint:
        server = _server(endpoint, timeout=0.5)
        with pytest.raises(ToolTimeout):
            await _call(server, "post_message", PostMessageArgs(channel="#deployments", text="x"))
