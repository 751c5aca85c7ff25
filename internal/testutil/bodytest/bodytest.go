// Package bodytest builds the bodies of the HTTP requests tests send.
package bodytest

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Reader returns body as a request body: nil (no body) for nil, a string as it is
// (to send malformed or hand-written JSON), anything else JSON-encoded. An encoding
// error fails the test.
func Reader(t testing.TB, body any) io.Reader {
	t.Helper()
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		return bytes.NewReader(raw)
	}
}
