-- The digests of a poll's keys read by an index-only scan (issue 17), as SQLite
-- reads them from its own index: the key and the digest, without the snapshot.
CREATE INDEX items_digest ON items (source_id, key) INCLUDE (digest);
