-- The purges find old rows by their place in the table instead of by an index of their own.
-- Events and sessions are stored oldest first (ascending rowid), so the expired events and
-- the sessions past their retention are the first rows of their tables. The two indexes only
-- the once-a-minute purges used each cost a page in the WAL on every event and on every offer
-- and answer: 4 of the 17 pages a signaling session wrote.
DROP INDEX sessions_by_update;
DROP INDEX events_by_expiry;
