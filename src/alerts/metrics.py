"""Prometheus metrics (prometheus-client), one registry per process.

Exposed at ``/metrics`` by ``alerts.web``. Names follow Prometheus conventions:
unit suffixes, ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

POLLS = Counter(
    "alerts_polls_total", "Source polls by outcome", ["source", "outcome"], registry=REGISTRY
)
POLL_SECONDS = Histogram(
    "alerts_poll_duration_seconds",
    "Time to fetch, detect and commit one poll",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
ITEMS = Counter("alerts_items_total", "Items seen by change", ["change"], registry=REGISTRY)
EVENTS = Counter("alerts_events_total", "Events raised by kind", ["kind"], registry=REGISTRY)
DELIVERIES = Counter(
    "alerts_deliveries_total",
    "Delivery attempts by platform and outcome",
    ["platform", "outcome"],
    registry=REGISTRY,
)
EDITS = Counter(
    "alerts_message_edits_total",
    "Messages kept alive in rooms: edits, thread replies, and new messages posted "
    "because the one to edit was gone",
    ["platform", "action"],
    registry=REGISTRY,
)
RATE_LIMIT_WAITS = Counter(
    "alerts_rate_limit_waits_total",
    "Times a platform rate limit postponed a destination",
    ["platform"],
    registry=REGISTRY,
)
RATE_LIMIT_SECONDS = Counter(
    "alerts_rate_limit_wait_seconds_total",
    "Seconds of rate-limit waits requested by platforms",
    ["platform"],
    registry=REGISTRY,
)
FAILURE_STREAK = Gauge(
    "alerts_source_failure_streak",
    "Consecutive failed polls of a source",
    ["source"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge("alerts_outbox_pending", "Pending deliveries", registry=REGISTRY)
OUTBOX_DEAD = Gauge("alerts_outbox_dead", "Dead deliveries", registry=REGISTRY)
OUTBOX_OLDEST_AGE = Gauge(
    "alerts_outbox_oldest_pending_age_seconds",
    "Age of the oldest pending delivery",
    registry=REGISTRY,
)
PARKED_DESTINATIONS = Gauge(
    "alerts_parked_destinations", "Destinations parked until an operator acts", registry=REGISTRY
)
FLOOD_HELD = Gauge(
    "alerts_source_flood_held",
    "1 while the flood breaker holds a source's alerts",
    ["source"],
    registry=REGISTRY,
)
FLOOD_HELD_EVENTS = Counter(
    "alerts_flood_held_events_total",
    "Events held by the flood breaker (summarised when the source settles)",
    ["source"],
    registry=REGISTRY,
)
