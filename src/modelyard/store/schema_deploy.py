"""Tables of the deploy stage (same declarative Base as schema.py)."""

from __future__ import annotations

from modelyard.store.schema import Base

__all__ = ["Base"]
