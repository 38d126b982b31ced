"""What the store raises."""

from __future__ import annotations

__all__ = ["StaleVersion", "StoreError"]


class StoreError(Exception):
    """The store cannot do what was asked; its text is one line for the operator."""


class StaleVersion(StoreError):
    """The item changed since the version the caller read: nothing was changed."""
