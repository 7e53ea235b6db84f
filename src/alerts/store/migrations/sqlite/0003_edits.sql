-- Edits in place, one story one message (issue 15). How a room shows updates: per
-- subscription, and per delivery as it was routed (with the room's merge window).
ALTER TABLE subscriptions ADD COLUMN updates TEXT;
ALTER TABLE deliveries ADD COLUMN updates TEXT;
ALTER TABLE deliveries ADD COLUMN merge_window_s REAL;

-- The messages kept alive in rooms: what each shows and where the platform keeps it.
CREATE TABLE posts (
    id INTEGER PRIMARY KEY,
    destination_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    item_key TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    room TEXT NOT NULL,
    target TEXT NOT NULL,
    delivery_id INTEGER NOT NULL UNIQUE,
    detected_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT '{}',
    edits INTEGER NOT NULL DEFAULT 0,
    edited_at REAL,
    closed INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX posts_recent ON posts (destination_id, detected_at);
CREATE INDEX posts_counters ON posts (destination_id, source_id, kind);

-- Which post shows an item in a room: its own, or the story it was merged into.
CREATE TABLE post_items (
    destination_id TEXT NOT NULL,
    source_id TEXT NOT NULL,
    item_key TEXT NOT NULL,
    post_id INTEGER NOT NULL REFERENCES posts (id),
    PRIMARY KEY (destination_id, source_id, item_key)
) WITHOUT ROWID;
