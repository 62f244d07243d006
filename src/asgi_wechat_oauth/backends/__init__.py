"""Backends coordinate who trades a code and where the result waits for duplicates."""

from ._base import Backend, Claim, Mark, Outcome, Result, TokenStore, check_lease
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "Claim",
    "Mark",
    "MemoryBackend",
    "Outcome",
    "Result",
    "TokenStore",
    "check_lease",
]
