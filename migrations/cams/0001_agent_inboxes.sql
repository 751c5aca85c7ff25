-- The reference CAMS registry: agent address -> inbox.
CREATE TABLE agent_inboxes (
    ai_agent_address       text PRIMARY KEY,
    inbox_destination_type text        NOT NULL,
    inbox_name             text        NOT NULL,
    status                 text        NOT NULL,
    description            text,
    owner_team             text,
    signing_secret         text,
    registration_timestamp timestamptz NOT NULL DEFAULT now(),
    last_updated_timestamp timestamptz NOT NULL DEFAULT now(),
    updated_by             text,
    health_details         text,
    last_health_at         timestamptz
);
