-- OpenAI's Files and Batch API, batch windows and recurring schedules. A batch keeps one row per input line, so
-- a restart (or crash) resumes it without redoing finished lines; output and error files are assembled from
-- those rows when it ends. File contents are JSONL text kept in the database, so every node sees them.
CREATE TABLE files (
    id         TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    filename   TEXT NOT NULL,
    bytes      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    content    TEXT NOT NULL
);
CREATE INDEX files_owner ON files (owner_id, created_at);

CREATE TABLE batches (
    id                TEXT PRIMARY KEY,
    owner_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id            TEXT,
    endpoint          TEXT NOT NULL,
    input_file_id     TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status            TEXT NOT NULL,
    output_file_id    TEXT,
    error_file_id     TEXT,
    metadata          TEXT,
    schedule          TEXT,
    total             BIGINT NOT NULL,
    completed         BIGINT NOT NULL DEFAULT 0,
    failed            BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    in_progress_at    BIGINT,
    finalizing_at     BIGINT,
    completed_at      BIGINT,
    cancelling_at     BIGINT,
    cancelled_at      BIGINT
);
CREATE INDEX batches_owner ON batches (owner_id, created_at);
CREATE INDEX batches_status ON batches (status);

CREATE TABLE batch_lines (
    batch_id  TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line_no   BIGINT NOT NULL,
    custom_id TEXT NOT NULL,
    body      TEXT NOT NULL,
    -- pending, done (a 2xx response) or failed (an error response or a malformed line)
    status    TEXT NOT NULL,
    result    TEXT,
    PRIMARY KEY (batch_id, line_no)
);

-- Admin settings edited at run time (the batch window).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    owner_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint      TEXT NOT NULL,
    enabled       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL,
    last_run_at   BIGINT,
    last_batch_id TEXT
);
