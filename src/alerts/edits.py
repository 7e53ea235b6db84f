"""Messages that live: updates edited in place, one live count, one message per story.

Every delivery goes through ``Messages``: ``plan`` reads what the room already shows
(the store's posts) and decides what the delivery does there, ``apply`` does it on
the platform, and ``record`` writes the outcome with the delivery's ``mark_sent``,
in one transaction. A sink that cannot edit (``EditingSink`` is optional) gets
every delivery as a new message, as before.

==========================  =========================================================
event (room's ``updates``)  what the room sees
==========================  =========================================================
new                         a new message; or, when it reports a story the room was
                            shown within its merge window, that message edited to
                            add "also reported by" with the link
updated (edit, reply)       the item's message edited in place, and with ``reply`` a
                            short reply in its thread saying what changed; a new
                            message when the room never had one for the item
delta (edit, reply)         the source's live count message edited; a new one when
                            there is none, it is older than ``COUNTER_RENEW_S`` or a
                            milestone came after it
milestone, summary          a new message (a milestone ends the live count message)
anything, ``new``           a new message
==========================  =========================================================

Why this keeps the outbox's guarantees:

* What a delivery does is decided from the room's posts, and only deliveries to the
  same room change them. Per-destination order (``Store.claim_deliveries``) means
  that whenever a delivery is tried, every earlier delivery of its room is recorded
  and no later one is: a retried delivery decides the same thing again. Windows are
  measured between events' detection times, never with the clock at send time.
* A post is written in the transaction that marks its delivery sent
  (``Store.record_post``), with absolute values: a delivery is pending and has
  changed nothing in the room's view, or sent with all of its change.
* Every platform action is idempotent: ``post`` uses the delivery's idempotency key
  (Discord nonce, Matrix transaction id), ``reply`` a key derived from it, an edit a
  transaction id of its own (Matrix) or a PATCH to the same content (Discord). A
  kill -9 between two of them, or before ``record``, makes the retried delivery
  repeat the same actions, which the platform shows once.
* A message that is gone (deleted, too old to edit, the room re-created under a new
  id) makes the delivery post anew and point the post at the new message: the
  update is never lost.
* Counters are throttled to the platform's edit limits: deltas claimed together are
  folded into the last one's edit (the others are recorded, not shown), and an edit
  waits ``EditingSink.edit_interval_s`` after the previous one (a rate-limit wait,
  not a failure).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from alerts import counters, metrics, stories
from alerts.contracts import EditingSink, Sink, Store
from alerts.errors import MessageGone, RateLimitedError
from alerts.model import (
    AlsoReported,
    Delivery,
    Event,
    EventKind,
    MessageView,
    Posted,
    UpdateStyle,
    utcnow,
)
from alerts.records import Post, PostKind
from alerts.render.facts import cut

log = logging.getLogger(__name__)

COUNTER_RENEW_S = 24 * 3600.0
"""A live count message older than this is left as it is and a new one started, so
the count stays near the bottom of the room."""
NOTE_SUMMARY_MAX = 600
"""How much of an update's summary (a statement's diff) its thread reply quotes."""


class Action(StrEnum):
    SEND = "send"  # a sink that cannot edit: a new message, nothing kept
    POST = "post"  # a new message, kept so that later events edit it
    EDIT = "edit"  # the message of a post edited (and maybe replied to)
    FOLD = "fold"  # a counter delta folded into a later one's edit: recorded only


@dataclass(frozen=True, slots=True)
class Plan:
    """What one delivery does in its room. ``post`` is the post as it will be
    recorded (for ``POST``, without its platform ids yet) and ``view`` what its
    message shows then; ``items`` the items it shows that were not yet mapped."""

    delivery: Delivery
    action: Action
    post: Post | None = None
    view: MessageView | None = None
    items: tuple[tuple[str, str], ...] = ()
    reply: MessageView | None = None
    close_counter: bool = False
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What was done: the post to record (None for ``SEND``) and the message id."""

    plan: Plan
    post: Post | None
    remote_id: str | None


class Messages:
    """Plans, applies and records deliveries against the rooms' posts (see the module
    docstring)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.clock = clock

    # --- planning: reads only ------------------------------------------------------

    async def plan(self, sink: Sink, d: Delivery, later: Sequence[Delivery] = ()) -> Plan:
        """What ``d`` does in its room; ``later`` are the deliveries of the same room
        claimed after it (a counter delta followed by another is only folded)."""
        if not isinstance(sink, EditingSink):
            return Plan(d, Action.SEND)
        event, style = d.event, d.view.updates or UpdateStyle.EDIT
        room = d.destination.id
        if style is not UpdateStyle.NEW and event.kind is EventKind.UPDATED:
            found = await self.store.find_post(room, event.source_id, event.item)
            return self._update(d, found, style)
        if style is not UpdateStyle.NEW and event.kind is EventKind.DELTA:
            live = await self.store.live_counter(room, event.source_id)
            return self._count(sink, d, live, later)
        if event.kind is EventKind.NEW and d.view.merge_window_s > 0:
            story = await self._story(d)
            if story is not None:
                return self._merge(d, story)
        return _post(d, close_counter=event.kind is EventKind.MILESTONE)

    def _update(self, d: Delivery, post: Post | None, style: UpdateStyle) -> Plan:
        event = d.event
        if post is None or post.kind is not PostKind.ITEM:
            return _post(d)
        state = dict(post.state)
        reply = None
        if (post.source_id, post.item_key) == (event.source_id, event.item):
            state["event"] = event.to_json()
            reply = note(event) if style is UpdateStyle.REPLY else None
        else:  # a report that was merged into another source's story
            state["also"] = [
                _also(event) if _is_report(a, event) else a for a in state.get("also", [])
            ]
        if state == post.state:
            return Plan(d, Action.FOLD, post, view_of(post))
        edited = dataclasses.replace(post, state=state, edits=post.edits + 1)
        return Plan(d, Action.EDIT, edited, view_of(edited), reply=reply)

    def _count(
        self, sink: EditingSink, d: Delivery, live: Post | None, later: Sequence[Delivery]
    ) -> Plan:
        event = d.event
        renew_after = timedelta(seconds=COUNTER_RENEW_S)
        if live is None or event.detected_at - live.detected_at > renew_after:
            tally = counters.start(event)
            post = _new_post(d, PostKind.COUNTER, tally, item_key="")
            return Plan(d, Action.POST, post, MessageView(counters.view(tally)), close_counter=True)
        tally = counters.add(live.state, event)
        edited = dataclasses.replace(live, state=tally, edits=live.edits + 1)
        view = MessageView(counters.view(tally), edits=edited.edits)
        if any(_same_counter(other, d) for other in later):
            return Plan(d, Action.FOLD, edited, view)
        last = live.edited_at or live.detected_at
        not_before = last + timedelta(seconds=sink.edit_interval_s)
        return Plan(d, Action.EDIT, edited, view, not_before=not_before)

    async def _story(self, d: Delivery) -> Post | None:
        """The room's message of the story ``d.event`` reports, if it has one."""
        event = d.event
        since = event.detected_at - timedelta(seconds=d.view.merge_window_s)
        for post in await self.store.recent_posts(d.destination.id, since=since):
            if post.target != d.destination.target or event.source_id in _sources(post):
                continue
            if stories.same_story(event, post.state.get("story") or {}):
                return post
        return None

    def _merge(self, d: Delivery, story: Post) -> Plan:
        event = d.event
        state = dict(story.state)
        state["also"] = [*state.get("also", []), _also(event)]
        state["story"] = stories.merged(state.get("story") or {}, event)
        edited = dataclasses.replace(story, state=state, edits=story.edits + 1)
        return Plan(d, Action.EDIT, edited, view_of(edited), items=((event.source_id, event.item),))

    # --- doing it on the platform --------------------------------------------------

    async def apply(self, sink: Sink, plan: Plan) -> Outcome:
        """Do ``plan`` on the platform; raises the sink's ``SendError``s (and
        ``RateLimitedError`` while a counter edit must wait for the platform)."""
        d = plan.delivery
        if plan.action is Action.SEND:
            return Outcome(plan, None, await sink.send(d))
        assert isinstance(sink, EditingSink) and plan.post is not None and plan.view is not None
        if plan.action is Action.POST:
            posted = await sink.post(d, shown(plan.view, d))
            return Outcome(plan, _at(plan.post, posted, d), posted.remote_id)
        if plan.action is Action.FOLD:
            return Outcome(plan, plan.post, plan.post.remote_id)
        if plan.post.target != d.destination.target:
            return await self._anew(sink, plan, "the room was re-created")
        self._wait_for_platform(plan)
        posted = Posted(plan.post.remote_id, plan.post.room)
        try:
            await sink.edit(d, posted, shown(plan.view, d))
        except MessageGone as exc:
            return await self._anew(sink, plan, str(exc))
        metrics.EDITS.labels(d.destination.sink, "edit").inc()
        if plan.reply is not None:
            await self._reply(sink, plan, posted)
        return Outcome(plan, plan.post, posted.remote_id)

    def _wait_for_platform(self, plan: Plan) -> None:
        wait_s = 0.0
        if plan.not_before is not None:
            wait_s = (plan.not_before - self.clock()).total_seconds()
        if wait_s > 0:
            raise RateLimitedError(
                f"counter message {plan.post.remote_id if plan.post else ''}: next edit "
                f"in {wait_s:.1f} s (the platform's edit limit)",
                retry_after_s=wait_s,
            )

    async def _reply(self, sink: EditingSink, plan: Plan, posted: Posted) -> None:
        assert plan.reply is not None
        try:
            await sink.reply(plan.delivery, posted, plan.reply)
        except MessageGone as exc:  # the edit went in: the update is shown anyway
            log.warning("delivery %s: no reply under %s: %s", plan.delivery.id, posted, exc)
            return
        metrics.EDITS.labels(plan.delivery.destination.sink, "reply").inc()

    async def _anew(self, sink: EditingSink, plan: Plan, why: str) -> Outcome:
        """The message to edit is gone: show the same view as a new message."""
        d = plan.delivery
        assert plan.post is not None and plan.view is not None
        log.info(
            "delivery %s to %s: message %s cannot be edited (%s); posting a new one",
            d.id,
            d.destination.id,
            plan.post.remote_id,
            why,
        )
        posted = await sink.post(d, shown(plan.view, d))
        metrics.EDITS.labels(d.destination.sink, "anew").inc()
        return Outcome(plan, _at(plan.post, posted, d), posted.remote_id)

    # --- recording -----------------------------------------------------------------

    async def record(self, outcome: Outcome, *, now: datetime) -> None:
        """Mark the delivery sent and write its post, in one transaction."""
        plan, post = outcome.plan, outcome.post
        d = plan.delivery
        if post is None:
            await self.store.mark_sent(d.id, remote_id=outcome.remote_id, now=now)
            return
        if plan.action is Action.EDIT:
            post = dataclasses.replace(post, edited_at=now)
        await self.store.record_post(
            d.id, post, now=now, items=plan.items, close_counter=plan.close_counter
        )


# --- what a post shows -----------------------------------------------------------


def shown(view: MessageView, d: Delivery) -> MessageView:
    """``view`` with the template of the room's alerts (``alerts.templates``): a post,
    its edits and merged stories all keep the room's wording; a reply's note does not."""
    template = d.view.template
    return view if template is None else dataclasses.replace(view, template=template)


def view_of(post: Post) -> MessageView:
    """What the message of ``post`` shows."""
    if post.kind is PostKind.COUNTER:
        return MessageView(counters.view(post.state), edits=post.edits)
    also = tuple(AlsoReported(str(a["source"]), a.get("url")) for a in post.state.get("also", []))
    return MessageView(Event.from_json(post.state["event"]), also=also, edits=post.edits)


def note(event: Event) -> MessageView:
    """The short reply under an updated item's message: only what changed."""
    shown = set(event.changes) | {"delta"}
    fields = {name: value for name, value in event.fields.items() if name in shown}
    summary = cut(event.summary, NOTE_SUMMARY_MAX) if event.summary else ""
    return MessageView(dataclasses.replace(event, fields=fields, summary=summary))


def _post(d: Delivery, *, close_counter: bool = False) -> Plan:
    """A new message. Only a ``new`` item is a story later reports may merge into,
    and only where the room merges stories (``merge_window_s`` > 0; 0 also for
    sources whose items are no stories)."""
    event = d.event
    is_story = event.kind is EventKind.NEW and d.view.merge_window_s > 0
    story = stories.first(event) if is_story else {}
    state = {"event": event.to_json(), "story": story, "also": []}
    post = _new_post(d, PostKind.ITEM, state, item_key=event.item)
    return Plan(
        d,
        Action.POST,
        post,
        MessageView(event),
        items=((event.source_id, event.item),),
        close_counter=close_counter,
    )


def _new_post(d: Delivery, kind: PostKind, state: dict[str, Any], *, item_key: str) -> Post:
    return Post(
        destination_id=d.destination.id,
        kind=kind,
        source_id=d.event.source_id,
        item_key=item_key,
        remote_id="",
        room="",
        target=d.destination.target,
        delivery_id=d.id,
        detected_at=d.event.detected_at,
        state=state,
    )


def _at(post: Post, posted: Posted, d: Delivery) -> Post:
    """``post`` shown by the message at ``posted``."""
    return dataclasses.replace(
        post, remote_id=posted.remote_id, room=posted.room, target=d.destination.target
    )


def _also(event: Event) -> dict[str, Any]:
    return {
        "source": event.source_label,
        "url": event.url,
        "source_id": event.source_id,
        "key": event.item,
    }


def _is_report(entry: dict[str, Any], event: Event) -> bool:
    return bool(entry.get("source_id") == event.source_id and entry.get("key") == event.item)


def _sources(post: Post) -> set[str]:
    return {post.source_id, *(str(a.get("source_id")) for a in post.state.get("also", []))}


def _same_counter(other: Delivery, d: Delivery) -> bool:
    return (
        other.event.kind is EventKind.DELTA
        and other.event.source_id == d.event.source_id
        and (other.view.updates or UpdateStyle.EDIT) is not UpdateStyle.NEW
    )
