-- Quotas: per-user limits (NULL = the role's default from the config), usage counters per local day and month,
-- and the ledger columns that reservation and reconciliation need.
CREATE TABLE quota_limits (
    user_id                 TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    tokens_per_day          BIGINT,
    tokens_per_month        BIGINT,
    requests_per_minute     BIGINT,
    tokens_per_minute       BIGINT,
    max_concurrent_requests BIGINT,
    max_tokens_per_request  BIGINT,
    allowed_models          TEXT,
    weight                  BIGINT
);

-- One row per user and window ('d:2026-11-28', 'm:2026-11'), in the configured time zone. Tokens are charged at
-- admission (the reservation) and corrected at completion, in the same transactions as the ledger row.
CREATE TABLE usage_windows (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    window_key TEXT NOT NULL,
    tokens     BIGINT NOT NULL DEFAULT 0,
    requests   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, window_key)
);

-- Serialises admissions of one user (a row lock in PostgreSQL, the write lock in SQLite).
CREATE TABLE quota_locks (
    user_id TEXT PRIMARY KEY,
    n       BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE requests ADD COLUMN status TEXT NOT NULL DEFAULT 'ok';
ALTER TABLE requests ADD COLUMN reserved_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN charged_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN day_key TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN month_key TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN ended_at BIGINT;
ALTER TABLE requests ADD COLUMN energy_joules DOUBLE PRECISION;
CREATE INDEX requests_user_status ON requests (user_id, status);
