-- The order gate (DESIGN §5a, internal/outbox/ordergate.go): a keyed row taken over
-- is at a gate until one lets it pass (every earlier stream message taken over).
-- Should the gate's replica die or stop first, the sweep that claims the row after
-- the lease sends it through its own gate again; rows a gate passed (and replays,
-- which have no place in the stream) go on without one. Rows written before this
-- migration count as passed, as they were treated until now.
ALTER TABLE outbox ADD COLUMN gate boolean NOT NULL DEFAULT false;

-- "Is the stream message at this sequence of this key taken over?" — asked by the
-- gate while the ack floor stands still; one index probe each, however many
-- messages the key has had.
CREATE INDEX messages_key_seq_idx ON messages (ai_agent_address, ordering_key, order_seq)
    WHERE ordering_key IS NOT NULL;
