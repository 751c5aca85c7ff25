// Package inboxtest is a fake agent inbox reached over HTTP, for the tests of
// what delivers to one: it answers each path with the status set for it (a
// default otherwise) and records every request it gets.
package inboxtest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Request is one request the inbox got.
type Request struct {
	Path   string
	Header http.Header
	Body   []byte
}

// Server is the inbox; URL is its base, a path under it an agent's inbox.
type Server struct {
	URL string

	def    int
	mu     sync.Mutex
	status map[string]int
	got    []Request
}

// New starts an inbox that answers def where no status was set for the path;
// t.Cleanup closes it.
func New(t testing.TB, def int) *Server {
	s := &Server{def: def, status: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		code := s.status[r.URL.Path]
		s.mu.Unlock()
		if code == 0 {
			code = s.def
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Answer makes the inbox answer code to the requests for path from now on.
func (s *Server) Answer(path string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[path] = code
}

// Requests returns the requests the inbox got so far, in the order they came.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.got...)
}
