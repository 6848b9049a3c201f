-- Daily roll-up of the request ledger (by user, local day and model), so raw rows can be pruned after
-- `usage.retain_raw` while reports keep their totals. Recomputed from the raw rows: running it twice is harmless.
CREATE TABLE usage_daily (
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day               TEXT NOT NULL,
    model             TEXT NOT NULL,
    requests          BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cancelled         BIGINT NOT NULL,
    rejected          BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, model)
);
