"""The Lua scripts: each decision about a code's keys is one script, so that it is atomic
(Redis runs a script alone) and one round trip. Every script touches keys of one hash tag
only, so they also run on Redis Cluster."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Any

# KEYS: lease, result, holders. ARGV: token, lease ms, holders ms, '1' to hold back.
# -> {1, stored outcome} | {2} lease taken | {3} someone else leads
#    | {4} held back: no lease, but a holder that stored nothing yet (not taken)
# A lease held under this very token is this CLAIM run twice: redis-py sends a command again
# when the connection drops before its answer, and so does the backend after a timeout (the
# first may have run) or while a slot fails over. Holding back: after a failover, a leader
# whose lease expired while its master was down may not have stored its outcome yet.
CLAIM = """
local stored = redis.call('GET', KEYS[2])
if stored then return {1, stored} end
local lease = redis.call('GET', KEYS[1])
if lease == ARGV[1] then return {2} end
if lease then return {3} end
if ARGV[4] == '1' and redis.call('SCARD', KEYS[3]) > redis.call('SISMEMBER', KEYS[3], ARGV[1])
then return {4} end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return {2}
"""

# KEYS: lease, result, holders. -> {1, stored outcome} | {0, lease pttl, holders}
CHECK = """
local stored = redis.call('GET', KEYS[2])
if stored then return {1, stored} end
return {0, redis.call('PTTL', KEYS[1]), redis.call('SCARD', KEYS[3])}
"""

# KEYS: lease, result, holders. ARGV: token, '1' to store, result ms, channel, key, outcome.
# A success replaces a stored error (a leader that lost its lease may finish after another one
# stored 40163); otherwise the first stored outcome stays, and it is what the waiters are sent.
# The lease is released only by its owner. A finished attempt can produce nothing more, so its
# token leaves the holders that recover() may wait for. Running it twice changes nothing more
# (a timed-out COMPLETE is run again): it is idempotent. An empty outcome only releases.
COMPLETE = """
local outcome = ARGV[6]
if ARGV[2] == '1' and outcome ~= '' then
  local current = redis.call('GET', KEYS[2])
  if (not current) or (string.sub(outcome, 1, 1) == '1' and string.sub(current, 1, 1) ~= '1') then
    redis.call('SET', KEYS[2], outcome, 'PX', ARGV[3])
  else
    outcome = current
  end
end
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '\\n' .. outcome)
return outcome
"""

# KEYS: result, mark. ARGV: the stored bytes the caller checked, mark ms (0: no mark).
# -> 1 dropped (and marked) | 0 changed or gone. Dropping and marking in one step: no worker
# can lead a fetch in between and miss the mark.
FORGET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '0' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[2]) end
return 1
"""

# KEYS: result. -> {1, stored outcome, ms left} | {0}
LOOKUP = """
local stored = redis.call('GET', KEYS[1])
if not stored then return {0} end
return {1, stored, redis.call('PTTL', KEYS[1])}
"""

# KEYS: mark, spaced. ARGV: spacing ms (0: none). -> 0 unmarked | 1 taken | 2 spaced
TAKE_MARK = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '0' then return 1 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 2
"""

# KEYS: the state's set of codes. ARGV: code key, limit, ms. -> 1 counted (or already), 0 full
NOTE_CODE = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""


class Script:
    """A Lua script run by ``EVALSHA``, loaded again when the server does not know it. What
    redis-py's ``register_script`` gives, without the import and the copies its wrapper makes
    on every call: a leader runs two scripts for every login."""

    __slots__ = ("_client", "sha", "text")

    def __init__(self, client: Any, text: str) -> None:
        self._client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        return self._client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[no-any-return]

    async def load(self) -> None:
        self.sha = await self._client.script_load(self.text)


class Scripts:
    """Every script, bound to one client."""

    __slots__ = ("check", "claim", "complete", "forget", "lookup", "note_code", "take_mark")

    def __init__(self, client: Any) -> None:
        self.claim = Script(client, CLAIM)
        self.check = Script(client, CHECK)
        self.complete = Script(client, COMPLETE)
        self.note_code = Script(client, NOTE_CODE)
        self.forget = Script(client, FORGET)
        self.lookup = Script(client, LOOKUP)
        self.take_mark = Script(client, TAKE_MARK)
