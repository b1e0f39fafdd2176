package app

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":3000" || c.RedisPrefix != "papo:" || c.LeaveGrace != 5*time.Second || c.Heartbeat != 15*time.Second ||
		!c.Limits.Enabled || c.Limits.MessageRate != 5 || c.Limits.MessageBurst != 20 || c.Limits.LoginFailures != 10 ||
		c.Limits.LoginWindow != 15*time.Minute || c.Limits.Registrations != 100 || c.Limits.RegisterWindow != time.Hour ||
		c.Database.Path != "papo.db" || c.Coalesce != 150*time.Millisecond || c.LogLevel != slog.LevelInfo || c.LogJSON {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestLoadConfigNamesTheBadVariable: start-up stops with one line that
// names the variable and what is wrong with it.
func TestLoadConfigNamesTheBadVariable(t *testing.T) {
	cases := map[string]string{
		"PAPO_LEAVE_GRACE":     "5 seconds",
		"PAPO_HEARTBEAT":       "0s",
		"PAPO_COALESCE":        "-100ms",
		"DATABASE_URL":         "postgres://db/papo",
		"REDIS_URL":            "localhost:6379",
		"PAPO_LIMITS":          "maybe",
		"PAPO_MESSAGE_RATE":    "-1",
		"PAPO_MESSAGE_BURST":   "lots",
		"PAPO_TLS_CERT":        "/only/the/cert.pem",
		"PAPO_TRUSTED_PROXIES": "not-an-ip",
		"PAPO_LOG_LEVEL":       "verbose",
		"PAPO_LOG_FORMAT":      "xml",
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := LoadConfig(func(k string) string {
				if k == name {
					return value
				}
				return ""
			})
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Var != name {
				t.Fatalf("err = %v, want one naming %s", err, name)
			}
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), name+": ") {
				t.Fatalf("not one line naming the variable: %q", err)
			}
		})
	}
}

func TestLoadConfigReadsValues(t *testing.T) {
	env := map[string]string{
		"PAPO_ADDR": "127.0.0.1:9000", "DATABASE_URL": "mysql://u:p@db:3306/papo", "REDIS_URL": "redis://r:6379/1",
		"PAPO_LEAVE_GRACE": "1500ms", "PAPO_COALESCE": "0s", "PAPO_LIMITS": "off", "PAPO_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
		"PAPO_LOG_LEVEL": "WARN", "PAPO_LOG_FORMAT": "json",
	}
	c, err := LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.Database.Dialect != "mysql" || c.RedisURL != "redis://r:6379/1" ||
		c.LeaveGrace != 1500*time.Millisecond || c.Coalesce != 0 || c.Limits.Enabled || len(c.Limits.TrustedProxies) != 2 ||
		c.LogLevel != slog.LevelWarn || !c.LogJSON {
		t.Fatalf("config: %+v", c)
	}
}

func TestNormalizeMessage(t *testing.T) {
	cases := []struct {
		in, out string
		ok      bool
	}{
		{"  hi  ", "hi", true},
		{"a\r\nb\rc\nd", "a\nb\nc\nd", true},
		{"tab\tok", "tab\tok", true},
		{"\x00nul", "", false},
		{"bell\a", "", false},
		{"esc\x1b[31m", "", false},
		{"del\x7f", "", false},
		{"c1\u0085x", "", false},
		{"\xff\xfe", "", false},
		{"   \n\t ", "", false},
		{strings.Repeat("é", 2000), strings.Repeat("é", 2000), true},
		{strings.Repeat("é", 2001), "", false},
		{"rtl \u202e zw\u200b e\u0301 👋🏽", "rtl \u202e zw\u200b e\u0301 👋🏽", true},
	}
	for _, tc := range cases {
		out, err := NormalizeMessage(tc.in)
		if (err == nil) != tc.ok || out != tc.out {
			t.Errorf("NormalizeMessage(%q) = %q, %v", tc.in, out, err)
		}
	}
}

func FuzzNormalizeMessage(f *testing.F) {
	for _, s := range []string{"hi", "a\r\n", "\x00", "\u202e", "\xff", " x "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeMessage(in)
		if err != nil {
			return
		}
		again, err := NormalizeMessage(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		if strings.ContainsRune(out, '\r') || out != strings.TrimSpace(out) || out == "" {
			t.Fatalf("%q normalized to %q", in, out)
		}
	})
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"1", "0", "-1", "+5", "abc", "99999999999999999999", " 7 ", "1e3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		id, ok := ParseCursor(raw)
		if ok && id < 0 {
			t.Fatalf("%q parsed to %d", raw, id)
		}
	})
}

func FuzzValidRoom(f *testing.F) {
	for _, s := range []string{"general", "a", "", "A", "a b", strings.Repeat("a", 65), "ü", "../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidRoom(name) && (len(name) > 64 || strings.ContainsAny(name, "/. %?#") || strings.ToLower(name) != name) {
			t.Fatalf("%q accepted", name)
		}
	})
}
