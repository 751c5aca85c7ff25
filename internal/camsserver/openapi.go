package camsserver

import (
	_ "embed"
	"encoding/json"
	"net/http"

	"github.com/msgrouter/msgrouter/internal/httpapi"
)

// openAPIDoc describes every route the reference server serves; a test checks that
// each registered pattern is in it.
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the server's OpenAPI 3.0 document with info.version set.
func OpenAPI(version string) map[string]any {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		panic("cams: the embedded openapi.json is not JSON: " + err.Error()) // caught by the tests
	}
	if info, ok := doc["info"].(map[string]any); ok && version != "" {
		info["version"] = version
	}
	return doc
}

func (h *Handler) openAPI(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, OpenAPI(h.version))
}
