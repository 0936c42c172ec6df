"""The ``slack-notifications`` tool server: Slack Web API or an incoming webhook (aiohttp).

With a bot token, messages go to ``chat.postMessage`` (any channel the bot is in).
With only an incoming-webhook URL, they go to the webhook, whose channel is fixed by
Slack, so a ``channel`` argument is ignored there. Slack answers most failures with
HTTP 200 and ``{"ok": false, "error": "..."}``; those become :class:`SlackApiError`
(permanent) or a transient error for Slack's own hiccups. HTTP 429 carries
``Retry-After`` and becomes :class:`SlackRateLimited`.

The token and the webhook URL are secrets: they never appear in results, errors or logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from schemas.tools.slack import (
    PostMessageArgs,
    SendNotificationArgs,
    SendNotificationResult,
    SlackPostResult,
)
from tools.adapters.http_session import HttpSessionServer
from tools.errors import ToolArgumentError, ToolFailed, ToolTimeout, ToolTransientError
from tools.spec import tool

log = logging.getLogger(__name__)

SERVER = "slack-notifications"
_JSON = "application/json; charset=utf-8"
# ``ok: false`` errors that describe Slack's state, not the request: worth retrying.
_TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


# Default colours by notification type, checked in order against the type's words.
_TYPE_COLORS = (
    (("fail", "error", "alert", "security", "critical", "rollback"), "danger"),
    (("warn", "degraded"), "warning"),
    (("success", "succeeded", "complete", "completed", "deployed", "resolved"), "good"),
)
_INFO_COLOR = "#439FE0"  # Slack's own "info" blue.
_MAX_FIELDS = 20
_MAX_VALUE = 1000


def notification_color(notification_type: str, color: str | None) -> str:
    """The colour bar of a notification: the caller's, else one derived from its type."""
    if color:
        return color
    words = notification_type.lower()
    for needles, chosen in _TYPE_COLORS:
        if any(needle in words for needle in needles):
            return chosen
    return _INFO_COLOR


def _escape(text: str) -> str:
    # Slack treats <...> as links and mentions; escaping stops an event detail such as
    # "<!channel>" from paging a whole channel.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _render(value: Any) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = str(value)
    else:
        text = json.dumps(value, default=str, sort_keys=True)
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 1] + "\u2026"
    return _escape(text)


def notification_fields(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Legacy attachment fields, one per detail, capped so a huge context stays readable."""
    items = list(details.items())
    fields = [
        {"title": _escape(str(key)), "value": (text := _render(value)), "short": len(text) <= 40}
        for key, value in items[:_MAX_FIELDS]
    ]
    if len(items) > _MAX_FIELDS:
        fields.append(
            {"title": "more", "value": f"{len(items) - _MAX_FIELDS} more details", "short": True}
        )
    return fields


def message_payload(args: PostMessageArgs) -> dict[str, Any]:
    """The chat.postMessage body of a plain message (channel added by the caller)."""
    payload: dict[str, Any] = {"text": args.text}
    if args.blocks:
        payload["blocks"] = args.blocks
    if args.thread_ts:
        payload["thread_ts"] = args.thread_ts
    return payload


def notification_payload(args: SendNotificationArgs, color: str) -> dict[str, Any]:
    """The chat.postMessage body (without channel) of a notification.

    Block Kit carries the title and type; a legacy attachment carries the colour bar
    and the detail fields, because Block Kit has no coloured sidebar of its own.
    """
    title = args.title
    fields = notification_fields(args.details)
    summary = ", ".join(f"{f['title']}={f['value']}" for f in fields[:5])
    return {
        # ``text`` is what push notifications and screen readers show.
        "text": f"[{args.notification_type}] {title}",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": title[:150], "emoji": True},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"*{args.notification_type}* | codebus"}],
            },
        ],
        "attachments": [
            {
                "color": color,
                "fallback": f"{title}: {summary}" if summary else title,
                "fields": fields,
                "footer": "codebus",
                "mrkdwn_in": ["fields"],
            }
        ],
    }


class SlackConfig(BaseModel):
    """Credentials and defaults. A bot token wins when both it and a webhook are set."""

    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr | None = Field(default=None, description="xoxb-... for the Web API.")
    incoming_webhook_url: SecretStr | None = None
    base_url: str = "https://slack.com/api"
    default_channel: str | None = None
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _needs_a_credential(self) -> SlackConfig:
        if self.bot_token is None and self.incoming_webhook_url is None:
            raise ValueError("set bot_token or incoming_webhook_url")
        return self

    @property
    def mode(self) -> str:
        """``web_api`` or ``webhook``."""
        return "web_api" if self.bot_token is not None else "webhook"


class SlackApiError(ToolFailed):
    """Slack refused the message; ``error`` is Slack's code (``channel_not_found``...)."""

    def __init__(
        self, message: str, *, error: str, tool: str | None = None, status: int | None = None
    ):
        super().__init__(message, tool=tool, status=status)
        self.error = error


class SlackRateLimited(ToolTransientError):
    """HTTP 429 from Slack; ``retry_after`` is the wait it asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float, tool: str | None = None):
        super().__init__(message, tool=tool, status=429)
        self.retry_after = retry_after


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


class SlackNotificationsServer(HttpSessionServer):
    """Posts messages and formatted notifications to Slack."""

    name = SERVER

    def __init__(self, config: SlackConfig, *, session: aiohttp.ClientSession | None = None):
        super().__init__(session)
        self.config = config

    def new_session(self) -> aiohttp.ClientSession:
        """A session with the configured timeout."""
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))

    @tool()
    async def send_notification(self, args: SendNotificationArgs) -> SendNotificationResult:
        """Post a notification: a title, a coloured attachment and one field per detail."""
        color = notification_color(args.notification_type, args.color)
        payload = notification_payload(args, color)
        posted = await self._post(f"{SERVER}.send_notification", args.channel, payload)
        return SendNotificationResult(
            **posted.model_dump(), color=color, notification_type=args.notification_type
        )

    @tool()
    async def post_message(self, args: PostMessageArgs) -> SlackPostResult:
        """Post a plain message, optionally with Block Kit blocks or into a thread."""
        payload = message_payload(args)
        return await self._post(f"{SERVER}.post_message", args.channel, payload)

    async def _post(
        self, name: str, channel: str | None, payload: dict[str, Any]
    ) -> SlackPostResult:
        await self.start()
        if self.config.mode == "webhook":
            if channel:
                # Incoming webhooks post to the channel chosen when they were created.
                log.debug("slack webhook ignores channel %s", channel)
            return await self._post_webhook(name, payload)
        target = channel or self.config.default_channel
        if not target:
            raise ToolArgumentError(
                "channel is required (no default_channel configured)",
                tool=name,
                fields=("channel",),
            )
        return await self._post_web_api(name, {"channel": target, **payload})

    async def _post_web_api(self, name: str, body: dict[str, Any]) -> SlackPostResult:
        assert self.config.bot_token is not None and self._session is not None
        url = self.config.base_url.rstrip("/") + "/chat.postMessage"
        headers = {
            "Authorization": f"Bearer {self.config.bot_token.get_secret_value()}",
            "Content-Type": _JSON,
        }
        data = json.dumps(body, default=str).encode()
        try:
            async with self._session.post(url, data=data, headers=headers) as response:
                self._raise_for_http(name, response.status, response.headers, response.reason)
                answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ToolTimeout("Slack did not answer in time", tool=name) from exc
        except aiohttp.ClientError as exc:
            raise ToolTransientError(f"Slack unreachable: {exc}", tool=name) from exc
        except ValueError as exc:
            raise ToolTransientError("Slack answered with invalid JSON", tool=name) from exc
        if not isinstance(answer, dict):
            raise ToolTransientError("Slack answered with an unexpected body", tool=name)
        if not answer.get("ok"):
            error = str(answer.get("error") or "unknown_error")
            message = f"Slack chat.postMessage failed: {error}"
            if error in _TRANSIENT_ERRORS:
                raise ToolTransientError(message, tool=name, status=response.status)
            raise SlackApiError(message, error=error, tool=name, status=response.status)
        return SlackPostResult(channel=answer.get("channel"), ts=answer.get("ts"), via="web_api")

    async def _post_webhook(self, name: str, payload: dict[str, Any]) -> SlackPostResult:
        assert self.config.incoming_webhook_url is not None and self._session is not None
        url = self.config.incoming_webhook_url.get_secret_value()
        data = json.dumps(payload, default=str).encode()
        try:
            async with self._session.post(
                url, data=data, headers={"Content-Type": _JSON}
            ) as response:
                text = (await response.text()).strip()
                status, headers = response.status, response.headers
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ToolTimeout("Slack webhook did not answer in time", tool=name) from exc
        except aiohttp.ClientError as exc:
            # aiohttp messages can quote the URL, and the webhook URL is the secret.
            raise ToolTransientError(
                f"Slack webhook unreachable: {type(exc).__name__}", tool=name
            ) from None
        # Webhooks answer errors as plain-text codes ("invalid_payload", "no_service").
        error = text[:100] if text and text != "ok" else f"http_{status}"
        self._raise_for_http(name, status, headers, error)
        if status != 200 or text != "ok":
            message = f"Slack webhook refused the message: {error}"
            raise SlackApiError(message, error=error, tool=name, status=status)
        return SlackPostResult(via="webhook")

    @staticmethod
    def _raise_for_http(name: str, status: int, headers: Any, detail: str | None) -> None:
        if status == 429:
            wait = _retry_after(headers)
            raise SlackRateLimited(
                f"Slack rate limit; retry after {wait:g}s", tool=name, retry_after=wait
            )
        if status >= 500:
            raise ToolTransientError(f"Slack HTTP {status}: {detail}", tool=name, status=status)
        if status >= 400:
            raise SlackApiError(
                f"Slack HTTP {status}: {detail}", error=str(detail), tool=name, status=status
            )
