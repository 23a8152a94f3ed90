"""Reservations: proof, kept in Redis, that a webhook delivery already paid its run's token.

Why: the webhook server spends a workflow's run-start token when it accepts a delivery (that
is how it can answer 429), so the run it creates must not pay again. But a run is an object
users write, and no field they can set may let a run skip a limit (a hand-made run with
``trigger.type: webhook`` once started three times against a limit of one per minute). So the
proof is a secret only the operator and Redis know until the run exists:

* Before creating the run, the server stores ``<prefix>rsv:<ns>/<workflow>/<run>:<id>`` = ``-``
  with a TTL, ``id`` being 144 random bits, and writes ``id`` into the run
  (``spec.trigger.reservation``).
* When the operator admits the run it *claims* the key: only an unclaimed key (``-``) or one
  this very run claimed before (its uid) counts. Claiming writes the run's uid into the key.

What that stops: a forged run has no id (or a made-up one): no key, the limit applies. An id
copied from another run points at that run's namespace/workflow/name, never at the copy's.
A run squatting a future delivery's name (its name is a hash of the delivery id) exists
before the id is drawn, so it cannot carry it; the server's create then gets a 409 and cancels
the reservation, refunding the token. A claimed reservation is worth nothing to a run
recreated under the same name (another uid). What it allows: someone who may delete the
delivery's run and create runs could, in the milliseconds before the operator claims it,
recreate it under the same name with the copied id; that run then starts on the token the
delivery paid: one token, one run, the limit holds.

A reservation lapses after its TTL unclaimed (operator down for that long); the run then
pays like any other: the safe direction.
"""

from __future__ import annotations

import re
import secrets

from taskforge.adapters.redis_client import RedisConnection

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
UNCLAIMED = "-"

# KEYS: reservation. ARGV: run uid, ms to keep the key. Returns 1 when the run may use it.
CLAIM_LUA = """
local v = redis.call('GET', KEYS[1])
if v ~= '-' and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: reservation. Deletes it only while unclaimed; returns 1 then (the token may go back).
CANCEL_LUA = """
if redis.call('GET', KEYS[1]) == '-' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def well_formed(reservation: str | None) -> bool:
    """Whether a run's claimed reservation could be one we made (and is safe in a key)."""
    return reservation is not None and _ID.fullmatch(reservation) is not None


class Reservations:
    """Reservations of run-start tokens, keyed ``<prefix>rsv:<ns>/<workflow>/<run>:<id>``.
    Every method raises RedisCallError; callers decide what an unanswered question means."""

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn
        self._claim = conn.client.register_script(CLAIM_LUA)
        self._cancel = conn.client.register_script(CANCEL_LUA)

    def key(self, namespace: str, workflow: str, run: str, reservation: str) -> str:
        return self._conn.key(f"rsv:{namespace}/{workflow}/{run}:{reservation}")

    async def reserve(self, namespace: str, workflow: str, run: str, ttl: float) -> str:
        """A new reservation for the run about to be created; its id goes into the run."""
        reservation = secrets.token_urlsafe(18)
        key = self.key(namespace, workflow, run, reservation)
        await self._conn.run(
            lambda: self._conn.client.set(key, UNCLAIMED, px=_ms(ttl), nx=True),
            f"reserve {namespace}/{run}",
        )
        return reservation

    async def claim(
        self, namespace: str, workflow: str, run: str, reservation: str, *, uid: str,
        keep: float,
    ) -> bool:
        """True if the reservation is this run's to use (unclaimed, or claimed by ``uid``);
        the key then belongs to ``uid`` for ``keep`` seconds, so a retried admission of the
        same run (a status write that lost a conflict) is not charged twice."""
        if not well_formed(reservation):
            return False
        key = self.key(namespace, workflow, run, reservation)
        got = await self._conn.run(
            lambda: self._claim(keys=[key], args=[uid, _ms(keep)]), f"claim {namespace}/{run}"
        )
        return bool(int(got))

    async def cancel(self, namespace: str, workflow: str, run: str, reservation: str) -> bool:
        """Drop an unclaimed reservation (its run was never created); True if it was."""
        key = self.key(namespace, workflow, run, reservation)
        got = await self._conn.run(
            lambda: self._cancel(keys=[key], args=[]), f"cancel reservation {namespace}/{run}"
        )
        return bool(int(got))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
