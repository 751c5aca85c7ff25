package cams

import (
	"strconv"
	"testing"
	"time"

	"github.com/msgrouter/msgrouter/internal/cams/mapping"
)

// fullClient returns a client whose cache holds DefaultCacheMaxEntries live
// mappings, the state in which the old map-based cache scanned every entry under
// its lock on each store.
func fullClient(b *testing.B) *Client {
	b.Helper()
	c, err := NewClient(ClientConfig{BaseURL: "http://127.0.0.1:1", CacheTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	m := &mapping.Mapping{InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive}
	for i := range DefaultCacheMaxEntries {
		m.AIAgentAddress = "agent-" + strconv.Itoa(i)
		c.store(m.AIAgentAddress, m)
	}
	return c
}

// BenchmarkCacheStoreFull stores new agents in a full cache (each evicts one):
// constant time, no scan of the entries (issue 10).
func BenchmarkCacheStoreFull(b *testing.B) {
	c := fullClient(b)
	m := &mapping.Mapping{InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.AIAgentAddress = "new-" + strconv.Itoa(i)
		c.store(m.AIAgentAddress, m)
	}
}

// BenchmarkCacheHitFullParallel reads cached agents from a full cache while other
// goroutines store new ones: hits are not held up behind stores.
func BenchmarkCacheHitFullParallel(b *testing.B) {
	c := fullClient(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := &mapping.Mapping{InboxDestinationType: mapping.TypeNATSSubject, InboxName: "agents.x", Status: mapping.StatusActive}
		for i := 0; pb.Next(); i++ {
			if i%16 == 0 {
				m.AIAgentAddress = "new-" + strconv.Itoa(i)
				c.store(m.AIAgentAddress, m)
				continue
			}
			c.cached("agent-" + strconv.Itoa(DefaultCacheMaxEntries-1-i%1000))
		}
	})
}
