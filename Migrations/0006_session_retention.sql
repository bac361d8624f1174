-- Sessions do not stay forever: one that has not changed for --session-retention seconds
-- (default a day) is deleted, in small batches; this index finds them.
CREATE INDEX sessions_by_update ON sessions(updated_at);

-- The pending-offer index now holds only offers still waiting. It used to keep an entry
-- for every answered, closed and expired session as well, which the server never looks up.
DROP INDEX sessions_pending;
CREATE INDEX sessions_pending ON sessions(offer_expires_at) WHERE state = 'offered';
