"""Chat accounts: one process at a time sends, syncs and holds the keys of a bot account.

Why one owner, and how it moves between replicas:

* A bot account (a Matrix user, a Discord bot token) is one identity on its platform.
  Matrix deduplicates a transaction id per *device*, and an encrypted room trusts a
  device's keys: two processes on one device corrupt each other's key store (messages
  nobody can decrypt), and a process that logs in as a new device loses the
  deduplication of everything sent before. So a sink that sends as an account
  (``AccountSink.account`` is not None) runs only in the process that holds the
  account's lease in the store (``Store.try_account``, table ``accounts``).
* The lease is renewed every third of ``[service] account_lease`` by the runtime's
  ``accounts`` loop; another replica takes it once it has run out (a crashed owner on
  the same host is released at once, like its other claims). The owner stops sending
  before its lease can run out (``AccountKeeper.valid``: a margin of a third), so two
  processes never send as one account, even when the store is slow to answer.
* What the next owner needs lives with the lease, in the database: the Matrix device id
  and matrix-nio's key store (its SQLite file, zlib-compressed, base64), saved by the
  owner whenever it changed (``AccountKeeper.save``, refused once the lease is lost).
  A new owner restores both before logging in: a failover continues the same device
  and never logs in as a new one. Replicas starting together create one device, since
  only the lease holder logs in.
* A replica claims deliveries only for the sinks it can send with: configured, started
  and, for an account, owned (``Store.claim_deliveries(sinks=...)``). A replica without
  Matrix credentials never holds a Matrix delivery.

Reconciliation (``needs_reconciling``): a delivery claimed before (``tried_at``) and
retried once the platform's deduplication window may have passed (Discord keeps a
``nonce`` for minutes, Synapse a transaction id for a limited time) is first looked for
in the room's recent history, by the marker every message carries (its idempotency
key); found, it is recorded as sent instead of sent again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from alerts.contracts import Store
from alerts.errors import PlatformUnavailable
from alerts.model import Delivery, utcnow
from alerts.records import AccountLease

log = logging.getLogger(__name__)

STANDALONE_LEASE_S = 3600.0
"""The lease a sink started outside the service (a one-off command, a test) takes."""


@runtime_checkable
class AccountSink(Protocol):
    """A sink that sends as one account on its platform (see the module docstring)."""

    def account(self) -> str | None:
        """The account's name in the store (``matrix:@bot:example.org``), or None when
        this sink needs no lease (it is not configured to send as an account)."""
        ...

    def hand_over(self, keeper: AccountKeeper) -> None:
        """Called before ``start`` once the lease is held: what the sink saves goes
        through ``keeper``."""
        ...


class AccountLost(PlatformUnavailable):
    """The account's lease was lost: this process must not send or sync as it."""


class AccountKeeper:
    """The held lease of one account, and the way its owner saves the session."""

    def __init__(
        self,
        store: Store,
        lease: AccountLease,
        *,
        lease_s: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.lease = lease
        self.lease_s = lease_s
        self.clock = clock

    @property
    def name(self) -> str:
        return self.lease.name

    @property
    def owner(self) -> str:
        return self.lease.owner

    def renewed(self, lease: AccountLease) -> None:
        self.lease = lease

    def valid(self) -> bool:
        """True while the lease has more than a third of its length left."""
        margin = timedelta(seconds=self.lease_s / 3)
        return self.clock() + margin < self.lease.until

    async def save(self, *, device_id: str | None = None, keys: str | None = None) -> None:
        """Save the device id and/or key store for the next owner."""
        saved = await self.store.save_account(
            self.name, owner=self.owner, now=self.clock(), device_id=device_id, keys=keys
        )
        if not saved:
            raise AccountLost(f"account {self.name}: lease lost; not saving its session")

    async def release(self) -> None:
        await self.store.release_account(self.name, owner=self.owner)

    @classmethod
    async def standalone(cls, store: Store, name: str) -> AccountKeeper:
        """Take ``name``'s lease for a sink started outside the service (one-off
        commands, tests): refused while a running service owns the account."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        lease = await store.try_account(name, owner=owner, lease_s=STANDALONE_LEASE_S, now=utcnow())
        if lease is None:
            raise AccountLost(
                f"account {name} is in use by another alerts process (one process at a "
                "time sends as a bot account); stop it or wait for its lease to run out"
            )
        return cls(store, lease, lease_s=STANDALONE_LEASE_S)


def account_of(sink: object) -> str | None:
    """The account ``sink`` sends as, or None (no lease needed)."""
    return sink.account() if isinstance(sink, AccountSink) else None


def needs_reconciling(delivery: Delivery, window_s: float, *, now: datetime | None = None) -> bool:
    """True when ``delivery`` may have been sent by an earlier try whose deduplication
    by the platform (``window_s``) may be over: look before sending again. The first
    try of a delivery never needs it (its ``tried_at`` is None)."""
    if delivery.tried_at is None:
        return False
    age_s = ((now or utcnow()) - delivery.tried_at).total_seconds()
    return age_s >= window_s
