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

-- Rows waiting behind the head of their key are parked (due far ahead, parked = true)
-- when a claim comes across them, so claims do not scan a key's backlog again and
-- again; when a keyed row leaves the outbox (delivered, dead-lettered, rejected,
-- expired, purged: every way out is a DELETE) the trigger makes the new head of its
-- key due at once. A parked row also comes due by itself after a while (the claim
-- parks it for 30 s), a safety net only.
ALTER TABLE outbox ADD COLUMN parked boolean NOT NULL DEFAULT false;

CREATE FUNCTION outbox_wake_next_of_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The new head is updated (and so locked) even when it is not parked: a claim
    -- that still sees the old head then skips it (SKIP LOCKED) instead of parking
    -- it, or waits for this transaction and has its parking undone by the unpark
    -- check that follows every parking claim.
    UPDATE outbox SET due_at = CASE WHEN parked THEN now() ELSE due_at END, parked = false
    WHERE message_id = (
            SELECT message_id FROM outbox
            WHERE ai_agent_address = OLD.ai_agent_address AND ordering_key = OLD.ordering_key
            ORDER BY order_seq, message_id
            LIMIT 1);
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_wake_next_of_key AFTER DELETE ON outbox
    FOR EACH ROW WHEN (OLD.ordering_key IS NOT NULL) EXECUTE FUNCTION outbox_wake_next_of_key();
