// Package e2e holds the end-to-end tests of msgrouter: they run the real services
// (ingest.Run, router.Run and the reference CAMS) in one test process against a real
// in-process JetStream server and a fresh Postgres database, and drive them over
// HTTP the way a producer, an operator and an agent inbox would. They also check
// that the operator files in deploy/ (Grafana dashboard, Prometheus rules and
// scrape configuration, docker-compose.yml) only name metrics the services export
// and environment variables the binaries read.
//
// The package has no non-test code besides this comment.
package e2e
