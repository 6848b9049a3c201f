-- Dashboard sign-in: browser sessions, and the first admin's forced password change.
-- A session row holds the SHA-256 of the cookie's secret (never the secret) and the CSRF token that every
-- state-changing request of that session must echo in X-CSRF-Token.
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Usage reports show energy: the daily roll-up keeps the joules of the raw rows it folds.
ALTER TABLE usage_daily ADD COLUMN energy_joules DOUBLE PRECISION NOT NULL DEFAULT 0;
