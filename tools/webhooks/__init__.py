"""Outbound webhooks: signed Standard Webhooks delivery with SSRF defence, and a
bounded delivery log in Redis.

- :mod:`tools.webhooks.ssrf`: vet a URL's addresses and pin the connection to them;
- :mod:`tools.webhooks.delivery`: :class:`WebhookSender`, the HTTP client;
- :mod:`tools.webhooks.log`: :class:`DeliveryLog`, per (event, subscription) records.
"""

from tools.webhooks.delivery import DeliveryResult, WebhookSender
from tools.webhooks.log import DeliveryLog, DeliveryRecord
from tools.webhooks.ssrf import WebhookBlocked, vet_url

__all__ = [
    "DeliveryLog",
    "DeliveryRecord",
    "DeliveryResult",
    "WebhookBlocked",
    "WebhookSender",
    "vet_url",
]
