package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves the runtime profiles (net/http/pprof) on addr, taken
// from PAPO_PPROF_ADDR, for profiling under load. It is off unless set, and
// listens apart from the public address: profiles reveal internals and a
// CPU profile costs CPU, so bind it to loopback (127.0.0.1:6060).
func startPprof(log *slog.Logger, addr string) {
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			log.Warn("PAPO_PPROF_ADDR is not a loopback address: the profiles are open to the network", "addr", addr)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		log.Info("pprof listening", "addr", addr)
		if err := srv.ListenAndServe(); err != nil {
			log.Error("PAPO_PPROF_ADDR: pprof listener stopped", "err", err)
		}
	}()
}
