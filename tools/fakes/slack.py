"""In-memory stand-in for ``slack-notifications``: records messages instead of posting.

It builds the same payload as the real adapter (``notification_payload``), so tests can
assert what Slack would have shown. ``channels`` restricts the known channels (others
fail with ``channel_not_found``, as in Slack); ``fail_next`` injects an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from schemas.tools.slack import (
    PostMessageArgs,
    SendNotificationArgs,
    SendNotificationResult,
    SlackPostResult,
)
from tools.adapters.slack import (
    SERVER,
    SlackApiError,
    message_payload,
    notification_color,
    notification_payload,
)
from tools.errors import ToolArgumentError, ToolError
from tools.spec import ToolServer, tool


@dataclass(frozen=True)
class FakeSlackMessage:
    """One recorded message: where it went and the body Slack would have received."""

    channel: str
    ts: str
    payload: dict[str, Any]

    @property
    def text(self) -> str:
        """The message's fallback text."""
        return str(self.payload.get("text", ""))


class FakeSlackServer(ToolServer):
    """Records every message in :attr:`messages`."""

    name = SERVER

    def __init__(
        self, *, channels: Iterable[str] | None = None, default_channel: str | None = None
    ) -> None:
        self.channels = set(channels) if channels is not None else None
        self.default_channel = default_channel
        self.messages: list[FakeSlackMessage] = []
        self._failures: list[ToolError] = []
        self._ts = itertools.count(1)

    def fail_next(self, error: ToolError) -> None:
        """Raise ``error`` from the next call instead of recording it."""
        self._failures.append(error)

    def in_channel(self, channel: str) -> list[FakeSlackMessage]:
        """The messages sent to ``channel``."""
        return [m for m in self.messages if m.channel == channel]

    @tool()
    async def send_notification(self, args: SendNotificationArgs) -> SendNotificationResult:
        """Record a formatted notification."""
        color = notification_color(args.notification_type, args.color)
        payload = notification_payload(args, color)
        posted = self._record(f"{SERVER}.send_notification", args.channel, payload)
        return SendNotificationResult(
            **posted.model_dump(), color=color, notification_type=args.notification_type
        )

    @tool()
    async def post_message(self, args: PostMessageArgs) -> SlackPostResult:
        """Record a plain message."""
        payload = message_payload(args)
        return self._record(f"{SERVER}.post_message", args.channel, payload)

    def _record(self, name: str, channel: str | None, payload: dict[str, Any]) -> SlackPostResult:
        if self._failures:
            raise self._failures.pop(0)
        target = channel or self.default_channel
        if not target:
            raise ToolArgumentError(
                "channel is required (no default_channel configured)",
                tool=name,
                fields=("channel",),
            )
        if self.channels is not None and target not in self.channels:
            raise SlackApiError(
                "Slack chat.postMessage failed: channel_not_found",
                error="channel_not_found",
                tool=name,
                status=200,
            )
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages.append(FakeSlackMessage(target, ts, {"channel": target, **payload}))
        return SlackPostResult(channel=target, ts=ts, via="fake")
