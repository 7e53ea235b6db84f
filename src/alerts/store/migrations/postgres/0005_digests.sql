-- Digests and quiet hours (issue 16). A subscription's digest / quiet / tz / urgent
-- settings (JSON). A held delivery waits in the outbox (state 'held') until
-- hold_until, when a digest shows it (digest_id names the digest's delivery).
ALTER TABLE subscriptions ADD COLUMN schedule text;
ALTER TABLE deliveries ADD COLUMN hold_until timestamptz;
ALTER TABLE deliveries ADD COLUMN digest_key text;
ALTER TABLE deliveries ADD COLUMN digest_id bigint;
CREATE INDEX deliveries_held ON deliveries (hold_until, destination_id) WHERE state = 'held';
