-- Results of creating actions by idempotency key, so a retry gets the first answer back.
-- A row is inserted (claimed) in the write's own transaction and holds its result; rows
-- older than a day are purged by the daemon.
CREATE TABLE idempotency_keys (
    caller         text        NOT NULL,
    action         text        NOT NULL,
    key            text        NOT NULL,
    payload_sha256 text        NOT NULL,
    result         jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, action, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
