-- Message records: the source of truth for delivery state (DESIGN §6).
-- Only immutable columns are indexed, so the status updates of the hot path can be
-- HOT updates (no index writes), and fillfactor 60 leaves room on the page for the
-- new row version (each row is updated about once, soon after its insert).
CREATE TABLE messages (
    message_id        uuid PRIMARY KEY,
    ai_agent_address  text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'REJECTED', 'DEAD_LETTERED')),
    reason            text,
    destination_type  text,
    destination_name  text,
    payload           bytea,                 -- the payload's exact bytes; NULL when the message did not parse
    raw               bytea,                 -- the stream message as received, kept for INVALID_MESSAGE
    sender_id         text,
    correlation_id    text,
    sender_message_id text,
    traceparent       text,
    agent_secrets     boolean     NOT NULL DEFAULT false, -- CAMS gave the agent its own signing secrets
    accepted_at       timestamptz NOT NULL,  -- JetStream storage time = timestampPublished
    received_at       timestamptz NOT NULL DEFAULT now(), -- taken over by a router
    finished_at       timestamptz,           -- reached its current terminal status
    delivered_at      timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,     -- since the last replay
    last_error        text
) WITH (fillfactor = 60, autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05);

CREATE INDEX messages_received_idx ON messages (received_at DESC, message_id DESC);
CREATE INDEX messages_address_received_idx ON messages (ai_agent_address, received_at DESC, message_id DESC);

-- The outbox: exactly the PENDING messages. Small and hot; rows leave it when the
-- message reaches a terminal state. due_at is when the row may next be claimed: a
-- retry's time, or the lease expiry of the claim holding it (lease_token), so one
-- index serves fresh rows, retries and expired leases alike.
CREATE TABLE outbox (
    message_id  uuid PRIMARY KEY,
    due_at      timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    route       boolean     NOT NULL DEFAULT false  -- look the agent up afresh first (replay)
) WITH (fillfactor = 70,
       -- Every row is inserted and deleted within seconds: vacuum it often and
       -- without throttling, so the table and its index stay small.
       autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000,
       autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.5);

CREATE INDEX outbox_due_idx ON outbox (due_at);

-- Messages that ended REJECTED or DEAD_LETTERED, for listing and bulk replay without
-- an index on messages.status. A replay removes the row.
CREATE TABLE failures (
    message_id       uuid PRIMARY KEY,
    status           text        NOT NULL,
    reason           text        NOT NULL,
    ai_agent_address text        NOT NULL,
    failed_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX failures_failed_idx ON failures (failed_at);

-- Every delivery attempt ever made (the history of GET /v1/messages/{id}).
CREATE TABLE delivery_attempts (
    message_id  uuid        NOT NULL,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    outcome     text        NOT NULL,
    error       text,
    duration_ms integer     NOT NULL
);

CREATE INDEX delivery_attempts_message_idx ON delivery_attempts (message_id, at);
