-- inactivePolicy (DESIGN §4, §5a): what the router does with messages for an
-- INACTIVE agent. inboxAuth (DESIGN §4): the credentials of an HTTP inbox, as JSON,
-- or as an encrypted envelope "enc:v1:<key id>:<base64>" when CAMS_SECRETS_KEY is
-- set (signing_secrets elements likewise).
ALTER TABLE agent_inboxes
    ADD COLUMN inactive_policy text NOT NULL DEFAULT 'REJECT' CHECK (inactive_policy IN ('REJECT', 'HOLD')),
    ADD COLUMN inbox_auth      text;
