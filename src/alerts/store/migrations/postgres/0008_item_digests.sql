-- What each item was last read from (issue 17): a poll reads, of the entries a
-- feed lists, only those whose key or digest is not stored. NULL: not known yet
-- (stored before this migration): such an item is read once more.
ALTER TABLE items ADD COLUMN digest text;
