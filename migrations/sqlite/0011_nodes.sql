-- Every serving node registers itself and heartbeats: the cluster's view of who is serving what. A node whose
-- heartbeat stops is shown expired; its row stays until it comes back or an admin forgets it.
CREATE TABLE nodes (
    name       TEXT PRIMARY KEY,
    url        TEXT,
    version    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    -- JSON: the models it has loaded, with their running and waiting requests
    info       TEXT NOT NULL
);
