// Package cams is both sides of the Central Agent Mapping Service API (DESIGN §4).
//
// The client (Client) is how the router learns where an agent's inbox is. Its
// answers are exactly three kinds, and the router relies on that: a mapping; the
// sentinel ErrNotFound, only when CAMS itself answered 404; or an error wrapping
// ErrUnavailable for anything else CAMS did (timeouts, connection errors, 5xx, 429,
// other refusals, undecodable bodies, an open breaker) - transient, never a reason
// to reject a message. A caller's own cancellation comes back as its ctx error and
// never counts against CAMS. Found mappings are cached for CacheTTL, concurrent
// lookups of one address share one request, and a circuit breaker turns an outage
// into fast errors and tells the consumer (Available) to pause.
//
// The reference server (Store, NewHandler, Run/Serve; run by cmd/cams) keeps the
// registry in Postgres (table agent_inboxes) and serves the contract's routes, plus
// health, metrics and an OpenAPI document of every route. Addresses may contain any
// character but whitespace and controls; they travel in the path escaped with
// url.PathEscape, and come back byte for byte.
package cams
