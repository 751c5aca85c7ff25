-- Agent-aware delivery (DESIGN §5a): ordering keys, expiry, holding.
--
-- messages keeps what the admin API shows (orderingKey, expiresAt) and the stream
-- sequence the message was accepted at (its place in its key).
ALTER TABLE messages
    ADD COLUMN ordering_key text,
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN order_seq    bigint;

-- The admin API's ?orderingKey= filter; partial, so unkeyed messages cost nothing.
CREATE INDEX messages_ordering_key_idx ON messages (ordering_key, received_at DESC, message_id DESC)
    WHERE ordering_key IS NOT NULL;

-- The outbox row carries its key and place so a claim can tell the head of a key
-- (the pending row with the lowest order_seq) without touching messages. Unkeyed
-- rows leave the new columns NULL.
ALTER TABLE outbox
    ADD COLUMN ai_agent_address text,
    ADD COLUMN ordering_key     text,
    ADD COLUMN order_seq        bigint,
    ADD COLUMN expires_at       timestamptz,
    ADD COLUMN held             boolean NOT NULL DEFAULT false; -- waiting for an INACTIVE agent (HOLD)

-- "Is there an earlier pending row of this key?" — one index probe per keyed
-- candidate of a claim.
CREATE INDEX outbox_key_idx ON outbox (ai_agent_address, ordering_key, order_seq, message_id)
    WHERE ordering_key IS NOT NULL;

-- The expiry sweep finds expired rows in whatever state they wait.
CREATE INDEX outbox_expires_idx ON outbox (expires_at) WHERE expires_at IS NOT NULL;

-- Releasing an agent's held rows when CAMS shows it ACTIVE again: few rows are held,
-- so the index stays tiny and costs the hot path nothing.
CREATE INDEX outbox_held_idx ON outbox (ai_agent_address) WHERE held;
