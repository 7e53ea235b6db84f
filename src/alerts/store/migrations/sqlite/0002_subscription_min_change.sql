-- Subscriptions and routes: the smallest change an update must make (issue 13).
ALTER TABLE subscriptions ADD COLUMN min_change REAL;
