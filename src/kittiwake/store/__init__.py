"""Persistence: the Store interface, its engines and the packaged schema migrations."""

from kittiwake.store.base import (
    AccountFilter,
    Changes,
    DuplicateError,
    MessageFilter,
    NumberFilter,
    Page,
    PageRequest,
    Store,
)

__all__ = [
    "AccountFilter",
    "Changes",
    "DuplicateError",
    "MessageFilter",
    "NumberFilter",
    "Page",
    "PageRequest",
    "Store",
]
