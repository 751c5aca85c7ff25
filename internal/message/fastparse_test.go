package message

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

var fastSeeds = []string{
	`{"aiAgentAddress":"agent-sales@example.com","payload":{"command":"processData","value":42},"senderMetadata":{"serviceName":"CRM_System","correlationId":"crm-corr-123","senderProvidedMessageId":"crm-msg-abc"}}`,
	` { "aiAgentAddress" : "a" , "payload" : { "x" : [1, "}", {"y": null}] } , "extra": [1,2,{"a":"\""}], "n": -1.5e3, "t": true } `,
	`{"aiAgentAddress":"a","payload":{},"senderMetadata":{}}`,
	`{"aiAgentAddress":"a","payload":{},"senderMetadata":{"orderingKey":"k","expiresAt":"2026-12-01T10:00:00Z","other":1}}`,
	`{"aiAgentAddress":"a","payload":"str"}`,
	`{}`,
	`{"aiAgentAddress":"a","payload":null}`,
	`{"AIAgentAddress":"a","payload":{}}`,
	`{"aiAgentAddress":"a","aiAgentAddress":"b","payload":{}}`,
	`{"aiAgentAddress":"a\u0041","payload":{}}`,
	`{"aiAgentAddress":1,"payload":{}}`,
	`{"aiAgentAddress":"a","payload":{]}`,
	`{"aiAgentAddress":"a","payload":{}} x`,
	`{"aiAgentAddress":"a","payload":{"a":1}`,
	`[]`,
}

// FuzzDecodeFast: whenever the fast path accepts a body, encoding/json accepts it
// too and decodes exactly the same envelope (payload bytes included); when it gives
// up, Parse falls back to encoding/json, so its answers cannot differ.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFast(t, body)
	})
}

// TestDecodeFast runs the seeds, and checks the fast path is taken for the shapes
// producers send (else this lever silently stops paying).
func TestDecodeFast(t *testing.T) {
	for _, s := range fastSeeds {
		checkFast(t, []byte(s))
	}
	for _, s := range fastSeeds[:6] {
		if _, ok := decodeFast([]byte(s)); !ok {
			t.Errorf("fast path refused %s", s)
		}
	}
	for _, s := range fastSeeds[6:] {
		if _, ok := decodeFast([]byte(s)); ok {
			t.Errorf("fast path accepted %s", s)
		}
	}
}

func checkFast(t *testing.T, body []byte) {
	t.Helper()
	if !utf8.Valid(body) {
		return // Parse refuses these before decodeFast (encoding/json would write U+FFFD)
	}
	fast, ok := decodeFast(body)
	if !ok {
		return
	}
	var slow Envelope
	if err := json.Unmarshal(body, &slow); err != nil {
		t.Fatalf("fast path accepted %q, encoding/json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(*fast, slow) {
		t.Fatalf("%q: fast %+v %+v, encoding/json %+v %+v", body, *fast, fast.SenderMetadata, slow, slow.SenderMetadata)
	}
}

// FuzzAppendString: appendString writes what json.Marshal writes, byte for byte.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "agent@example.com", `a"b\c`, "<&>", "\u2028", "\x00\x7f", "é", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("appendString(%q) = %s, json.Marshal: %s", s, got[1:], want)
		}
	})
}
