package routes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"

	"papo/e2e/client"
	"papo/models"
)

func TestAccountLifecycle(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		c := s.client()

		u, err := c.Register(ctx, "Ana", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if u.ID == 0 || u.Username != "Ana" || u.MessageCount != 0 || u.CreatedAt.IsZero() {
			t.Fatalf("registered user = %+v", u)
		}
		first := sessionCookieOf(t, c, s.URL)
		if !first.HttpOnly || first.SameSite != http.SameSiteLaxMode || first.Secure {
			t.Fatalf("cookie flags: HttpOnly=%v SameSite=%v Secure=%v", first.HttpOnly, first.SameSite, first.Secure)
		}
		me, err := c.Me(ctx)
		if err != nil || me.ID != u.ID {
			t.Fatalf("/me = %+v, %v", me, err)
		}

		if err := c.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Me(ctx); status(err) != 401 {
			t.Fatalf("/me after logout: %v, want 401", err)
		}
		// The old cookie, replayed, is dead: the session was deleted.
		replay := s.client()
		setCookie(t, replay, s.URL, first)
		if _, err := replay.Me(ctx); status(err) != 401 {
			t.Fatalf("/me with the logged-out cookie: %v, want 401", err)
		}

		// Login with another case of the name; a new session id.
		if _, err := c.Login(ctx, "ana", "correct horse"); err != nil {
			t.Fatal(err)
		}
		second := sessionCookieOf(t, c, s.URL)
		if second.Value == first.Value {
			t.Fatal("login reused the session cookie")
		}
		if _, err := c.Me(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLoginRotatesSession: a session id planted before login (fixation) is
// not the one logged in.
func TestLoginRotatesSession(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	s.user(t, "bia")
	victim := s.client()
	// The attacker gets a session and plants its cookie in the victim.
	attacker := s.user(t, "eve")
	planted := sessionCookieOf(t, attacker, s.URL)
	setCookie(t, victim, s.URL, planted)
	if _, err := victim.Login(ctx, "bia", "correct horse"); err != nil {
		t.Fatal(err)
	}
	after := sessionCookieOf(t, victim, s.URL)
	if after.Value == planted.Value {
		t.Fatal("login kept the planted session")
	}
	// The planted id no longer names any session.
	if _, err := attacker.Me(ctx); status(err) != 401 {
		t.Fatalf("planted session after the victim's login: %v, want 401", err)
	}
	me, err := victim.Me(ctx)
	if err != nil || me.Username != "bia" {
		t.Fatalf("victim /me = %+v, %v", me, err)
	}
}

func TestRegisterRejectsBadInput(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		s.user(t, "taken")
		long := strings.Repeat("a", 33)
		cases := []struct {
			name   string
			ctype  string
			body   string
			status int
			code   string
		}{
			{"missing username", "application/json", `{"password":"correct horse"}`, 400, "invalid_username"},
			{"missing password", "application/json", `{"username":"ana"}`, 400, "invalid_password"},
			{"empty form", "application/x-www-form-urlencoded", ``, 400, "invalid_username"},
			{"username a number", "application/json", `{"username":123,"password":"correct horse"}`, 400, "invalid_username"},
			{"password an array", "application/json", `{"username":"ana","password":["x"]}`, 400, "invalid_password"},
			{"not an object", "application/json", `["ana"]`, 400, "invalid_json"},
			{"broken json", "application/json", `{"username":`, 400, "invalid_json"},
			{"name too short", "application/json", `{"username":"ab","password":"correct horse"}`, 400, "invalid_username"},
			{"name too long", "application/json", `{"username":"` + long + `","password":"correct horse"}`, 400, "invalid_username"},
			{"name with a space", "application/json", `{"username":"a na","password":"correct horse"}`, 400, "invalid_username"},
			{"name with an accent", "application/json", `{"username":"anã","password":"correct horse"}`, 400, "invalid_username"},
			{"password too short", "application/json", `{"username":"ana","password":"seven77"}`, 400, "invalid_password"},
			{"password too long", "application/json", `{"username":"ana","password":"` + strings.Repeat("p", 257) + `"}`, 400, "invalid_password"},
			{"invalid UTF-8", "application/x-www-form-urlencoded", "username=ana&password=correct%ff%fehorse", 400, "invalid_password"},
			{"duplicate in another case", "application/json", `{"username":"TAKEN","password":"correct horse"}`, 409, "username_taken"},
			{"plain text body", "text/plain", `username=ana`, 415, "unsupported_media_type"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := countUsers(t, store)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/register", strings.NewReader(tc.body))
				req.Header.Set("Content-Type", tc.ctype)
				resp, body := request(t, nil, req)
				assertError(t, resp, body, tc.status, tc.code)
				if resp.Header.Get("Set-Cookie") != "" {
					t.Error("a failed registration set a cookie")
				}
				if after := countUsers(t, store); after != before {
					t.Errorf("users went from %d to %d", before, after)
				}
			})
		}
	})
}

func TestPasswordOf256CharactersIsWholeCounted(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	pw := strings.Repeat("é", 256) // 512 bytes: far past bcrypt's 72
	c := s.client()
	if _, err := c.Register(ctx, "long", pw); err != nil {
		t.Fatal(err)
	}
	// The same first 72 bytes and a different tail must not log in.
	if _, err := s.client().Login(ctx, "long", strings.Repeat("é", 255)+"e"); status(err) != 401 {
		t.Fatalf("login with another tail: %v, want 401", err)
	}
	if _, err := s.client().Login(ctx, "long", pw); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRegistrationOfOneName(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		names := []string{"Zed", "zed", "ZED", "zEd", "zeD", "Zed", "zed", "ZeD"}
		var wg sync.WaitGroup
		statuses := make([]int, len(names))
		for i, n := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.client().Register(ctx, n, "correct horse")
				statuses[i] = status(err)
			}()
		}
		wg.Wait()
		won, lost := 0, 0
		for _, st := range statuses {
			switch st {
			case 201, 0:
				won++
			case 409:
				lost++
			default:
				t.Errorf("unexpected status %d", st)
			}
		}
		if won != 1 || lost != len(names)-1 {
			t.Fatalf("won=%d lost=%d, want 1 and %d", won, lost, len(names)-1)
		}
	})
}

func TestLogin(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store, withLimits)
		ctx := ctxT(t)
		s.user(t, "carla")
		if _, err := s.client().Login(ctx, "carla", "wrong password"); status(err) != 401 || code(err) != "invalid_credentials" {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := s.client().Login(ctx, "nobody", "wrong password"); status(err) != 401 || code(err) != "invalid_credentials" {
			t.Fatalf("unknown user: %v", err)
		}
		if _, err := s.client().Login(ctx, "", ""); status(err) != 400 {
			t.Fatalf("empty login: %v", err)
		}
		// 10 failures per name in the window, then 429 with Retry-After,
		// even with the right password.
		for i := 0; i < 9; i++ {
			if _, err := s.client().Login(ctx, "CARLA", "wrong password"); status(err) != 401 {
				t.Fatalf("failure %d: %v", i+2, err)
			}
		}
		_, err := s.client().Login(ctx, "carla", "correct horse")
		var apiErr *client.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 429 || apiErr.RetryAfter == "" || apiErr.Code != "too_many_login_failures" {
			t.Fatalf("after 10 failures: %v (Retry-After %q)", err, retryAfter(err))
		}
	})
}

func TestCrossOriginPostIsRefused(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	cases := []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site other origin", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"foreign Origin only", map[string]string{"Origin": "https://evil.example"}, 403},
		{"same-origin fetch", map[string]string{"Sec-Fetch-Site": "same-origin"}, 201},
		{"curl: no headers", nil, 201},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"username":"user` + string(rune('a'+i)) + `x","password":"correct horse"}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/register", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, raw := request(t, nil, req)
			if tc.status == 403 {
				assertError(t, resp, raw, 403, "cross_origin")
			} else if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, raw)
			}
		})
	}
	// Room posts are guarded too.
	c := s.user(t, "dora")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/rooms/general/messages", strings.NewReader("message=hi"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, raw := request(t, c.HTTP, req)
	assertError(t, resp, raw, 403, "cross_origin")
}

func TestBodyLimitsAndUnknownRoutes(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	c := s.user(t, "erin")
	big := `{"message":"` + strings.Repeat("x", 70<<10) + `"}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/rooms/general/messages", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	resp, raw := request(t, c.HTTP, req)
	assertError(t, resp, raw, 413, "body_too_large")

	// Without Content-Length (chunked), the limit still holds.
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/register", struct{ *strings.Reader }{strings.NewReader("username=" + strings.Repeat("a", 70<<10) + "&password=x")})
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, raw = request(t, nil, req)
	assertError(t, resp, raw, 413, "body_too_large")

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/no/such/route", nil)
	resp, raw = request(t, nil, req)
	assertError(t, resp, raw, 404, "not_found")

	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/me", nil)
	resp, raw = request(t, nil, req)
	assertError(t, resp, raw, 401, "unauthorized")
	if n := countMessages(t, s.Store); n != 0 {
		t.Fatalf("%d messages stored by refused requests", n)
	}
}

func TestBrowserFormPosts(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := func(path string, v url.Values) (*http.Response, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		return request(t, browser, req)
	}
	resp, _ := form("/register", url.Values{"username": {"fern"}, "password": {"correct horse"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("register: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = form("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp, body := form("/login", url.Values{"username": {"fern"}, "password": {"wrong password"}})
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("failed login: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "Wrong username or password.") {
		t.Fatalf("the page does not show the error:\n%s", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP = %q", csp)
	}
	resp, _ = form("/login", url.Values{"username": {"fern"}, "password": {"correct horse"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
	resp, _ = request(t, browser, req)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/r/general" {
		t.Fatalf("home when logged in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestSessionSurvivesRestart: the secret and the session live in the
// database, so a new process on it accepts the old cookie.
func TestSessionSurvivesRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		first := newTestServer(t, store)
		c := first.user(t, "gabi")
		cookie := sessionCookieOf(t, c, first.URL)
		first.Close()

		second := newTestServer(t, store)
		again := second.client()
		setCookie(t, again, second.URL, cookie)
		me, err := again.Me(ctxT(t))
		if err != nil || me.Username != "gabi" {
			t.Fatalf("/me after restart = %+v, %v", me, err)
		}
	})
}

func TestHealthAndReadiness(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	// With the database closed, readiness fails and posts answer 503.
	c := s.user(t, "hana")
	sqlDB, _ := s.Store.DB().DB()
	_ = sqlDB.Close()
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/readyz with the database closed: %d", resp.StatusCode)
	}
	if _, err := c.Post(ctxT(t), "general", "hello"); status(err) != 503 {
		t.Fatalf("post with the database closed: %v, want 503", err)
	}
}

// A database that answers pings but refuses writes (here SQLite told to
// take none; in production a full disk, a file gone read-only, or a
// MariaDB demoted to a read-only replica) makes the instance not ready:
// posts answer 503 with nothing stored, and /readyz says why. Once the
// database takes writes again, /readyz says so by itself, with no post
// needed to find out, and posting works.
func TestReadinessFollowsWrites(t *testing.T) {
	store := storeSQLite(t)
	s := newTestServer(t, store)
	c := s.user(t, "ines")
	if _, err := c.Post(ctxT(t), "general", "before"); err != nil {
		t.Fatal(err)
	}
	sqlDB, err := store.DB().DB()
	if err != nil {
		t.Fatal(err)
	}
	// One connection, so the pragma holds for every statement.
	sqlDB.SetMaxOpenConns(1)
	queryOnly := func(on int) {
		t.Helper()
		if _, err := sqlDB.Exec(fmt.Sprintf("PRAGMA query_only = %d", on)); err != nil {
			t.Fatal(err)
		}
	}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error.Code + ": " + body.Error.Message
	}

	queryOnly(1)
	if code, _ := readyz(); code != 200 {
		t.Fatalf("/readyz before any write failed: %d, want 200 (no write has been refused yet)", code)
	}
	if _, err := c.Post(ctxT(t), "general", "refused"); status(err) != 503 {
		t.Fatalf("post while writes fail: %v, want 503", err)
	}
	code, why := readyz()
	if code != 503 || !strings.Contains(why, "not_ready") || !strings.Contains(why, "readonly") {
		t.Fatalf("/readyz while writes fail: %d %q, want 503 not_ready naming the refusal", code, why)
	}
	if code, _ := readyz(); code != 503 {
		t.Fatalf("/readyz asked again while writes fail: %d, want 503", code)
	}

	queryOnly(0)
	if code, why := readyz(); code != 200 {
		t.Fatalf("/readyz once writes work again, before any post: %d %q, want 200", code, why)
	}
	if _, err := c.Post(ctxT(t), "general", "after"); err != nil {
		t.Fatalf("post once writes work again: %v", err)
	}
	history, err := c.History(ctxT(t), "general", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range history {
		if m.Kind == "user" {
			texts = append(texts, m.Message)
		}
	}
	if got := strings.Join(texts, ","); got != "before,after" {
		t.Fatalf("stored messages: %s, want before,after (nothing of the refused post)", got)
	}
}

// --- helpers

func storeSQLite(t testing.TB) *models.Store {
	t.Helper()
	return modelstestOpen(t, models.SQLite)
}

func status(err error) int {
	var e *client.APIError
	if errors.As(err, &e) {
		return e.Status
	}
	if err != nil {
		return -1
	}
	return 0
}

func code(err error) string {
	var e *client.APIError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func retryAfter(err error) string {
	var e *client.APIError
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return ""
}

func assertError(t testing.TB, resp *http.Response, body string, wantStatus int, wantCode string) {
	t.Helper()
	if resp.StatusCode != wantStatus {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, wantStatus, body)
	}
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("body is not the error shape: %q", body)
	}
	if e.Error.Code != wantCode || e.Error.Message == "" {
		t.Fatalf("error = %+v, want code %q and a message", e.Error, wantCode)
	}
}

// sessionCookieOf is the last session cookie the server set on c, with
// the flags of its Set-Cookie (a cookie jar forgets those).
func sessionCookieOf(t testing.TB, c *client.Client, _ string) *http.Cookie {
	t.Helper()
	rec, ok := c.HTTP.Transport.(*cookieRecorder)
	if !ok {
		t.Fatal("client was not made by the test server")
	}
	ck := rec.last(sessionCookie)
	if ck == nil {
		t.Fatal("no session cookie was set")
	}
	return ck
}

func setCookie(t testing.TB, c *client.Client, base string, ck *http.Cookie) {
	t.Helper()
	u, _ := url.Parse(base)
	c.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/"}})
}

func countUsers(t testing.TB, store *models.Store) int64 {
	t.Helper()
	n, err := store.CountUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func countMessages(t testing.TB, store *models.Store) int64 {
	t.Helper()
	var n int64
	if err := store.DB().Model(&models.Message{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}
