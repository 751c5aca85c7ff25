package service

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"
)

// Part is a Service with the name its log lines and errors use.
type Part struct {
	Name    string
	Service Service
}

// Group starts parts in order and stops the started ones in reverse order.
// The zero value is not usable: build it with NewGroup.
type Group struct {
	log     *slog.Logger
	started []Part
}

// NewGroup returns an empty Group logging to log.
func NewGroup(log *slog.Logger) *Group { return &Group{log: log} }

// Start starts each part in order. When one fails, Start stops the parts
// already started (in reverse order, within stopTimeout) and returns the error,
// naming the part. nil Services are skipped.
func (g *Group) Start(ctx context.Context, stopTimeout time.Duration, parts ...Part) error {
	for _, p := range parts {
		if isNil(p.Service) {
			continue
		}
		if err := p.Service.Start(ctx); err != nil {
			g.StopWithin(ctx, stopTimeout)
			return fmt.Errorf("error starting %s: %w", p.Name, err)
		}
		g.started = append(g.started, p)
	}
	return nil
}

// Stop stops the started parts in reverse start order, all within ctx. A part
// that does not stop in time is logged and left behind: what it held comes back
// (stream messages after AckWait, outbox rows after their lease; DESIGN §8.4), so
// Stop goes on with the next. It returns the names of the parts that did not stop
// cleanly. Calling it again does nothing.
func (g *Group) Stop(ctx context.Context) (failed []string) {
	for i := len(g.started) - 1; i >= 0; i-- {
		p := g.started[i]
		if err := p.Service.Stop(ctx); err != nil {
			failed = append(failed, p.Name)
			g.log.WarnContext(ctx, "shutdown: "+p.Name+" did not stop cleanly (its work comes back to another replica or a restart)",
				slog.Any("error", err))
		}
	}
	g.started = nil
	return failed
}

// Failed returns a channel receiving the first error of any started part that
// implements Failer, wrapped with the part's name. The goroutines it starts end
// with ctx.
func (g *Group) Failed(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	for _, p := range g.started {
		f, ok := p.Service.(Failer)
		if !ok {
			continue
		}
		go func() {
			select {
			case err := <-f.Failed():
				select {
				case out <- fmt.Errorf("%s failed: %w", p.Name, err):
				default:
				}
			case <-ctx.Done():
			}
		}()
	}
	return out
}

// Run starts parts in order, runs until ctx ends or a part fails (Failer), then
// stops them in reverse order within stopTimeout. It returns the start error, or
// the failure that stopped it, or nil after ctx ended; parts that did not stop in
// time are logged, not returned (their work comes back, DESIGN §8.4). ready, if
// not nil, is called once everything has started.
func Run(ctx context.Context, log *slog.Logger, stopTimeout time.Duration, ready func(), parts ...Part) error {
	return NewGroup(log).Run(ctx, stopTimeout, ready, parts...)
}

// Run is the package's Run on a Group that may already hold started parts
// (started before the rest could be built); they are stopped last, with the rest.
func (g *Group) Run(ctx context.Context, stopTimeout time.Duration, ready func(), parts ...Part) error {
	if err := g.Start(ctx, stopTimeout, parts...); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	failed := g.Failed(wctx)
	if ready != nil {
		ready()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		g.log.ErrorContext(ctx, "stopping", slog.Any("error", err))
	}
	cancel()
	g.log.InfoContext(ctx, "stopping", slog.Duration("shutdown_timeout", stopTimeout))
	start := time.Now()
	g.StopWithin(ctx, stopTimeout)
	g.log.InfoContext(ctx, "stopped", slog.Duration("took", time.Since(start)))
	return err
}

// StopWithin is Stop bounded by timeout, on a context that keeps ctx's values but
// not its cancellation: for a defer on the paths that return before Run.
func (g *Group) StopWithin(ctx context.Context, timeout time.Duration) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	g.Stop(sctx)
}

func isNil(s Service) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
