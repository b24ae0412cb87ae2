"""Webhooks: signing (pure) and the delivery worker of the durable callback outbox."""

from kittiwake.webhooks.outbox import OutboxSettings, OutboxStore, OutboxWorker
from kittiwake.webhooks.signing import SIGNATURE_HEADER, signature, signing_string, url_with_query

__all__ = [
    "SIGNATURE_HEADER",
    "OutboxSettings",
    "OutboxStore",
    "OutboxWorker",
    "signature",
    "signing_string",
    "url_with_query",
]
