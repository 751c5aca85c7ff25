// Package pgtext is the rule for text that reaches Postgres (DESIGN §2, "every
// string the system stores must be storable"): a text value must be valid UTF-8
// and must not contain U+0000, or the statement carrying it fails — and with it
// every other row of the same batch statement.
//
// Outside text is either refused at the edge (Valid: ingest answers 400, the
// router records a direct producer's message as REJECTED/INVALID_MESSAGE) or, when
// it is only a description (inbox error bodies and headers, CAMS answers), made
// storable with Clean before it is written.
package pgtext

import (
	"strings"
	"unicode/utf8"
)

// Replacement stands in for what Clean cannot keep: U+0000 and invalid UTF-8.
const Replacement = "\uFFFD"

// Ellipsis marks a text Clean cut short.
const Ellipsis = "…"

// Valid reports whether Postgres can store s in a text column of a UTF8 database:
// valid UTF-8 without U+0000 (PostgreSQL rejects both with SQLSTATE 22021,
// "invalid byte sequence for encoding UTF8").
func Valid(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Clean returns s made storable: each invalid UTF-8 sequence and each U+0000 is
// replaced by U+FFFD, and a text longer than maxBytes is cut at the last rune
// boundary at or before maxBytes and ends with "…" (so the result is at most
// maxBytes+3 bytes, never a multi-byte character cut in two). maxBytes <= 0 means
// no limit. Clean(s) == s when s is Valid and short enough.
func Clean(s string, maxBytes int) string {
	if !Valid(s) {
		s = strings.ToValidUTF8(s, Replacement)
		s = strings.ReplaceAll(s, "\x00", Replacement)
	}
	if maxBytes <= 0 || len(s) <= maxBytes {
		return s
	}
	cut := maxBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Ellipsis
}
