package bench

import (
	"io"
	"sync"
)

// syncWriter lets the test read what the progress goroutine wrote.
type syncWriter struct {
	mu      sync.Mutex
	w       io.Writer
	onWrite func()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite()
	}
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(interface{ String() string }).String()
}
