// Package pprof is the net/http/pprof handler that service.Pprof serves on its own
// listener (PPROF_ADDR), apart from the API server, so profiles are never
// reachable through the public port and the API's auth and metrics never see them.
package pprof

import (
	"net/http"
	"net/http/pprof"
)

// Handler serves the pprof endpoints under /debug/pprof/ (and nothing else).
// service.Pprof serves it on PPROF_ADDR; no WriteTimeout there, as CPU profiles
// and traces stream for as long as asked.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
