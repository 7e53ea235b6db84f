-- Message templates (issue 16). A subscription's template name, and a delivery's
-- template (JSON: name, title, body, facts) as it was when the event was routed, so
-- a message and its later edits read the same after a config reload.
ALTER TABLE subscriptions ADD COLUMN template TEXT;
ALTER TABLE deliveries ADD COLUMN template TEXT;
-- Failure notices (issue 16): a subscription that also gets its sources' failure and
-- recovery notices (notify_failures=yes).
ALTER TABLE subscriptions ADD COLUMN notify_failures INTEGER NOT NULL DEFAULT 0;
