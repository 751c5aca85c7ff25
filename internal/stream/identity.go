package stream

import "time"

// Identity names one incarnation of the stream for the messageIds derived from a
// stream sequence (DESIGN §3, message.DirectID): its name and creation time.
// Sequences start again at 1 when a stream is recreated, so the name alone would
// give new messages the ids of old ones. The router's takeover and the audit
// (internal/audit) both derive ids through it, so they always agree; a change to
// the identity (issue 8 item 4) is made here, once.
func Identity(name string, created time.Time) string {
	return name + "@" + created.UTC().Format(time.RFC3339Nano)
}
