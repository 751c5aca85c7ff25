// Package chaos is the fault-injection suite of msgrouter (DESIGN §8): it runs the
// built binaries as real processes (one ingest, three router replicas) against a
// nats-server process of its own and a Postgres database of its own, with in-process
// fakes for CAMS and the agents' HTTP inboxes, drives several thousand messages
// through them per scenario while a fault happens (a router killed with SIGKILL,
// NATS or Postgres restarted, CAMS or an inbox down, hanging or failing, duplicate
// submissions), and then checks the guarantees as an outside client sees them:
//
//   - every message ingest accepted (202) reaches a terminal status in the admin API
//     (DELIVERED; REJECTED where the agent is unknown) within a drain timeout;
//   - every DELIVERED message arrived at the inbox the harness controls, with the
//     payload it was sent with;
//   - a retried or duplicated submission keeps its messageId.
//
// Duplicates at an inbox are allowed (delivery is at-least-once) and reported. A
// message accepted but not terminal, or terminal but never arrived, is lost: the
// run fails. Everything listens on loopback, every wait has a deadline, and Run
// removes what it created (processes, temp dir, database) when it returns.
package chaos
