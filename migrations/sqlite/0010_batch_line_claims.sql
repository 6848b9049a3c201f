-- Batch lines are claimed in the database, with a lease the claiming node renews: several nodes on one database
-- run each line once, and a dead node's lines are taken over when its leases expire.
ALTER TABLE batch_lines ADD COLUMN claimed_by TEXT;
ALTER TABLE batch_lines ADD COLUMN lease_until BIGINT;
CREATE INDEX batch_lines_claims ON batch_lines (claimed_by, status);
