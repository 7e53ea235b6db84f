-- One owner at a time per chat account (issue 11, "Replicas"). A row per bot account
-- (a Matrix user, a Discord bot token's hash): which process holds its lease and
-- until when, and what the next owner needs to continue the same session: the Matrix
-- device id and its end-to-end key store (matrix-nio's SQLite file, zlib + base64).
CREATE TABLE accounts (
    name text PRIMARY KEY,
    owner text,
    lease_until timestamptz,
    device_id text,
    keys text,
    keys_saved_at timestamptz
);

-- A delivery's first claim: from then on its outcome is unknown until it is marked,
-- and a retry after the platform's dedupe window first looks in the room's history.
ALTER TABLE deliveries ADD COLUMN tried_at timestamptz;
