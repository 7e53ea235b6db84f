"""The router: which destinations want an event.

Static routes from config and subscriptions made by chat command are the same
``Subscription`` shape and are matched by the same rules (``matches``):

* ``topic`` / ``source`` / ``kinds`` select events;
* ``include`` (at least one) and ``exclude`` (none) are keywords matched by
  ``alerts.keywords``: whole words, case- and accent-insensitive, ``re:`` for an
  RE2 regular expression; they search the title, summary and every field value;
* ``min_amount`` drops events whose ``amount`` field is lower;
* ``min_change`` drops events whose ``delta`` (an award modification's change in
  dollars, a petition's rise in signatures) is smaller in absolute value. Events
  without a number there (a new award, a page rewrite) are not held back by it.

A source's own ``include`` / ``exclude`` (``source_admits``) use the same matching and
drop its item events before any room is considered.

``routed`` also says how each room shows the event (``View``): ``updates`` from the
first matching subscription that sets it, else the destination's, else the source
adapter's default; ``template`` the first matching subscription's (by name, among
the operator's templates), else the destination's; ``merge_window_s`` from the
destination (0 for a source whose items are no stories); and which rooms hold it
for a digest or quiet hours (``holds``: the subscription's ``schedule`` over its destination's, by
``alerts.schedule.release_at`` at the event's detection time).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from alerts.keywords import Text, any_found
from alerts.model import Event, EventKind, Subscription, UpdateStyle, View
from alerts.notices import NoticePolicy, notice_rooms
from alerts.records import Hold, RoutedEvent
from alerts.schedule import Schedule, hold_key, release_at
from alerts.templates import Template

_FILTERED_BY_SOURCE = frozenset({EventKind.NEW, EventKind.UPDATED})


def event_text(event: Event) -> Text:
    """What keyword filters search: title, summary and every field value."""
    return Text.of(event.title, event.summary, *event.fields.values())


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def matches(sub: Subscription, event: Event, text: Text | None = None) -> bool:
    """Does ``sub`` want ``event``? ``text`` is ``event_text(event)``, if already made."""
    if sub.topic is not None and sub.topic not in event.topics:
        return False
    if sub.source is not None and sub.source != event.source_id:
        return False
    if sub.kinds and event.kind not in sub.kinds:
        return False
    if sub.include or sub.exclude:
        text = text or event_text(event)
        if sub.include and not any_found(sub.include, text):
            return False
        if any_found(sub.exclude, text):
            return False
    return _big_enough(sub, event)


def _big_enough(sub: Subscription, event: Event) -> bool:
    if sub.min_amount is not None:
        amount = _number(event.fields.get("amount"))
        if amount is not None and amount < sub.min_amount:
            return False
    if sub.min_change is not None:
        change = _number(event.fields.get("delta"))
        if change is not None and abs(change) < sub.min_change:
            return False
    return True


def source_admits(include: Sequence[str], exclude: Sequence[str], event: Event) -> bool:
    """A source's own keyword filter, applied to its ``new`` and ``updated`` events."""
    if event.kind not in _FILTERED_BY_SOURCE or not (include or exclude):
        return True
    text = event_text(event)
    if include and not any_found(include, text):
        return False
    return not any_found(exclude, text)


class Router:
    """Holds the current subscriptions and rooms' views; ``route`` is pure and cheap."""

    def __init__(self, static: Iterable[Subscription] = (), dynamic: Iterable[Subscription] = ()):
        self._static = tuple(static)
        self._dynamic = tuple(dynamic)
        self.version = -1
        self._views: Mapping[str, View] = {}
        self._source_updates: Mapping[str, UpdateStyle] = {}
        self._not_stories: frozenset[str] = frozenset()
        self._schedules: Mapping[str, Schedule] = {}
        self._templates: Mapping[str, Template] = {}
        self.notices = NoticePolicy()

    def set_static(self, subs: Iterable[Subscription]) -> None:
        self._static = tuple(subs)

    def set_dynamic(self, subs: Iterable[Subscription], version: int) -> None:
        self._dynamic = tuple(subs)
        self.version = version

    def set_views(
        self,
        destinations: Mapping[str, View],
        sources: Mapping[str, UpdateStyle],
        not_stories: Collection[str] = (),
    ) -> None:
        """The views destinations configure, each source's default ``updates``, and
        the sources whose items are never merged into stories."""
        self._views = dict(destinations)
        self._source_updates = dict(sources)
        self._not_stories = frozenset(not_stories)

    def set_schedules(self, destinations: Mapping[str, Schedule]) -> None:
        """The digest and quiet-hours settings of config destinations."""
        self._schedules = dict(destinations)

    def set_templates(self, templates: Mapping[str, Template]) -> None:
        """The operator's templates by name (``alerts.templates``)."""
        self._templates = dict(templates)

    def set_notices(self, policy: NoticePolicy) -> None:
        """Where failure notices go (``alerts.notices``)."""
        self.notices = policy

    def notice(self, event: Event) -> RoutedEvent:
        """A notice to the operator room and the rooms that opted in for its source."""
        return RoutedEvent(event, notice_rooms(event, self.notices, self._static + self._dynamic))

    def route(self, event: Event) -> tuple[str, ...]:
        return tuple(self._matching(event))

    def routed(self, event: Event, *, now: datetime | None = None) -> RoutedEvent:
        """The destinations of ``event`` and how each of their rooms shows it;
        ``now`` (the poll's time, else the event's detection) decides what is held."""
        found = self._matching(event)
        default = self._source_updates.get(event.source_id)
        unmerged = event.source_id in self._not_stories
        views: dict[str, View] = {}
        holds: dict[str, Hold] = {}
        for dest, sub in found.items():
            schedule = (sub.schedule or Schedule()).over(self._schedules.get(dest))
            until = release_at(schedule, event.kind, now or event.detected_at)
            if until is not None:
                holds[dest] = Hold(until, hold_key(schedule))
            view = self._views.get(dest, View())
            views[dest] = replace(
                view,
                updates=sub.updates or view.updates or default,
                merge_window_s=0.0 if unmerged else view.merge_window_s,
                template=self._templates.get(sub.template or "") or view.template,
            )
        return RoutedEvent(event, tuple(found), views, holds)

    def _matching(self, event: Event) -> dict[str, Subscription]:
        """Destination → the subscription that routes ``event`` there: the first that
        matches, or a later one that also sets ``updates`` when the first does not."""
        found: dict[str, Subscription] = {}
        text: Text | None = None  # made once, and only if some filter needs it
        for sub in (*self._static, *self._dynamic):
            first = found.get(sub.destination_id)
            if first is not None and (first.updates is not None or sub.updates is None):
                continue
            if text is None and (sub.include or sub.exclude):
                text = event_text(event)
            if matches(sub, event, text):
                found[sub.destination_id] = sub
        return found
