package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFirstKey(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                        "",
		"ops:k1,other:k2":         "k1",
		"bare-key, ops:k2":        "bare-key",
		",ops:from-file":          "from-file", // ADMIN_API_KEYS unset, ADMIN_API_KEYS_FILE set
		" , # comment, ops: k3 ":  "k3",
		"ops:with:colon-in-key,x": "with:colon-in-key",
	}
	for list, want := range tests {
		require.Equal(t, want, firstKey(list), "%q", list)
	}
}
