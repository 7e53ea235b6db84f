-- Sources added from chat (issue 16): a feed a room's moderator (or a user in a DM)
-- added with add-feed. It belongs to that room alone: its alerts reach the room
-- through a subscription to the source. One URL once per room.
CREATE TABLE chat_sources (
    id text PRIMARY KEY,
    destination_id text NOT NULL,
    url text NOT NULL,
    kind text NOT NULL DEFAULT 'feed',
    topic text NOT NULL DEFAULT '',
    added_by text NOT NULL,
    added_at timestamptz NOT NULL,
    UNIQUE (destination_id, url)
);
