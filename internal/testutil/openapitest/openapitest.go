// Package openapitest checks the OpenAPI documents the binaries serve with
// kin-openapi: Load parses and validates a document (OpenAPI 3.0 rules, every
// $ref resolved, examples against their schemas), and the Doc it returns checks
// real responses against the operation they answer — status documented, headers
// and body valid against their schemas. Tests of ingest, router and CAMS share it,
// so a document that drifts from what the code sends fails a test.
package openapitest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/stretchr/testify/require"
)

// Doc is a loaded, valid OpenAPI document and a router over its paths.
type Doc struct {
	// T is the parsed document, for tests that inspect it (routes, responses).
	T      *openapi3.T
	router routers.Router
}

// registerDecoders teaches kin-openapi the text bodies our documents describe
// besides JSON and text/plain (the /docs and /console/ HTML pages): their
// schema is a string. kin-openapi keeps decoders in a package-level table.
var registerDecoders = sync.OnceFunc(func() {
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
})

// Load parses data as an OpenAPI document and fails the test unless it is valid
// (openapi3.T.Validate: structure, $ref targets, schemas, examples).
func Load(t testing.TB, data []byte) *Doc {
	t.Helper()
	registerDecoders()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	require.NoError(t, err, "the OpenAPI document loads")
	require.NoError(t, doc.Validate(loader.Context), "the OpenAPI document is valid")
	r, err := gorillamux.NewRouter(doc)
	require.NoError(t, err, "the OpenAPI document's paths make a router")
	return &Doc{T: doc, router: r}
}

// Fetch GETs a served document (a binary's /openapi.json) and loads it with Load.
func Fetch(t testing.TB, url string) *Doc {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return Load(t, data)
}

// Operation returns the documented operation for method and path (a template as
// written in the document, e.g. "/v1/messages/{messageId}"), or nil.
func (d *Doc) Operation(method, path string) *openapi3.Operation {
	item := d.T.Paths.Value(path)
	if item == nil {
		return nil
	}
	return item.GetOperation(method)
}

// CheckResponse fails the test unless req's route is documented and the response
// (status, header, body) is one the document allows for it: the status must be
// listed, and the body and headers must match the schemas of that response.
// The request itself is not validated: tests send bad requests on purpose.
func (d *Doc) CheckResponse(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	route, params, err := d.router.FindRoute(req)
	require.NoError(t, err, "%s %s is documented", req.Method, req.URL.Path)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	require.NoError(t, openapi3filter.ValidateResponse(context.Background(), in),
		"%s %s → %d matches the document; body: %s", req.Method, req.URL.Path, status, body)
}

// Serve runs req through h, checks the response against the document, and returns
// the recorded response.
func (d *Doc) Serve(t testing.TB, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	body := readBody(t, req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	req.Body = io.NopCloser(bytes.NewReader(body))
	d.CheckResponse(t, req, rec.Code, rec.Header(), rec.Body.Bytes())
	return rec
}

// Do sends req over the network with http.DefaultClient, checks the response
// against the document, and returns its status and body.
func (d *Doc) Do(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	body := readBody(t, req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	req.Body = io.NopCloser(bytes.NewReader(body))
	d.CheckResponse(t, req, resp.StatusCode, resp.Header, got)
	return resp.StatusCode, got
}

// Requester returns a function building requests to base (a server's URL, or ""
// for a handler served in-process by Serve) with bearer as the API key: a JSON
// body when body is not empty, and header's name/value pairs set last (they may
// override the key).
func Requester(t testing.TB, base, bearer string) func(method, path, body string, header ...string) *http.Request {
	return func(method, path, body string, header ...string) *http.Request {
		t.Helper()
		r := httptest.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if base != "" {
			r.RequestURI = "" // a client request: http.Client refuses one with RequestURI set
		}
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		r.Header.Set("Authorization", "Bearer "+bearer)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		return r
	}
}

// readBody reads req's body and puts back a fresh reader, so the request can be
// sent and then matched against the document.
func readBody(t testing.TB, req *http.Request) []byte {
	t.Helper()
	if req.Body == nil {
		return nil
	}
	b, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	req.Body = io.NopCloser(bytes.NewReader(b))
	return b
}
