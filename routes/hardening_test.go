package routes

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"papo/app"
	"papo/e2e/client"
	"papo/models"
)

// nastyStrings are stored and echoed byte for byte, or refused where the
// contract says so.
var nastyStrings = []struct {
	text   string
	stored bool
}{
	{"RTL override \u202eevil.exe\u202c", true},
	{"zero\u200bwidth\u200c\u200djoiners\ufeff", true},
	{"combining Z\u0351\u0364\u036b\u0350\u036a\u036b\u0300", true},
	{"4-byte emoji 👩🏽‍💻🧑‍🤝‍🧑🏳️‍🌈 and CJK 𠜎𠜱𠝹", true},
	{"<script>alert(1)</script><img src=x onerror=alert(2)>", true},
	{"'; DROP TABLE messages; --", true},
	{"%s %d %n {{.}} ${x}", true},
	{"line\u2028separator\u2029paragraph", true},
	{"NUL \x00 byte", false},
	{"escape \x1b[2J", false},
	{"bad UTF-8 \xc3\x28", false},
}

func TestNastyStringsRoundTrip(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia := s.user(t, "ana"), s.user(t, "bia")
		wb := watch(t, bia, "general", "")
		wb.untilReady()
		var stored []string
		for _, n := range nastyStrings {
			if !n.stored {
				// As a raw form: JSON encoding would repair bad UTF-8.
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/rooms/general/messages",
					strings.NewReader("message="+url.QueryEscape(n.text)))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, body := request(t, ana.HTTP, req)
				assertError(t, resp, body, 400, "invalid_message")
				continue
			}
			res, err := ana.Post(ctx, "general", n.text)
			if err != nil || res.Message.Message != n.text {
				t.Fatalf("%q: %+v, %v", n.text, res.Message, err)
			}
			got := wb.message(func(m client.Message) bool { return m.Kind == "user" })
			if got.Message != n.text {
				t.Fatalf("stream echoed %q as %q", n.text, got.Message)
			}
			stored = append(stored, n.text)
		}
		page, err := bia.History(ctx, "general", 0, 200)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, m := range page {
			if m.Kind == "user" {
				texts = append(texts, m.Message)
			}
		}
		if !slices.Equal(texts, stored) {
			t.Fatalf("history %q, want %q", texts, stored)
		}
	})
}

// FuzzPostBody: whatever the body and its type, a post answers one of the
// contract's statuses, never a 5xx or a panic.
func FuzzPostBody(f *testing.F) {
	seeds := []struct{ ctype, body string }{
		{"application/json", `{"message":"hi"}`},
		{"application/json", `{"message":1}`},
		{"application/json", `{"message":null}`},
		{"application/json", `[]`},
		{"application/json", `{"message":"\u0000"}`},
		{"application/x-www-form-urlencoded", "message=hi&message=again"},
		{"application/x-www-form-urlencoded", "message=%zz"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\nhi\r\n--x--\r\n"},
		{"multipart/form-data", "garbage"},
		{"text/plain", "message=hi"},
		{"", "message=hi"},
	}
	for _, s := range seeds {
		f.Add(s.ctype, s.body, "general")
	}
	store := modelstestOpen(f, models.SQLite)
	s := newTestServer(f, store)
	ana := s.user(f, "ana")
	f.Fuzz(func(t *testing.T, ctype, body, room string) {
		if !validHeaderValue(ctype) {
			return // no client can send it
		}
		for _, path := range []string{"/rooms/" + urlPathEscape(room) + "/messages", "/rooms/general/typing", "/register", "/login"} {
			req, err := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", ctype)
			resp, raw := request(t, ana.HTTP, req)
			switch resp.StatusCode {
			case 200, 201, 204, 400, 401, 404, 409, 413, 415, 429:
			default:
				t.Fatalf("%s %q %q: %d %s", path, ctype, body, resp.StatusCode, raw)
			}
			if resp.StatusCode >= 400 && !strings.Contains(raw, `"error"`) {
				t.Fatalf("%s: %d without the error shape: %q", path, resp.StatusCode, raw)
			}
		}
	})
}

// validHeaderValue is what net/http's client accepts in a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func urlPathEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

// FuzzStreamCursor: no Last-Event-ID, room name or cursor breaks a stream:
// it answers 200 and reaches ready, or 400 for a bad room.
func FuzzStreamCursor(f *testing.F) {
	for _, c := range []string{"", "0", "-1", "1", "abc", "99999999999999999999999", "1\x00", "\u202e1", " 5 "} {
		f.Add("general", c)
	}
	f.Add("Bad Room", "1")
	store := modelstestOpen(f, models.SQLite)
	s := newTestServer(f, store)
	ana := s.user(f, "ana")
	if _, err := ana.Post(context.Background(), "general", "something to replay"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, room, cursor string) {
		req, err := http.NewRequest(http.MethodGet, s.URL+"/rooms/"+urlPathEscape(room)+"/events", nil)
		if err != nil {
			return
		}
		if !validHeaderValue(cursor) || len(cursor) > 4096 {
			req.URL.RawQuery = "last_event_id=" + urlPathEscape(cursor)
		} else {
			req.Header.Set("Last-Event-ID", cursor)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := ana.HTTP.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == 400 && !app.ValidRoom(room) {
			return
		}
		if resp.StatusCode != 200 {
			raw, _ := io.ReadAll(resp.Body)
			t.Fatalf("room %q cursor %q: %d %s", room, cursor, resp.StatusCode, raw)
		}
		p := client.NewParser(resp.Body)
		for {
			ev, err := p.Next()
			if err != nil {
				t.Fatalf("room %q cursor %q: %v before ready", room, cursor, err)
			}
			if ev.Type == "ready" {
				return
			}
		}
	})
}

// TestUnknownUserLoginTakesAsLongAsAWrongPassword: both run one bcrypt
// comparison, so the answer time does not tell which names exist. Medians
// of interleaved runs, compared with a wide margin, keep this steady on a
// busy machine.
func TestUnknownUserLoginTakesAsLongAsAWrongPassword(t *testing.T) {
	store := modelstestOpen(t, models.SQLite)
	s := newTestServer(t, store, func(_ *app.Config, o *app.Options) { o.BcryptCost = 10 })
	s.user(t, "ana")
	ctx := ctxT(t)
	timeLogin := func(name string) time.Duration {
		start := time.Now()
		_, err := s.client().Login(ctx, name, "wrong password")
		if status(err) != 401 {
			t.Fatalf("login %s: %v", name, err)
		}
		return time.Since(start)
	}
	var known, unknown []time.Duration
	for i := 0; i < 7; i++ {
		known = append(known, timeLogin("ana"))
		unknown = append(unknown, timeLogin("nobody"))
	}
	slices.Sort(known)
	slices.Sort(unknown)
	k, u := known[3], unknown[3]
	t.Logf("median login: wrong password %v, unknown user %v", k, u)
	if u < k/3 || u > k*3 {
		t.Fatalf("an unknown user takes %v, a wrong password %v: the difference tells names apart", u, k)
	}
}

func TestClientAddressTrustsOnlyConfiguredProxies(t *testing.T) {
	trusted := mustCIDRs(t, "10.0.0.0/8")
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.7:5555", "", "203.0.113.7"},
		{"203.0.113.7:5555", "198.51.100.1", "203.0.113.7"}, // not a proxy: XFF ignored
		{"10.1.2.3:5555", "198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:5555", "198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"10.1.2.3:5555", "spoofed, 198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:5555", "", "10.1.2.3"},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientAddr(r, trusted); got != tc.want {
			t.Errorf("remote %s XFF %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func mustCIDRs(t testing.TB, text string) []*net.IPNet {
	t.Helper()
	c, err := app.LoadConfig(func(k string) string {
		if k == "PAPO_TRUSTED_PROXIES" {
			return text
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.Limits.TrustedProxies
}

func TestRateLimits(t *testing.T) {
	s := newTestServer(t, storeSQLite(t), withLimits, func(c *app.Config, _ *app.Options) {
		c.Limits.MessageRate, c.Limits.MessageBurst = 1, 3
		c.Limits.StreamsPerUser = 2
		c.Limits.Registrations, c.Limits.RegisterWindow = 4, time.Hour
	})
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	for i := 0; i < 3; i++ {
		if _, err := ana.Post(ctx, "general", "burst"); err != nil {
			t.Fatalf("post %d of the burst: %v", i+1, err)
		}
	}
	_, err := ana.Post(ctx, "general", "one too many")
	if status(err) != 429 || code(err) != "too_many_messages" || retryAfter(err) == "" {
		t.Fatalf("past the burst: %v (Retry-After %q)", err, retryAfter(err))
	}
	// Streams: two per user here; the third is refused.
	watch(t, ana, "general", "").untilReady()
	watch(t, ana, "random", "").untilReady()
	if _, err := ana.Open(ctx, "third", ""); status(err) != 429 || code(err) != "too_many_streams" {
		t.Fatalf("third stream: %v", err)
	}
	// Registrations per address: ana was the first of four.
	for i := 0; i < 3; i++ {
		s.user(t, "extra"+string(rune('a'+i)))
	}
	if _, err := s.client().Register(ctx, "onemore", "correct horse"); status(err) != 429 || code(err) != "too_many_registrations" {
		t.Fatalf("fifth registration: %v", err)
	}
	var posted int64
	s.Store.DB().Model(&models.Message{}).Where("kind = ?", models.KindUser).Count(&posted)
	if posted != 3 {
		t.Fatalf("%d user messages stored, want 3", posted)
	}
}

func TestMetricsExposeTheCounters(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	watch(t, ana, "general", "").untilReady()
	if _, err := ana.Post(ctx, "general", "counted"); err != nil {
		t.Fatal(err)
	}
	// Made-up methods share one series rather than adding one each.
	for _, method := range []string{"BREW", "WHEN"} {
		req, _ := http.NewRequest(method, s.URL+"/me", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"papo_streams_open 1", "papo_messages_stored_total", "papo_events_sent_total", "papo_events_dropped_total 0",
		`papo_http_request_duration_seconds_bucket{method="POST",route="/rooms/:room/messages",status="201"`,
		`papo_http_request_duration_seconds_count{method="other",route="unmatched",status="404"} 2`,
		"papo_database_errors_total 0",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// One instance, no Redis: no Redis gauge that would read as down.
	for _, unwanted := range []string{`method="BREW"`, `method="WHEN"`, "papo_redis_up"} {
		if bytes.Contains(body, []byte(unwanted)) {
			t.Errorf("/metrics has a series for %s", unwanted)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the answer")
	}
}
