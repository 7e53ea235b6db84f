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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alerts.keywords import Text, any_found
from alerts.model import Event, EventKind, Subscription

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
    """Holds the current subscriptions; ``route`` is pure and cheap."""

    def __init__(self, static: Iterable[Subscription] = (), dynamic: Iterable[Subscription] = ()):
        self._static = tuple(static)
        self._dynamic = tuple(dynamic)
        self.version = -1

    def set_static(self, subs: Iterable[Subscription]) -> None:
        self._static = tuple(subs)

    def set_dynamic(self, subs: Iterable[Subscription], version: int) -> None:
        self._dynamic = tuple(subs)
        self.version = version

    def route(self, event: Event) -> tuple[str, ...]:
        found: dict[str, None] = {}
        text: Text | None = None  # made once, and only if some filter needs it
        for sub in (*self._static, *self._dynamic):
            if sub.destination_id in found:
                continue
            if text is None and (sub.include or sub.exclude):
                text = event_text(event)
            if matches(sub, event, text):
                found[sub.destination_id] = None
        return tuple(found)
