// Package mappingtest holds the CAMS mapping cases that more than one package's
// tests check (the validation rules and the reference server that applies them),
// and the signing secrets they are built from.
package mappingtest

import (
	"bytes"
	"encoding/base64"
)

// Secret is a Standard Webhooks signing secret (whsec_...) with an n-byte key;
// the rules accept 24 to 64 bytes (DESIGN §4).
func Secret(n int) string {
	return "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'k'}, n))
}

// SystemSubjects are NATS subjects that belong to the system itself (DESIGN §4):
// no mapping may point an agent's inbox at them.
var SystemSubjects = []string{
	"$JS.API.STREAM.PURGE.ROUTER_MESSAGES",
	"$JS.API.STREAM.DELETE.ROUTER_MESSAGES",
	"$JS.ACK.ROUTER_MESSAGES.router.1.1.1.1.0",
	"$KV.bucket.key",
	"$O.store.chunks",
	"$SYS.REQ.SERVER.PING",
	"$G",
	"_INBOX.abc",
	"_INBOX",
	"router.messages",
	"router.messages.crm",
	"router.messages.a.b.c",
}
