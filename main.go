// Command papo is a chat server: clients post over plain HTTP and receive
// every room event over one Server-Sent Events stream.
package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/joho/godotenv"

	"papo/app"
	"papo/models"
	"papo/routes"
)

// assets are the pages and their scripts, built into the binary so that it
// runs from any directory.
//
//go:embed templates static
var assets embed.FS

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "papo:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// A .env file fills in what the environment leaves unset.
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf(".env: %w", err)
	}
	cfg, err := app.LoadConfig(os.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(os.Stderr, cfg)
	startPprof(log, cfg.PprofAddr)

	store, err := models.Open(ctx, cfg.Database, log)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: cannot open the %s database: %w", cfg.Database.Dialect, err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("DATABASE_URL: migrating the schema: %w", err)
	}

	a, err := app.New(ctx, cfg, store, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	handler, err := routes.New(ctx, a, assets)
	if err != nil {
		return err
	}

	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // streams clear it for themselves
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := routes.Listen(ctx, cfg.Addr)
	if err != nil {
		return fmt.Errorf("PAPO_ADDR: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() {
		log.Info("papo listening", "addr", cfg.Addr, "database", cfg.Database.Dialect, "tls", cfg.TLSCert != "", "redis", cfg.RedisURL != "")
		if cfg.TLSCert != "" {
			// ServeTLS negotiates HTTP/2 by ALPN.
			serveErr <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			serveErr <- srv.Serve(ln)
		}
	}()

	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("PAPO_ADDR: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	stop()
	log.Info("shutting down: ending streams, finishing stores in flight")
	// Streams never go idle by themselves: end them first, so Shutdown
	// only waits for ordinary requests (and the stores they await).
	a.StopStreams()
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish cleanly", "err", err)
	}
	// Streams over HTTP/1 own their connections; wait for their ends (and
	// their presence and subscription clean-up) before closing the app.
	if err := handler.Drain(sctx); err != nil {
		log.Warn("streams did not all end in time", "err", err)
	}
	a.Close()
	log.Info("stopped")
	return nil
}

// newLogger writes papo's log to w from cfg.LogLevel up (PAPO_LOG_LEVEL),
// as key=value text or, for log shippers, one JSON object a line
// (PAPO_LOG_FORMAT=json).
func newLogger(w io.Writer, cfg app.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

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
