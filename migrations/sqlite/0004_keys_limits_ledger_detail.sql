-- Per-key limit overrides (NULL = the user's value), and the ledger's device and queue time.
CREATE TABLE key_limits (
    key_id                  TEXT PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    tokens_per_day          BIGINT,
    tokens_per_month        BIGINT,
    requests_per_minute     BIGINT,
    tokens_per_minute       BIGINT,
    max_concurrent_requests BIGINT,
    max_tokens_per_request  BIGINT,
    allowed_models          TEXT,
    weight                  BIGINT
);

-- Where the request ran ('cpu', 'cuda:0', …) and how long it waited for a batch slot.
ALTER TABLE requests ADD COLUMN device TEXT;
ALTER TABLE requests ADD COLUMN queue_ms BIGINT;
