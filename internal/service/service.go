// Package service is the one lifecycle every long-running part of msgrouter has,
// and the wiring the three binaries share (registry, Postgres pool, NATS
// connection, pprof, telemetry).
//
// The shape follows river's rivershared/startstop (STYLE.md, convention 2):
//
//   - Start(ctx) launches the part's goroutines and returns; it is idempotent
//     (only the first call starts anything) and returns an error only when the
//     part could not start.
//   - Stop(ctx) stops the part and waits for its goroutines; it is idempotent,
//     returns by the time ctx ends (DESIGN §8.4: shutdown is bounded, also while a
//     dependency is down) and then returns an error wrapping ctx.Err().
//
// Base gives a part started/stopped signals and the idempotence; Go and
// HTTPServer adapt a loop and an *http.Server; Run starts parts in order and
// stops them in reverse order on every exit path.
package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Service is a long-running part: Start launches it, Stop ends it. See the
// package doc for what both guarantee.
type Service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Failer is implemented by a part that can fail on its own after Start (an HTTP
// server whose listener breaks). The channel receives at most one error; Run
// stops everything when it does.
type Failer interface {
	Failed() <-chan error
}

// ErrNotStarted is what Base.Stop's callers see from Started when Stop came first.
var ErrNotStarted = errors.New("service was stopped before it started")

// Base makes Start and Stop idempotent and gives a part its started and stopped
// signals. The zero value is ready; embed it or hold one. It is safe for
// concurrent use.
type Base struct {
	mu       sync.Mutex
	state    int // 0 new, 1 started, 2 stopping/stopped
	startErr error
	started  chan struct{}
	stopped  chan struct{}
	stopErr  error
}

func (b *Base) init() {
	if b.started == nil {
		b.started = make(chan struct{})
		b.stopped = make(chan struct{})
	}
}

// Started is closed once Start has succeeded.
func (b *Base) Started() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	return b.started
}

// Stopped is closed once Stop has finished (the part's goroutines have ended,
// or Stop's context ended first), or at once when Stop came before Start.
func (b *Base) Stopped() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	return b.stopped
}

// Start runs start once; later calls return its result without running it.
// After Stop, Start does nothing and returns nil. The started signal closes when
// start returns nil.
func (b *Base) Start(start func() error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.init()
	switch b.state {
	case 1:
		return b.startErr
	case 2:
		return nil
	}
	b.state = 1
	if b.startErr = start(); b.startErr == nil {
		close(b.started)
	}
	return b.startErr
}

// Stop runs stop once, if Start succeeded, and closes the stopped signal when it
// returns. A concurrent or later call waits for the first to finish, bounded by
// its own ctx, and returns the first call's error (or one wrapping ctx.Err()).
// stop must itself return by the time ctx ends.
func (b *Base) Stop(ctx context.Context, stop func(ctx context.Context) error) error {
	b.mu.Lock()
	b.init()
	switch b.state {
	case 0, 1:
		run := b.state == 1 && b.startErr == nil
		b.state = 2
		stopped := b.stopped
		b.mu.Unlock()
		var err error
		if run {
			err = stop(ctx)
		}
		b.mu.Lock()
		b.stopErr = err
		b.mu.Unlock()
		close(stopped)
		return err
	}
	stopped := b.stopped
	b.mu.Unlock()
	select {
	case <-stopped:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.stopErr
	case <-ctx.Done():
		return fmt.Errorf("still stopping: %w", ctx.Err())
	}
}

// Wait waits for done to close or ctx to end; what is the part's name in the
// error, which wraps ctx.Err(). It is the bounded wait every Stop ends with.
func Wait(ctx context.Context, what string, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s did not stop in time: %w", what, context.Cause(ctx))
	}
}

// WaitGroup is Wait on a sync.WaitGroup. The goroutine it starts to wait ends
// when wg's goroutines end (they were told to stop), not when ctx does.
func WaitGroup(ctx context.Context, what string, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return Wait(ctx, what, done)
}
