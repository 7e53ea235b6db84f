-- Sources added from chat (issue 16): a feed a room's moderator (or a user in a DM)
-- added with add-feed. It belongs to that room alone: its alerts reach the room
-- through a subscription to the source. One URL once per room.
CREATE TABLE chat_sources (
    id TEXT PRIMARY KEY,
    destination_id TEXT NOT NULL,
    url TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'feed',
    topic TEXT NOT NULL DEFAULT '',
    added_by TEXT NOT NULL,
    added_at REAL NOT NULL,
    UNIQUE (destination_id, url)
);
