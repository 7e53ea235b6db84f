"""The Store contract for message templates (issue 16), on every backend: a
subscription keeps its template's name, a delivery the template it was routed with
(so a reload that changes the templates does not change a message already routed,
nor its later edits)."""

from __future__ import annotations

from alerts.model import Subscription, View
from alerts.store import PollCommit, RoutedEvent, Store
from alerts.templates import Template

from .test_contract import at, event, seed

SHORT = Template("short", title="{source}: {title}", body="{amount}\n{link}", show_facts=False)


async def test_a_delivery_keeps_the_template_it_was_routed_with(store: Store) -> None:
    await seed(store)
    [row] = await store.claim_due_sources(at(2000), owner="w", lease_s=60, limit=1, only=["s1"])
    routed = RoutedEvent(event("a"), ("room-a", "room-b"), {"room-a": View(template=SHORT)})
    await store.commit_poll(
        PollCommit(source_id=row.source_id, now=at(2000), next_due=at(9000), events=[routed]),
        owner="w",
    )
    claimed = await store.claim_deliveries(at(2001), owner="d", lease_s=60, limit=10)
    templates = {d.destination.id: d.view.template for d in claimed}
    assert templates == {"room-a": SHORT, "room-b": None}


async def test_a_subscription_keeps_its_template_name_and_a_new_one_replaces_it(
    store: Store,
) -> None:
    await seed(store)
    await store.add_subscription(Subscription("room-a", topic="t1", template="short"))
    [sub] = await store.list_subscriptions("room-a")
    assert sub.template == "short"
    await store.add_subscription(Subscription("room-a", topic="t1"))
    [sub] = await store.list_subscriptions("room-a")
    assert sub.template is None
