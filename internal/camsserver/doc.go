// Package camsserver is the reference Central Agent Mapping Service (DESIGN §4),
// run by cmd/cams: the agent registry the router looks agents up in.
//
// Store keeps the registry in Postgres (table agent_inboxes, migrations/cams),
// secrets sealed at rest with a SecretBox when CAMS_SECRETS_KEY is set. Handler
// serves the contract's routes behind the admin keys, plus health, metrics and an
// OpenAPI document of every route (openapi.json, embedded). Serve/Run wire them:
// Postgres, migrations, the API, graceful stop. Mappings are validated with the
// rules of internal/cams/mapping, the ones the router re-applies. The router's
// client is internal/cams; it never imports this package.
package camsserver
