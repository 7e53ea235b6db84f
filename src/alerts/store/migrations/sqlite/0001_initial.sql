-- alerts schema v1 (SQLite). Times are UNIX seconds (REAL), JSON is TEXT.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE sources (
    id TEXT PRIMARY KEY,
    active INTEGER NOT NULL DEFAULT 1,
    next_due REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    etag TEXT,
    last_modified TEXT,
    cursor TEXT NOT NULL DEFAULT '{}',
    detector TEXT NOT NULL DEFAULT '{}',
    baselined INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_at REAL,
    last_success_at REAL,
    last_new_at REAL
);
CREATE INDEX sources_due ON sources (active, next_due);

CREATE TABLE items (
    source_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_changed REAL NOT NULL,
    PRIMARY KEY (source_id, key)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE destinations (
    id TEXT PRIMARY KEY,
    sink TEXT NOT NULL,
    target TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    parked_reason TEXT,
    parked_at REAL,
    blocked_until REAL
);

CREATE TABLE subscriptions (
    id INTEGER PRIMARY KEY,
    destination_id TEXT NOT NULL REFERENCES destinations (id),
    topic TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    kinds TEXT NOT NULL DEFAULT '[]',
    include TEXT NOT NULL DEFAULT '[]',
    exclude TEXT NOT NULL DEFAULT '[]',
    min_amount REAL,
    created_by TEXT,
    created_at REAL NOT NULL,
    UNIQUE (destination_id, topic, source)
);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events (id),
    destination_id TEXT NOT NULL REFERENCES destinations (id),
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at REAL,
    remote_id TEXT
);
CREATE INDEX deliveries_pending ON deliveries (destination_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, id);

CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TABLE leaders (name TEXT PRIMARY KEY, owner TEXT NOT NULL, lease_until REAL NOT NULL);
