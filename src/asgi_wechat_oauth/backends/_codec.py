"""Outcomes as bytes, for backends that store them outside the process.

The first byte says what follows (``1`` identity, ``0`` error) so that a store can prefer a
success over an error without parsing JSON (the Redis scripts do exactly that).
"""

from __future__ import annotations

import json

from .._errors import WeChatOAuthError
from .._identity import WeChatIdentity
from ._base import Outcome


def dump_outcome(outcome: Outcome) -> bytes:
    if isinstance(outcome, WeChatIdentity):
        return b"1" + json.dumps(outcome.to_dict(), ensure_ascii=False).encode()
    return b"0" + json.dumps(outcome.to_dict()).encode()


def load_outcome(data: bytes) -> Outcome:
    payload = json.loads(data[1:])
    if data[:1] == b"1":
        return WeChatIdentity.from_dict(payload)
    return WeChatOAuthError.from_dict(payload)
