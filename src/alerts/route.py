"""The router: which destinations want an event.

Static routes from config and subscriptions made by chat command are the same
``Subscription`` shape and are matched by the same rules (``matches``).
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.model import Event, Subscription


def matches(sub: Subscription, event: Event) -> bool:
    if sub.topic is not None and sub.topic not in event.topics:
        return False
    if sub.source is not None and sub.source != event.source_id:
        return False
    if sub.kinds and event.kind not in sub.kinds:
        return False
    if sub.include or sub.exclude:
        text = event.text_for_matching()
        if sub.include and not any(k.casefold() in text for k in sub.include):
            return False
        if any(k.casefold() in text for k in sub.exclude):
            return False
    if sub.min_amount is not None:
        amount = event.fields.get("amount")
        if isinstance(amount, int | float) and amount < sub.min_amount:
            return False
    return True


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
        for sub in (*self._static, *self._dynamic):
            if sub.destination_id not in found and matches(sub, event):
                found[sub.destination_id] = None
        return tuple(found)
