-- The reference CAMS registry: agent address -> inbox (DESIGN §4).
-- The address uses the "C" collation: byte order is locale-independent and total, so
-- the keyset pagination of GET /v1/agent-inboxes (address > cursor ORDER BY address)
-- walks every row exactly once whatever the server's locale.
CREATE TABLE agent_inboxes (
    ai_agent_address       text COLLATE "C" PRIMARY KEY,
    inbox_destination_type text        NOT NULL,
    inbox_name             text        NOT NULL,
    status                 text        NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    description            text        NOT NULL DEFAULT '',
    owner_team             text        NOT NULL DEFAULT '',
    updated_by             text        NOT NULL DEFAULT '',
    signing_secrets        text[]      NOT NULL DEFAULT '{}',
    registration_timestamp timestamptz NOT NULL,
    last_updated_timestamp timestamptz NOT NULL,
    -- The last health report (POST /v1/agent-health-check); NULL until one arrives.
    health_status          text CHECK (health_status IN ('HEALTHY', 'UNHEALTHY')),
    health_details         text,
    last_health_at         timestamptz,
    -- True while the agent is INACTIVE because a health check made it so: only then
    -- does a HEALTHY report make it ACTIVE again. An admin's status change clears it.
    inactive_by_health     boolean     NOT NULL DEFAULT false
);
