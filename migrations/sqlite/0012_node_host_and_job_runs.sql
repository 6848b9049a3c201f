-- Which machine and state directory hold a node name, so that a second machine configured with the same
-- cluster.name is refused instead of overwriting the first one's registry row.
ALTER TABLE nodes ADD COLUMN host TEXT NOT NULL DEFAULT '';

-- Maintenance that must run once for the whole cluster (the usage roll-up): the last run and the node that
-- took it. A node runs the job only if it moves last_run_at forward past the job's minimum gap.
CREATE TABLE job_runs (
    name        TEXT PRIMARY KEY,
    last_run_at BIGINT NOT NULL,
    node        TEXT NOT NULL
);
