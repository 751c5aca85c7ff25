// Package cams is the router's client of the Central Agent Mapping Service
// (DESIGN §4): how the router learns where an agent's inbox is.
//
// Its answers are exactly three kinds, and the router relies on that: a mapping; the
// sentinel ErrNotFound, only when CAMS itself answered 404; or an error wrapping
// ErrUnavailable for anything else CAMS did (timeouts, connection errors, 5xx, 429,
// other refusals, undecodable bodies, an open breaker) - transient, never a reason
// to reject a message. A caller's own cancellation comes back as its ctx error and
// never counts against CAMS. Found mappings are cached for CacheTTL in a bounded
// LRU, concurrent lookups of one address share one request, and a circuit breaker
// turns an outage into fast errors and tells the consumer (Available) to pause.
//
// The client is read-only. The data model and the validation rules it shares with
// routing are internal/cams/mapping (pure); the reference server is
// internal/camsserver; admin calls (register, update, delete, health reports) are
// the API client's (internal/apiclient). Addresses may contain any character
// but whitespace and controls; they travel in the path escaped
// (mapping.EscapeAddress) and come back byte for byte.
package cams
