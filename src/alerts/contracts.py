"""Every extension contract of alerts, in one place.

::

    Source          a source adapter bound to one configured source (``fetch``)
    DerivesEvents   optional: an adapter that adds its own events (``derive``)
    SourceFactory   what the source registry holds: an adapter class
    Sink            sends one delivery to one destination on one platform
    BaseSink        defaults for a sink's optional hooks
    SinkFactory     what the sink registry holds: a sink class
    EditingSink     optional: a sink whose messages can be edited and replied to
    ChatListener    a sink that also answers chat commands (runs on the leader)
    Store           durable state, the outbox, subscriptions and leases

Implementations never import each other; they meet here. Built-ins are registered
in ``alerts.sources.registry`` and ``alerts.sinks.registry``; plugins use the
``alerts.sources`` and ``alerts.sinks`` entry-point groups.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_settings import BaseSettings

from alerts.errors import ConfigError, key_path
from alerts.model import (
    JSON,
    Delivery,
    DeliveryState,
    Destination,
    Event,
    Item,
    Listing,
    MessageView,
    Observation,
    Posted,
    Subscription,
    Validators,
)
from alerts.records import (
    AccountLease,
    ChatSource,
    DeliveryRow,
    DestinationRow,
    ItemState,
    NotModified,
    OutboxStats,
    PollCommit,
    Post,
    SourceRow,
)

if TYPE_CHECKING:
    from alerts.chat.commands import CommandService
    from alerts.settings import Settings
    from alerts.sources.http import HttpClient


# --- sources ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the adapter gets back from the previous poll."""

    validators: Validators = Validators()
    cursor: Mapping[str, JSON] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """A source adapter instance, bound to one configured source.

    Its class (``SourceFactory``) declares: ``kind``, the name operators write in
    ``kind = "…"``; ``Options``, a pydantic model of its options
    (``extra="forbid"``); ``fingerprint_fields``, the item fields that count as a
    change by default; ``item_fields``, every field name its items can carry (what
    an operator's ``fingerprint = [...]`` may name: ``title``, ``url``, ``summary``,
    ``published``, ``author`` and keys of ``Item.fields``); ``default_url``, the URL
    used when a source sets none (``None``: the source must set ``url``); and a
    docstring, its user documentation. Optionally ``updates``: how rooms show its
    ``updated`` events unless they say otherwise (``"edit"`` when absent; the award,
    SAM.gov and web page adapters say ``"reply"``: their changes are news); and
    ``stories = False`` when its items are no news stories that other sources could
    report too (a petition's signatories and counts: their link is the petition's
    page), so rooms never merge them with others.
    """

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    fingerprint_fields: ClassVar[tuple[str, ...]]
    item_fields: ClassVar[frozenset[str]]
    default_url: ClassVar[str | None]

    async def fetch(self, state: SourceState) -> Observation:
        """Fetch once and report what is there now."""
        ...


@runtime_checkable
class ListsEntries(Protocol):
    """An adapter that can report a modified fetch as entries it has not read yet
    (``Listing``), so that only new or changed ones are read. ``fetch`` must still
    return every item read (previews, ``alerts check --poll``, plugins)."""

    async def fetch_entries(self, state: SourceState) -> Observation | Listing:
        """Fetch once: an unchanged ``Observation`` (``not_modified``) or a ``Listing``."""
        ...


@dataclass(frozen=True, slots=True)
class Derived:
    """What an adapter's ``derive`` hook adds to the generic item diff.

    ``events``: extra events (milestone, delta…); the detector fills in topics.
    ``state``: the adapter's own detector state, stored with the poll and handed
    back next time. ``keep_item_events``: when not None, only the generic
    ``new``/``updated`` events of these item keys are kept (the rest are folded into
    the adapter's own events, e.g. a ``delta`` of signatories).
    """

    events: Sequence[Event] = ()
    state: Mapping[str, JSON] = field(default_factory=dict)
    keep_item_events: frozenset[str] | None = None


@runtime_checkable
class DerivesEvents(Protocol):
    """Optional: an adapter that turns observations into its own events.

    Called by the detector after the generic item diff of every successful poll
    (including the baseline, where it must not alert: ``baseline`` is True).
    """

    def derive(
        self,
        *,
        observation: Observation,
        new_items: Sequence[Item],
        updated_items: Sequence[tuple[Item, Mapping[str, JSON]]],
        state: Mapping[str, JSON],
        now: datetime,
        baseline: bool,
    ) -> Derived:
        """``updated_items`` pairs each changed item with its previous snapshot."""
        ...


class SourceFactory(Protocol):
    """What the source registry holds: an adapter class (see ``Source``)."""

    @property
    def kind(self) -> str: ...
    @property
    def Options(self) -> type[BaseModel]: ...
    @property
    def fingerprint_fields(self) -> tuple[str, ...]: ...
    @property
    def item_fields(self) -> frozenset[str]: ...
    @property
    def default_url(self) -> str | None: ...

    __doc__: str | None

    def __call__(self, *, source_id: str, url: str, options: Any, http: HttpClient) -> Source: ...


# --- sinks --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink may use: deployment settings (secrets), the store (for its own
    persisted state via ``kv_get``/``kv_set``) and a data directory."""

    settings: Settings
    store: Store
    data_dir: str


@runtime_checkable
class Sink(Protocol):
    """Sends one delivery to one destination on one platform.

    Its class (``SinkFactory``) declares: ``kind``, the name operators write in
    ``[destinations.X] sink = "…"``; ``Options``, a pydantic model of a
    destination's options (``extra="forbid"``); ``Settings``, its
    ``BaseSettings`` class of environment variables (or ``None``), read and
    checked before start so a bad variable is reported by name; and a docstring,
    its user documentation. ``BaseSink`` gives the optional hooks a default.

    ``send`` raises only ``SendError`` subclasses: ``RateLimitedError`` (retry that
    destination at T, not counted as an attempt), ``RetryableSendError``,
    ``RejectedError`` (dead), ``DestinationUnavailable`` (park the destination).
    """

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    Settings: ClassVar[type[BaseSettings] | None]

    async def start(self) -> None:
        """Log in / open files. Called once before the first send."""
        ...

    async def close(self) -> None:
        """Release everything ``start`` acquired."""
        ...

    async def send(self, delivery: Delivery) -> str | None:
        """Send ``delivery.event`` to ``delivery.destination`` using
        ``delivery.idempotency_key``, so that sending the same delivery twice shows
        once; return the remote message id if the platform has one."""
        ...

    def validate_destination(self, destination: Destination) -> None:
        """Raise ``ConfigError`` if this destination cannot work with this sink
        instance (called at start-up and on reload)."""
        ...

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        """Raise ``ConfigError`` (``destinations.NAME.key: reason``) if the
        destination cannot work: every check that needs no running service,
        environment settings included. Run by ``alerts check`` and before
        ``alerts run`` starts, so a destination it passes never fails at start."""
        ...

    @classmethod
    def configured(cls) -> bool:
        """True when the environment holds this sink's credentials: the runtime then
        starts it even before any destination uses it (rooms subscribe by chat)."""
        ...


class NoOptions(BaseModel):
    """The options model of a sink or adapter that takes none."""

    model_config = ConfigDict(extra="forbid")


class BaseSink:
    """Defaults for a sink's optional hooks: no options, no settings, nothing to
    start or close, never ``configured``; ``check_destination`` validates the
    options and ``validate_destination`` runs it. Subclasses set ``kind``, write a
    docstring and implement ``send``."""

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    Settings: ClassVar[type[BaseSettings] | None] = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @classmethod
    def check_destination(cls, destination: Destination) -> None:
        destination_options(cls.Options, destination)

    def validate_destination(self, destination: Destination) -> None:
        self.check_destination(destination)

    @classmethod
    def configured(cls) -> bool:
        return False


def destination_options(model: type[BaseModel], destination: Destination) -> BaseModel:
    """``destination.options`` validated by ``model``; ``ConfigError`` naming each
    bad key (``destinations.NAME.key: reason``) otherwise."""
    try:
        return model.model_validate(dict(destination.options))
    except ValidationError as exc:
        raise ConfigError.from_validation(
            exc, prefix=f"destinations.{key_path([destination.id])}"
        ) from None


@runtime_checkable
class EditingSink(Protocol):
    """Optional: a sink whose messages can be kept alive (``alerts.edits``).

    ``post`` shows a ``MessageView`` as a new message and says where it is; ``edit``
    replaces what an earlier message shows; ``reply`` posts a short message in the
    thread of (or in reply to) an earlier one. Each is idempotent like ``send``:
    ``post`` uses ``delivery.idempotency_key`` (``send`` is ``post`` of the bare
    event), ``reply`` a key derived from it, and an edit to the same content shows
    once. ``edit`` and ``reply`` raise ``MessageGone`` when the message is deleted or
    can no longer be edited (the dispatcher then posts anew), and the other
    ``SendError``s as ``send`` does. ``edit_interval_s`` is the shortest time between
    two edits of one counter message the platform's limits allow.
    """

    edit_interval_s: ClassVar[float]

    async def post(self, delivery: Delivery, view: MessageView) -> Posted:
        """Show ``view`` as a new message."""
        ...

    async def edit(self, delivery: Delivery, posted: Posted, view: MessageView) -> None:
        """Make the message at ``posted`` show ``view``."""
        ...

    async def reply(self, delivery: Delivery, posted: Posted, view: MessageView) -> str | None:
        """Post ``view`` under the message at ``posted``; return the reply's id."""
        ...


@runtime_checkable
class ChatListener(Protocol):
    """A sink that also listens for chat commands (run only on the leader)."""

    async def listen(self, commands: CommandService) -> None:
        """Run until cancelled, answering commands with ``commands``."""
        ...


class SinkFactory(Protocol):
    """What the sink registry holds: a sink class (see ``Sink``)."""

    @property
    def kind(self) -> str: ...
    @property
    def Options(self) -> type[BaseModel]: ...
    @property
    def Settings(self) -> type[BaseSettings] | None: ...

    __doc__: str | None

    def __call__(self, *, context: SinkContext) -> Sink: ...

    def check_destination(self, destination: Destination) -> None: ...

    def configured(self) -> bool: ...


# --- the store ----------------------------------------------------------------------


class Store(Protocol):
    """Durable state of the service. All methods are safe to call concurrently from
    several processes sharing the database."""

    install_id: str
    """Random id of this database, fixed at creation; part of idempotency keys."""

    async def close(self) -> None: ...

    # --- sources -----------------------------------------------------------------

    async def sync_sources(self, due: Mapping[str, datetime]) -> None:
        """Make the given sources the active set: new ones are registered, first due
        at the given times; known ones keep their state; sources not given are
        deactivated (kept with their state, never claimed) in case they come back."""
        ...

    async def claim_due_sources(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        only: Collection[str] | None = None,
    ) -> list[SourceRow]:
        """Lease up to ``limit`` active sources with ``next_due <= now`` whose lease is
        free or expired, earliest due first; restrict to ``only`` when given."""
        ...

    async def claim_source(
        self, source_id: str, now: datetime, *, owner: str, lease_s: float
    ) -> SourceRow | None:
        """Lease one source for a one-off poll (``alerts poll``), whatever its due time
        and whether it is active. The active set is left alone: a source the store
        does not know yet is registered inactive (the service activates it once its
        config has it). None while another owner holds an unexpired lease."""
        ...

    async def release_source(self, source_id: str, *, owner: str) -> None:
        """Give a claimed source back without polling it (shutdown)."""
        ...

    async def get_source(self, source_id: str) -> SourceRow | None: ...

    async def list_sources(self) -> list[SourceRow]: ...

    async def set_next_due(self, source_id: str, next_due: datetime) -> None: ...

    async def load_items(
        self, source_id: str, keys: Collection[str] | None = None
    ) -> dict[str, ItemState]:
        """Item states of a source (all of them when ``keys`` is None)."""
        ...

    async def load_digests(self, source_id: str, keys: Collection[str]) -> dict[str, str | None]:
        """``ItemState.digest`` of the stored items among ``keys`` (one query, no snapshots)."""
        ...

    async def commit_poll(self, commit: PollCommit, *, owner: str) -> list[Event]:
        """Write one poll atomically (see ``PollCommit``) and release the lease.

        Every destination id must exist (config destinations are upserted at
        start-up, chat ones on subscribe). Returns the events with their ids. Raises
        ``LeaseLostError`` (and writes nothing) if ``owner`` no longer holds the lease.
        """
        ...

    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        """Record many unchanged polls in one transaction: validators, success time,
        ``failures`` reset, next due, lease released. A poll whose owner no longer
        holds the lease is skipped. Returns how many were recorded.

        Nine polls in ten are unchanged; batching them is what keeps an idle source
        almost as cheap as the HTTP request itself."""
        ...

    # --- destinations and subscriptions ------------------------------------------

    async def upsert_destination(self, destination: Destination) -> None: ...

    async def get_destination(self, destination_id: str) -> DestinationRow | None: ...

    async def list_destinations(self) -> list[DestinationRow]: ...

    async def park_destination(self, destination_id: str, *, reason: str, now: datetime) -> None:
        """Stop sending to a destination until an operator unparks it."""
        ...

    async def unpark_destination(self, destination_id: str) -> bool: ...

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        """Forget a chat destination (bot kicked, guild left): drop its
        subscriptions and mark its pending and held deliveries dead with ``reason``.
        Returns the number of subscriptions dropped."""
        ...

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        """Store a subscription, replacing one for the same destination and the same
        topic/source. Returns it with its id."""
        ...

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        """Remove the destination's subscriptions to ``topic`` / ``source``; with
        neither, remove all of them. Returns how many were removed."""
        ...

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]: ...

    async def subscriptions_version(self) -> int:
        """A number that changes whenever subscriptions change (router cache key)."""
        ...

    # --- sources added from chat (alerts.store.chat_sources) -------------------------

    async def add_chat_source(
        self,
        source: ChatSource,
        *,
        destination: Destination,
        subscription: Subscription,
        quota: int,
    ) -> bool:
        """Store a chat source, its room and the room's subscription to it in one
        transaction; False (nothing written) over ``quota`` or for a URL the room has."""
        ...

    async def remove_chat_source(self, source_id: str, *, reason: str) -> ChatSource | None:
        """Remove a chat source and its room's subscription; the room's pending
        deliveries of it become dead with ``reason``. The removed row, or None."""
        ...

    async def list_chat_sources(self, destination_id: str | None = None) -> list[ChatSource]: ...

    # --- the outbox --------------------------------------------------------------

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        sinks: Collection[str] | None = None,
    ) -> list[Delivery]:
        """Lease pending deliveries in id order, keeping per-destination order: a
        delivery is claimable only when its destination is neither parked nor blocked
        (``blocked_until > now``) and no earlier pending delivery of the same
        destination is leased by someone else. ``sinks``: only deliveries to
        destinations of these sink kinds (the ones this process can send with). A
        claim sets ``tried_at`` the first time."""
        ...

    async def mark_sent(
        self, delivery_id: int, *, remote_id: str | None, now: datetime
    ) -> None: ...

    async def release_held(
        self,
        now: datetime,
        *,
        digest: Callable[[str, Sequence[tuple[Event, str]]], Event],
        limit: int = 1000,
    ) -> list[int]:
        """Turn each room's held deliveries due by ``now`` into one digest: the event
        ``digest(room, [(event, hold key), ...])`` makes, its pending delivery, and the
        held rows marked ``digested``, in one transaction per room (so a digest is
        made once). Returns the new deliveries' ids."""
        ...

    async def mark_retry(
        self, delivery_id: int, *, error: str, retry_at: datetime, count_attempt: bool
    ) -> None:
        """Release the lease, record the error, add an attempt if ``count_attempt``,
        and block the delivery's destination until ``retry_at``."""
        ...

    # --- messages kept alive in rooms (alerts.edits) --------------------------------

    async def find_post(self, destination_id: str, source_id: str, item_key: str) -> Post | None:
        """The message showing an item in a destination's room: the item's own, or the
        story it was merged into. None when none was recorded."""
        ...

    async def live_counter(self, destination_id: str, source_id: str) -> Post | None:
        """The source's open counter message in the room, if any."""
        ...

    async def recent_posts(
        self, destination_id: str, *, since: datetime, limit: int = 500
    ) -> list[Post]:
        """Story messages (not counters) of the room detected since ``since``, newest
        first."""
        ...

    async def record_post(
        self,
        delivery_id: int,
        post: Post,
        *,
        now: datetime,
        items: Collection[tuple[str, str]] = (),
        close_counter: bool = False,
    ) -> int:
        """In one transaction: mark the delivery sent with ``post.remote_id``, store
        ``post`` (a new one when its ``id`` is None, made once per delivery: a retried
        write finds it again), map each ``(source_id, item_key)`` of ``items`` to it in
        its room, and with ``close_counter`` close the source's open counter there.
        Returns the post's id."""
        ...

    async def mark_dead(self, delivery_id: int, *, error: str, now: datetime) -> None: ...

    async def release_deliveries(self, delivery_ids: Collection[int]) -> None:
        """Give leased deliveries back untouched (shutdown, destination blocked)."""
        ...

    async def list_deliveries(
        self, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[DeliveryRow]: ...

    async def requeue_dead(self, delivery_ids: Collection[int] | None = None) -> int:
        """Make dead deliveries pending again (all when ``None``), attempts reset."""
        ...

    async def outbox_stats(self) -> OutboxStats: ...

    # --- small persisted state for sinks (device ids, sync tokens) ----------------

    async def kv_get(self, namespace: str, key: str) -> str | None: ...

    async def kv_set(self, namespace: str, key: str, value: str) -> None: ...

    # --- claims of workers that died ------------------------------------------------

    async def lease_owners(self) -> set[str]:
        """Owners holding any unexpired-or-not claim (sources, deliveries, leadership)."""
        ...

    async def release_owner(self, owner: str) -> int:
        """Drop every claim of ``owner`` (a worker known to be dead); returns how many."""
        ...

    # --- leadership (chat listeners run on exactly one replica) -------------------

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        """Become or stay the leader for ``name``; False while another owner leads."""
        ...

    async def resign(self, name: str, *, owner: str) -> None: ...

    # --- chat accounts (one process at a time sends and syncs as a bot account) ---

    async def try_account(
        self, name: str, *, owner: str, lease_s: float, now: datetime
    ) -> AccountLease | None:
        """Take or renew the lease of account ``name``: the row as now held (with the
        device and keys the last owner saved), or None while another owner holds it."""
        ...

    async def release_account(self, name: str, *, owner: str) -> None: ...

    async def save_account(
        self,
        name: str,
        *,
        owner: str,
        now: datetime,
        device_id: str | None = None,
        keys: str | None = None,
    ) -> bool:
        """Save the device id and/or key store for the next owner; False (nothing
        written) when ``owner`` no longer holds an unexpired lease."""
        ...
