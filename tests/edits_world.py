"""One room and its pipeline, for the tests of messages that live (issue 15).

``World`` commits events the way the scheduler does (routed by the real router, with
the room's view, in a real SQLite store) and the real dispatcher delivers them to a
sink: the Discord fake or Synapse in the platform suites, ``RoomSink`` here. The
event makers follow the campaign's shapes: USAspending awards and modifications, the
letter's signature deltas and milestones, news items from feeds and Bluesky posts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from alerts.contracts import NoOptions, Sink
from alerts.dispatch import Dispatcher, RetryPolicy
from alerts.errors import MessageGone
from alerts.model import (
    Delivery,
    Destination,
    Event,
    EventKind,
    MessageView,
    Posted,
    Subscription,
    UpdateStyle,
    View,
    utcnow,
)
from alerts.route import Router
from alerts.store import PollCommit, Store

OWNER = "edits-tests"
T0 = datetime(2026, 2, 3, 15, 0, tzinfo=UTC)
AWARD = "CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"
DEFAULT_VIEW = View()
DEFAULTS = {"ice-awards": UpdateStyle.REPLY, "iceout-letter": UpdateStyle.EDIT}


class World:
    """A destination subscribed to everything, its view, and the real dispatcher."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        destination: Destination,
        *,
        view: View = DEFAULT_VIEW,
        source_updates: Mapping[str, UpdateStyle] = DEFAULTS,
        not_stories: Sequence[str] = ("iceout-letter",),  # the petition adapter's
        subscription: Subscription | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.destination = destination
        self.clock = clock
        self.router = Router([subscription or Subscription(destination.id)])
        self.router.set_views({destination.id: view}, source_updates, not_stories)
        self.dispatcher = Dispatcher(
            store=store,
            sinks={destination.sink: sink},
            owner=OWNER,
            policy=RetryPolicy(base_s=0.05, max_attempts=50),
            idle_s=0.05,
            clock=clock,
            digest_check_s=0.0,
        )

    async def start(self) -> World:
        await self.store.upsert_destination(self.destination)
        return self

    async def commit(self, *events: Event) -> list[Event]:
        """Commit the events, one poll per source in the order given."""
        stored: list[Event] = []
        for source, group in itertools.groupby(events, key=lambda e: e.source_id):
            now = self.clock()
            row = await self.store.claim_source(source, now, owner=OWNER, lease_s=60)
            assert row is not None, f"source {source} is leased by someone else"
            routed = [self.router.routed(e, now=now) for e in group]
            commit = PollCommit(source_id=source, now=now, next_due=now, events=routed)
            stored += await self.store.commit_poll(commit, owner=OWNER)
        return stored

    async def deliver(self, *events: Event, timeout_s: float = 30.0) -> None:
        """Commit ``events`` (if any) and send everything claimable now."""
        if events:
            await self.commit(*events)
        await self.dispatcher.drain(timeout_s=timeout_s)

    async def settle(self, timeout_s: float = 30.0) -> None:
        """Send until nothing is pending (retries included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (await self.store.outbox_stats()).pending:
            assert loop.time() < deadline, "deliveries still pending"
            await self.dispatcher.drain(timeout_s=timeout_s)
            await asyncio.sleep(0.05)


# --- a sink with a platform's semantics, recording what a room would show -------------


@dataclass
class Shown:
    """One message in the room: every revision of what it showed, its replies."""

    id: str
    room: str
    revisions: list[MessageView]
    replies: list[MessageView] = field(default_factory=list)
    deleted: bool = False

    @property
    def view(self) -> MessageView:
        return self.revisions[-1]


class RoomSink:
    """An ``EditingSink`` with the guarantees the platforms give: a post or reply
    repeated with the same key shows once (Discord nonce, Matrix transaction id), an
    edit to the same content changes nothing, and an edit of a deleted message raises
    ``MessageGone``. ``fail`` scripts errors per call (``"post"``, ``"edit"``, ``"reply"``)."""

    kind: ClassVar[str] = "room"
    Options: ClassVar[type[BaseModel]] = NoOptions
    Settings: ClassVar[None] = None
    edit_interval_s: ClassVar[float] = 0.0

    def __init__(self) -> None:
        self.messages: list[Shown] = []
        self.calls: list[str] = []
        self.fail: dict[str, list[Exception]] = {}
        self._by_key: dict[str, Shown | str] = {}

    # the contract -----------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def validate_destination(self, destination: Destination) -> None:
        return None

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        return None

    @classmethod
    def configured(cls) -> bool:
        return False

    async def send(self, delivery: Delivery) -> str | None:
        return (await self.post(delivery, MessageView(delivery.event))).remote_id

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        self._call("post")
        known = self._by_key.get(delivery.idempotency_key)
        if isinstance(known, Shown):
            return Posted(known.id, known.room)
        shown = Shown(f"m{len(self.messages) + 1}", delivery.destination.target, [view])
        self.messages.append(shown)
        self._by_key[delivery.idempotency_key] = shown
        return Posted(shown.id, shown.room)

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        self._call("edit")
        shown = self.message(posted.remote_id)
        if shown.deleted:
            raise MessageGone(f"message {posted.remote_id} was deleted")
        if view != shown.view:
            shown.revisions.append(view)

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        self._call("reply")
        key = delivery.idempotency_key + ".reply"
        if key not in self._by_key:
            self.message(posted.remote_id).replies.append(view)
            self._by_key[key] = key
        return key

    # what tests look at -------------------------------------------------------------

    def _call(self, what: str) -> None:
        self.calls.append(what)
        script = self.fail.get(what)
        if script:
            raise script.pop(0)

    def message(self, message_id: str) -> Shown:
        return next(m for m in self.messages if m.id == message_id)

    def visible(self) -> list[Shown]:
        return [m for m in self.messages if not m.deleted]


# --- events of the campaign's shapes ---------------------------------------------------


def award_new(amount: float, *, at: datetime = T0) -> Event:
    """A USAspending award the room is told about (the awards adapter's ``new``)."""
    return Event(
        source_id="ice-awards",
        source_name="ICE contract awards",
        kind=EventKind.NEW,
        key=AWARD,
        title="PALANTIR TECHNOLOGIES INC.: INVESTIGATIVE CASE MANAGEMENT",
        url=f"https://www.usaspending.gov/award/{AWARD}",
        fields={"recipient": "PALANTIR TECHNOLOGIES INC.", "amount": amount},
        topics=("contracts",),
        detected_at=at,
    )


def award_modified(old: float, new: float, mod: str, *, at: datetime = T0) -> Event:
    """A modification that changes the obligated amount (the awards adapter's ``updated``)."""
    return Event(
        source_id="ice-awards",
        source_name="ICE contract awards",
        kind=EventKind.UPDATED,
        key=f"{AWARD}#{mod}",  # each modification is its own event, about the award
        item_key=AWARD,
        title="PALANTIR TECHNOLOGIES INC.: INVESTIGATIVE CASE MANAGEMENT",
        url=f"https://www.usaspending.gov/award/{AWARD}",
        summary=f"Modification {mod}: IMMIGRATIONOS - CASE MANAGEMENT ENHANCEMENTS",
        fields={"recipient": "PALANTIR TECHNOLOGIES INC.", "amount": new, "delta": new - old},
        changes={"amount": (old, new)},
        topics=("contracts",),
        detected_at=at,
    )


def delta(
    count: int,
    rise: int,
    n: int,
    *,
    by_company: Mapping[str, int] | None = None,
    at: datetime | None = None,
) -> Event:
    """The letter's signatures rose by ``rise`` to ``count`` (the petition's ``delta``),
    the ``n``-th time (detected ``n`` minutes after ``T0`` unless ``at`` says when)."""
    at = at or T0 + timedelta(minutes=n)
    return Event(
        source_id="iceout-letter",
        source_name="ICEout.tech letter",
        kind=EventKind.DELTA,
        key=f"delta:{n}",
        title=f"+{rise:,} signatures ({count:,} total)",
        url="https://iceout.tech/letter",
        summary=f"{count:,} signatures now.",
        fields={
            "count": count,
            "delta": rise,
            "by_company": dict(by_company or {"Google": rise}),
            "names": [f"Signer {n}"],
            "anonymous": 0,
            "unit": "signatures",
        },
        topics=("petition",),
        occurred_at=at,
        detected_at=at,
    )


def milestone(count: int, threshold: int, *, at: datetime = T0) -> Event:
    return Event(
        source_id="iceout-letter",
        source_name="ICEout.tech letter",
        kind=EventKind.MILESTONE,
        key=f"milestone:{threshold}",
        title=f"{threshold:,} signatures reached",
        url="https://iceout.tech/letter",
        fields={"count": count, "threshold": threshold},
        topics=("petition",),
        detected_at=at,
    )


def report(
    source: str,
    title: str,
    url: str,
    *,
    name: str | None = None,
    links: Sequence[str] = (),
    key: str | None = None,
    at: datetime = T0,
    **fields: Any,
) -> Event:
    """A new item of a news source (a feed entry, a Bluesky post with its links)."""
    extra: dict[str, Any] = {**fields, **({"links": list(links)} if links else {})}
    return Event(
        source_id=source,
        source_name=name,
        kind=EventKind.NEW,
        key=key or url,
        title=title,
        url=url,
        fields=extra,
        topics=("news",),
        detected_at=at,
    )
