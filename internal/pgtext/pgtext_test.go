package pgtext_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/msgrouter/msgrouter/internal/pgtext"
)

func TestValid(t *testing.T) {
	t.Parallel()
	require.True(t, pgtext.Valid(""))
	require.True(t, pgtext.Valid("agent-é/日本"))
	require.False(t, pgtext.Valid("a\x00b"))
	require.False(t, pgtext.Valid("a\xffb"))
	require.False(t, pgtext.Valid("\xe6\x97")) // a character cut in two
}

func TestClean(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\x00b", "a\uFFFDb"},
		{"a\xffb", "a\uFFFDb"},
		{"ok\xe6\x97", "ok\uFFFD"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, pgtext.Clean(c.in, 0))
	}
	// Cut at a rune boundary, never inside a multi-byte character.
	s := strings.Repeat("日", 1000) // 3 bytes each
	for _, limit := range []int{1, 2, 3, 4, 1000, 1001, 2999} {
		got := pgtext.Clean(s, limit)
		require.True(t, utf8.ValidString(got), "limit %d", limit)
		require.True(t, strings.HasSuffix(got, pgtext.Ellipsis))
		require.LessOrEqual(t, len(got), limit+len(pgtext.Ellipsis))
		require.True(t, pgtext.Valid(got))
	}
	require.Equal(t, s, pgtext.Clean(s, len(s)))
}

func FuzzClean(f *testing.F) {
	f.Add("a\x00b\xff日本", 5)
	f.Add(strings.Repeat("é", 600), 1000)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit = limit % 4096
		got := pgtext.Clean(s, limit)
		if !pgtext.Valid(got) {
			t.Fatalf("Clean(%q, %d) = %q is not storable", s, limit, got)
		}
		if limit > 0 && len(got) > limit+len(pgtext.Ellipsis) {
			t.Fatalf("Clean(%q, %d) is %d bytes", s, limit, len(got))
		}
		if pgtext.Valid(s) && (limit <= 0 || len(s) <= limit) && got != s {
			t.Fatalf("Clean changed a storable text")
		}
	})
}
