"""Argument and result models of the ``slack-notifications`` tool server.

``send_notification`` takes the integration guide's arguments (``channel``,
``notification_type``, ``title``, ``details``, ``color``); ``post_message`` sends plain
text or caller-built Block Kit blocks. ``channel`` may be omitted when the adapter has a
default channel (or posts through an incoming webhook, which has a fixed channel).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
#: The colour names Slack's legacy attachments understand.
NAMED_COLORS = ("good", "warning", "danger")
# A channel is "#name", a bare name, or an ID such as C0123ABCD / U... / D...
_CHANNEL = re.compile(r"^[#@]?[\w.-]{1,80}$")
_TS = re.compile(r"^\d+\.\d+$")
#: Slack truncates messages beyond 40k characters; refuse rather than lose the end.
MAX_TEXT = 40_000
#: Slack accepts at most 50 blocks in one message.
MAX_BLOCKS = 50


class _Args(BaseModel):
    """Base of the argument models: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


def _check_channel(value: str) -> str:
    if not _CHANNEL.match(value):
        raise ValueError("channel must be '#name', a bare name, or a Slack channel ID")
    return value


ChannelName = Annotated[str, AfterValidator(_check_channel)]


class SendNotificationArgs(_Args):
    """A formatted notification: a title, a colour bar and one field per detail."""

    channel: ChannelName | None = None
    notification_type: str = Field(
        default="info",
        pattern=r"^[a-z][a-z0-9_.-]{0,63}$",
        description="deployment, deployment_success, security_alert, info, ...",
    )
    title: str = Field(min_length=1, max_length=3000)
    details: dict[str, Any] = Field(default_factory=dict)
    color: str | None = Field(
        default=None, description="good, warning, danger or #RRGGBB; derived from type if unset."
    )

    @field_validator("color")
    @classmethod
    def _known_color(cls, value: str | None) -> str | None:
        if value is None or value in NAMED_COLORS or _HEX_COLOR.match(value):
            return value
        raise ValueError("color must be good, warning, danger or a #RRGGBB hex colour")


class PostMessageArgs(_Args):
    """A plain message, optionally with Block Kit blocks and in a thread."""

    channel: ChannelName | None = None
    blocks: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=MAX_BLOCKS)
    # Declared after ``blocks`` so that its validator can see them.
    text: str = Field(
        default="",
        max_length=MAX_TEXT,
        validate_default=True,
        description="Message text; with blocks it is the notification fallback.",
    )
    thread_ts: str | None = Field(default=None, description="Reply in this message's thread.")

    @field_validator("blocks")
    @classmethod
    def _blocks_have_types(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, block in enumerate(value or []):
            if not isinstance(block.get("type"), str):
                raise ValueError(f"block {index} has no 'type'")
        return value

    @field_validator("thread_ts")
    @classmethod
    def _ts_shape(cls, value: str | None) -> str | None:
        if value is not None and not _TS.match(value):
            raise ValueError("thread_ts must look like '1700000000.000100'")
        return value

    @field_validator("text")
    @classmethod
    def _text_or_blocks(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and not info.data.get("blocks"):
            raise ValueError("give text or blocks; an empty message cannot be posted")
        return value


class SlackPostResult(BaseModel):
    """What Slack answered. Webhook posts return no channel or timestamp."""

    ok: bool = True
    channel: str | None = None
    ts: str | None = None
    via: Literal["web_api", "webhook", "fake"] = Field(description="How it was delivered.")


class SendNotificationResult(SlackPostResult):
    """A posted notification, with the colour it was given."""

    color: str
    notification_type: str
