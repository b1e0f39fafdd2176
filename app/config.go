// Package app is papo's application layer: configuration, the services the
// HTTP routes call (accounts, sending, history, presence, typing, commands)
// and the hub that fans events out to streams through a Broker. It knows
// nothing of HTTP.
package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"papo/models"
)

// Config is every setting papo takes from its environment.
type Config struct {
	Addr          string
	Database      models.Target
	DatabaseURL   string
	RedisURL      string
	RedisPrefix   string
	SessionSecret string
	LeaveGrace    time.Duration
	Heartbeat     time.Duration
	Coalesce      time.Duration // see HubOptions.Coalesce; 0: every message at once
	TLSCert       string
	TLSKey        string
	PprofAddr     string // where to serve net/http/pprof; empty: nowhere
	LogLevel      slog.Level
	LogJSON       bool // one JSON object a line rather than key=value text
	Limits        Limits
}

// Limits are the abuse limits; Enabled=false (PAPO_LIMITS=off) turns every
// rate and stream limit off, for load tests.
type Limits struct {
	Enabled            bool
	MessageRate        float64       // messages per second per user
	MessageBurst       int           // burst allowance
	LoginFailures      int           // failed logins per username per window
	LoginWindow        time.Duration // the window for LoginFailures
	Registrations      int           // registrations per client address per window
	RegisterWindow     time.Duration
	StreamsPerUser     int
	StreamsPerAddress  int
	TypingRate         float64 // typing POSTs per second per user
	TrustedProxies     []*net.IPNet
	TrustedProxiesText string
}

// ConfigError names the variable that is wrong and what is wrong with it.
type ConfigError struct {
	Var string
	Err error
}

func (e *ConfigError) Error() string { return e.Var + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads the configuration through getenv (os.Getenv, with .env
// values merged in by the caller). The first bad value stops it.
func LoadConfig(getenv func(string) string) (Config, error) {
	r := envReader{getenv: getenv}
	c := Config{
		Addr:          r.str("PAPO_ADDR", ":3000"),
		DatabaseURL:   r.str("DATABASE_URL", ""),
		RedisURL:      r.str("REDIS_URL", ""),
		RedisPrefix:   r.str("PAPO_REDIS_PREFIX", "papo:"),
		SessionSecret: r.str("SESSION_SECRET", ""),
		LeaveGrace:    r.duration("PAPO_LEAVE_GRACE", 5*time.Second),
		Heartbeat:     r.positiveDuration("PAPO_HEARTBEAT", 15*time.Second),
		Coalesce:      r.duration("PAPO_COALESCE", DefaultCoalesce),
		TLSCert:       r.str("PAPO_TLS_CERT", ""),
		TLSKey:        r.str("PAPO_TLS_KEY", ""),
		PprofAddr:     r.str("PAPO_PPROF_ADDR", ""),
		LogLevel:      r.logLevel("PAPO_LOG_LEVEL"),
		LogJSON:       r.choice("PAPO_LOG_FORMAT", "text", "json") == "json",
		Limits: Limits{
			Enabled:            r.onOff("PAPO_LIMITS", true),
			MessageRate:        r.float("PAPO_MESSAGE_RATE", 5),
			MessageBurst:       r.integer("PAPO_MESSAGE_BURST", 20),
			LoginFailures:      r.integer("PAPO_LOGIN_FAILURES", 10),
			LoginWindow:        r.positiveDuration("PAPO_LOGIN_WINDOW", 15*time.Minute),
			Registrations:      r.integer("PAPO_REGISTRATIONS", 100),
			RegisterWindow:     r.positiveDuration("PAPO_REGISTER_WINDOW", time.Hour),
			StreamsPerUser:     r.integer("PAPO_STREAMS_PER_USER", 20),
			StreamsPerAddress:  r.integer("PAPO_STREAMS_PER_ADDRESS", 100),
			TypingRate:         r.float("PAPO_TYPING_RATE", 2),
			TrustedProxiesText: r.str("PAPO_TRUSTED_PROXIES", ""),
		},
	}
	if r.err != nil {
		return Config{}, r.err
	}
	db, err := models.ParseDatabaseURL(c.DatabaseURL)
	if err != nil {
		return Config{}, &ConfigError{"DATABASE_URL", err}
	}
	c.Database = db
	if c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://") {
		return Config{}, &ConfigError{"REDIS_URL", errors.New("must start with redis:// or rediss://")}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return Config{}, &ConfigError{"PAPO_TLS_CERT", errors.New("PAPO_TLS_CERT and PAPO_TLS_KEY must be set together")}
	}
	if c.Limits.TrustedProxies, err = parseCIDRs(c.Limits.TrustedProxiesText); err != nil {
		return Config{}, &ConfigError{"PAPO_TRUSTED_PROXIES", err}
	}
	return c, nil
}

func parseCIDRs(text string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, f := range strings.FieldsFunc(text, func(r rune) bool { return r == ',' || r == ' ' }) {
		if !strings.Contains(f, "/") {
			if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
				f += "/32"
			} else {
				f += "/128"
			}
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", f)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// envReader keeps the first error, so LoadConfig reads as a plain list.
type envReader struct {
	getenv func(string) string
	err    error
}

func (r *envReader) fail(name string, err error) {
	if r.err == nil {
		r.err = &ConfigError{name, err}
	}
}

func (r *envReader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *envReader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, fmt.Errorf("%q is not a Go duration such as 5s or 1m30s", v))
		return def
	}
	if d < 0 {
		r.fail(name, fmt.Errorf("%q is negative", v))
	}
	return d
}

func (r *envReader) positiveDuration(name string, def time.Duration) time.Duration {
	d := r.duration(name, def)
	if d == 0 {
		r.fail(name, errors.New("must be more than zero"))
	}
	return d
}

func (r *envReader) integer(name string, def int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		r.fail(name, fmt.Errorf("%q is not a whole number of zero or more", v))
		return def
	}
	return n
}

func (r *envReader) float(name string, def float64) float64 {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 {
		r.fail(name, fmt.Errorf("%q is not a number above zero", v))
		return def
	}
	return f
}

// logLevel reads debug, info (the default), warn or error. At warn, the
// access log's line per request goes: a busy server's largest share of
// logging.
func (r *envReader) logLevel(name string) slog.Level {
	switch v := strings.ToLower(r.str(name, "info")); v {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		r.fail(name, fmt.Errorf("%q is not one of debug, info, warn, error", v))
		return slog.LevelInfo
	}
}

// choice reads one of options, the first being the default.
func (r *envReader) choice(name string, options ...string) string {
	v := strings.ToLower(r.str(name, options[0]))
	for _, o := range options {
		if v == o {
			return v
		}
	}
	r.fail(name, fmt.Errorf("%q is not one of %s", v, strings.Join(options, ", ")))
	return options[0]
}

func (r *envReader) onOff(name string, def bool) bool {
	switch strings.ToLower(r.str(name, "")) {
	case "":
		return def
	case "on", "true", "1", "yes":
		return true
	case "off", "false", "0", "no":
		return false
	default:
		r.fail(name, fmt.Errorf("%q is neither on nor off", r.getenv(name)))
		return def
	}
}
