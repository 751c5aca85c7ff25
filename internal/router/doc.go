// Package router is the router service: it takes messages over from the stream
// (parse, look the agent up, decide, write message records and outbox rows in one
// statement, then ack), hands the new rows to the outbox dispatcher in-process, and
// serves the admin API. Run wires it all from configuration.
package router
