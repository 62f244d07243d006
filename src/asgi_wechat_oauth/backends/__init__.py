"""Backends coordinate who trades a code and where the result waits for duplicates."""

from ._base import Backend, Claim, Outcome, Result
from .memory import MemoryBackend

__all__ = ["Backend", "Claim", "MemoryBackend", "Outcome", "Result"]
