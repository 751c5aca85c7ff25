package service

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Go is a Service running loop on a goroutine of its own. The loop gets a context
// cancelled by Stop (or when Start's context ends) and must return soon after;
// Stop waits for it, bounded by Stop's context. name appears in Stop's error.
func Go(name string, loop func(ctx context.Context)) *Loop {
	return &Loop{name: name, loop: loop}
}

// Loop is what Go returns.
type Loop struct {
	Base
	name   string
	loop   func(ctx context.Context)
	cancel context.CancelFunc
	done   chan struct{}
}

// Start launches the loop. Idempotent.
func (l *Loop) Start(ctx context.Context) error {
	return l.Base.Start(func() error {
		var lctx context.Context
		lctx, l.cancel = context.WithCancel(ctx)
		l.done = make(chan struct{})
		go func() {
			defer close(l.done)
			l.loop(lctx)
		}()
		return nil
	})
}

// Stop cancels the loop's context and waits for it to return, until ctx ends.
func (l *Loop) Stop(ctx context.Context) error {
	return l.Base.Stop(ctx, func(ctx context.Context) error {
		l.cancel()
		return Wait(ctx, l.name, l.done)
	})
}

// HTTPServer serves srv on ln as a Service: Start serves, Stop shuts down
// gracefully (in-flight requests finish) until its context ends, then closes the
// remaining connections. A serve error (other than the server being closed) is
// sent on Failed. Before is called at the start of Stop, before Shutdown (ingest
// turns new submissions away with 503 there).
type HTTPServer struct {
	Base
	Name     string
	Server   *http.Server
	Listener net.Listener
	Before   func()
	// Grace, when set, bounds the graceful part of Stop further than Stop's
	// context (pprof: a profile still streaming is cut after a second).
	Grace time.Duration

	failed chan error
	done   chan struct{}
}

// Failed receives the serve error if the server fails on its own.
func (s *HTTPServer) Failed() <-chan error { return s.failedCh() }

func (s *HTTPServer) failedCh() chan error {
	s.Base.mu.Lock()
	defer s.Base.mu.Unlock()
	if s.failed == nil {
		s.failed = make(chan error, 1)
	}
	return s.failed
}

// Start serves in a goroutine of its own. Idempotent.
func (s *HTTPServer) Start(context.Context) error {
	failed := s.failedCh()
	return s.Base.Start(func() error {
		s.done = make(chan struct{})
		go func() {
			defer close(s.done)
			if err := s.Server.Serve(s.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				failed <- err
			}
		}()
		return nil
	})
}

// Stop shuts the server down within ctx; when ctx ends first it closes the
// connections still open and returns Shutdown's error (wrapping ctx.Err()).
func (s *HTTPServer) Stop(ctx context.Context) error {
	return s.Base.Stop(ctx, func(ctx context.Context) error {
		if s.Before != nil {
			s.Before()
		}
		sctx := ctx
		if s.Grace > 0 {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(ctx, s.Grace)
			defer cancel()
		}
		err := s.Server.Shutdown(sctx)
		if err != nil {
			_ = s.Server.Close()
			if ctx.Err() == nil {
				err = nil // only the grace ran out: cutting the rest short is the plan
			}
		}
		<-s.done // Serve returns at once after Shutdown or Close
		return err
	})
}

// Funcs adapts a part whose Start or Stop has another shape. Start and Stop may
// be nil. The Base makes the result idempotent.
type Funcs struct {
	Base
	StartFunc func(ctx context.Context) error
	StopFunc  func(ctx context.Context) error
}

// Start calls StartFunc once.
func (f *Funcs) Start(ctx context.Context) error {
	return f.Base.Start(func() error {
		if f.StartFunc == nil {
			return nil
		}
		return f.StartFunc(ctx)
	})
}

// Stop calls StopFunc once, if Start succeeded.
func (f *Funcs) Stop(ctx context.Context) error {
	return f.Base.Stop(ctx, func(ctx context.Context) error {
		if f.StopFunc == nil {
			return nil
		}
		return f.StopFunc(ctx)
	})
}
