// Package blackhole is a TCP server that accepts connections and never answers: a
// network partition or a frozen server, for tests that a shutdown stays bounded
// while a dependency hangs (DESIGN §8.4).
package blackhole

import (
	"net"
	"testing"
)

// Listen starts a black hole on 127.0.0.1 and returns its address ("host:port").
// It holds every connection open, silently, until the test ends; t.Cleanup closes
// the listener and the connections and waits for its goroutine.
func Listen(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("blackhole: %v", err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range held {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}
