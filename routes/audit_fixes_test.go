package routes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"papo/e2e/client"
	"papo/models"
)

// TestRegisterIsUndoneWhenItsSessionFails: a registration whose session
// cannot be started answers 503 "nothing was stored", and so it must be:
// the same name registers once the database is back.
func TestRegisterIsUndoneWhenItsSessionFails(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		cases := []struct {
			name     string
			event    string // the sessions statement refused: the new row's INSERT, or the old row's DELETE (rotation)
			loggedIn bool   // the client already has a session, which registering rotates away
			html     bool   // a browser's form post
		}{
			{"new session not stored", "INSERT", false, false},
			{"new session not stored, browser form", "INSERT", false, true},
			{"old session not deleted", "DELETE", true, false},
		}
		s := newTestServer(t, store)
		ctx := ctxT(t)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				name := fmt.Sprintf("undone%d", i)
				c := s.client()
				if tc.loggedIn {
					c = s.user(t, fmt.Sprintf("before%d", i))
				}
				before := countUsers(t, store)
				refuseSessions(t, store, tc.event)

				req := registerRequest(t, ctx, s.URL, name, tc.html)
				resp, body := request(t, c.HTTP, req)
				if tc.html {
					if resp.StatusCode != 503 || !strings.Contains(body, "nothing was stored") {
						t.Fatalf("browser register with sessions failing: %d\n%s", resp.StatusCode, body)
					}
				} else {
					assertError(t, resp, body, 503, "unavailable")
				}
				if after := countUsers(t, store); after != before {
					t.Fatalf("users went from %d to %d on a 503", before, after)
				}

				allowSessions(t, store)
				if _, err := s.client().Register(ctx, name, "correct horse"); err != nil {
					t.Fatalf("registering %s again once sessions work: %v", name, err)
				}
			})
		}
	})
}

// refuseSessions makes every event (INSERT or DELETE) on the sessions
// table fail, until allowSessions.
func refuseSessions(t *testing.T, store *models.Store, event string) {
	t.Helper()
	sql := "CREATE TRIGGER refuse_sessions BEFORE " + event + " ON sessions BEGIN SELECT RAISE(ABORT, 'sessions refused'); END"
	if store.Dialect() == models.MySQL {
		sql = "CREATE TRIGGER refuse_sessions BEFORE " + event + " ON sessions FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'sessions refused'"
	}
	if err := store.DB().Exec(sql).Error; err != nil {
		t.Fatalf("creating the trigger: %v", err)
	}
	t.Cleanup(func() { allowSessions(t, store) })
}

func allowSessions(t *testing.T, store *models.Store) {
	t.Helper()
	if err := store.DB().Exec("DROP TRIGGER IF EXISTS refuse_sessions").Error; err != nil {
		t.Fatalf("dropping the trigger: %v", err)
	}
}

func registerRequest(t *testing.T, ctx context.Context, base, name string, html bool) *http.Request {
	t.Helper()
	if html {
		v := url.Values{"username": {name}, "password": {"correct horse"}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/register", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		return req
	}
	body, _ := json.Marshal(map[string]string{"username": name, "password": "correct horse"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/register", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// browserClient does not follow redirects, so their status and Location
// can be checked.
func browserClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestOversizedBrowserFormIsNotParsed: a form over 64 KiB gets the 413
// page without being read: nothing past the limit shows on it.
func TestOversizedBrowserFormIsNotParsed(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	pad := strings.Repeat("x", 1<<20)

	urlencoded := "pad=" + pad + "&username=sneaky&password=correct+horse"
	var mp bytes.Buffer
	w := multipart.NewWriter(&mp)
	_ = w.WriteField("pad", pad)
	_ = w.WriteField("username", "sneaky")
	_ = w.WriteField("password", "correct horse")
	_ = w.Close()

	cases := []struct {
		name    string
		ctype   string
		body    string
		chunked bool // no Content-Length: the limit is met while reading
	}{
		{"urlencoded", "application/x-www-form-urlencoded", urlencoded, false},
		{"multipart", w.FormDataContentType(), mp.String(), false},
		{"urlencoded, chunked", "application/x-www-form-urlencoded", urlencoded, true},
	}
	for _, tc := range cases {
		for _, path := range []string{"/register", "/login"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				var rd io.Reader = strings.NewReader(tc.body)
				if tc.chunked {
					rd = struct{ *strings.Reader }{strings.NewReader(tc.body)}
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, rd)
				req.Header.Set("Content-Type", tc.ctype)
				req.Header.Set("Accept", "text/html")
				resp, body := request(t, browserClient(), req)
				if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
					t.Fatalf("status %d %q, want the 413 page", resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				if !strings.Contains(body, "over 64 KiB") {
					t.Errorf("the page does not say why:\n%s", body)
				}
				if strings.Contains(body, "sneaky") {
					t.Errorf("the page shows a username from past the limit:\n%s", body)
				}
			})
		}
	}
	if n := countUsers(t, s.Store); n != 0 {
		t.Fatalf("%d users stored by refused forms", n)
	}
}

// TestBrowserLoginLimitSaysRetryAfter: the 429 page tells when to try
// again, as the JSON answer does.
func TestBrowserLoginLimitSaysRetryAfter(t *testing.T) {
	s := newTestServer(t, storeSQLite(t), withLimits)
	ctx := ctxT(t)
	s.user(t, "ivo")
	login := func(password string) (*http.Response, string) {
		v := url.Values{"username": {"ivo"}, "password": {password}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/login", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		return request(t, browserClient(), req)
	}
	for i := range 10 {
		if resp, _ := login("wrong password"); resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, body := login("correct horse")
	if resp.StatusCode != 429 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("after 10 failures: %d %q, want the 429 page", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After = %q, want a number of seconds", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(body, "Too many failed logins") {
		t.Fatalf("the page does not show the error:\n%s", body)
	}
}

// TestLogoutFollowsTheBodyRules: logout reads no field, but its body is
// held to every POST's rules; a refused logout leaves the session alone.
func TestLogoutFollowsTheBodyRules(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	cases := []struct {
		name   string
		ctype  string
		body   string
		status int
		code   string
	}{
		{"plain text", "text/plain", "bye", 415, "unsupported_media_type"},
		{"over 64 KiB", "application/json", `{"x":"` + strings.Repeat("x", maxBody+1-len(`{"x":""}`)) + `"}`, 413, "body_too_large"},
		{"broken JSON", "application/json", `{"x":`, 400, "invalid_json"},
		{"curl -X POST: no body, no type", "", "", 204, ""},
		{"empty JSON object", "application/json", `{}`, 204, ""},
		{"empty form", "application/x-www-form-urlencoded", "", 204, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.user(t, fmt.Sprintf("leaver%d", i))
			var rd io.Reader // none at all when empty, as curl -X POST sends
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/logout", rd)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, body := request(t, c.HTTP, req)
			_, meErr := c.Me(ctx)
			if tc.status != 204 {
				assertError(t, resp, body, tc.status, tc.code)
				if meErr != nil {
					t.Fatalf("/me after a refused logout: %v, want the session alive", meErr)
				}
				return
			}
			if resp.StatusCode != 204 {
				t.Fatalf("status %d, want 204: %s", resp.StatusCode, body)
			}
			if status(meErr) != 401 {
				t.Fatalf("/me after logout: %v, want 401", meErr)
			}
		})
	}
}

// TestBrowserLogoutGoesHome: a browser's logout form lands on /, as login
// and register do.
func TestBrowserLogoutGoesHome(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	browser := browserClient()
	form := func(path string, v url.Values) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, _ := request(t, browser, req)
		return resp
	}
	if resp := form("/register", url.Values{"username": {"jade"}, "password": {"correct horse"}}); resp.StatusCode != 303 {
		t.Fatalf("register: %d", resp.StatusCode)
	}
	resp := form("/logout", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("logout: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	// And / then sends the logged-out browser on to the login page.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/", nil)
	resp, _ = request(t, browser, req)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("home after logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestBrowserFormTypeInAnyCase: media types are case-insensitive, so a
// form in capitals is still a browser's form, answered with a redirect.
func TestBrowserFormTypeInAnyCase(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	cases := []struct {
		name   string
		ctype  string
		body   string
		accept string
	}{
		{"urlencoded in capitals", "APPLICATION/X-WWW-FORM-URLENCODED", "username=kaiA&password=correct+horse", "text/html"},
		{"urlencoded, mixed case and charset", "Application/X-Www-Form-Urlencoded; Charset=UTF-8", "username=kaiB&password=correct+horse", "text/html"},
		{"multipart in capitals", "MULTIPART/FORM-DATA; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nkaiC\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\ncorrect horse\r\n--b--\r\n", "text/html"},
		{"Accept in capitals", "application/x-www-form-urlencoded", "username=kaiD&password=correct+horse", "TEXT/HTML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/register", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("Accept", tc.accept)
			resp, body := request(t, browserClient(), req)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
				t.Fatalf("%d to %q, want 303 to /: %s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
		})
	}
}

// TestPathsMatchAsSent: no redirect to a guessed route (a trailing slash
// is a 404), an encoded slash in a room name is an invalid room, and the
// pages, static files and rooms are as before.
func TestPathsMatchAsSent(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	c := s.user(t, "lia")
	hc := *c.HTTP
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	cases := []struct {
		method, path string
		body         string // JSON, for POSTs
		status       int
		code         string // of a JSON error
		check        string // a Content-Type, or the Location of a redirect
	}{
		// Trailing slashes and other spellings: the contract's 404.
		{"GET", "/rooms/", "", 404, "not_found", ""},
		{"POST", "/rooms/general/messages/", `{"message":"hi"}`, 404, "not_found", ""},
		{"GET", "/rooms/general/messages/", "", 404, "not_found", ""},
		{"GET", "/me/", "", 404, "not_found", ""},
		{"GET", "/login/", "", 404, "not_found", ""},
		{"GET", "/LOGIN", "", 404, "not_found", ""},
		{"GET", "/static", "", 404, "not_found", ""},
		{"GET", "/static/css/nothing.css", "", 404, "not_found", ""},
		// An encoded slash stays in the room name, which is then invalid.
		{"GET", "/rooms/a%2Fb/events", "", 400, "invalid_room", ""},
		{"GET", "/rooms/a%2Fb/messages", "", 400, "invalid_room", ""},
		{"POST", "/rooms/a%2Fb/messages", `{"message":"hi"}`, 400, "invalid_room", ""},
		{"POST", "/rooms/a%2Fb/typing", `{"typing":true}`, 400, "invalid_room", ""},
		{"GET", "/rooms/a%2Fb/users", "", 400, "invalid_room", ""},
		{"GET", "/rooms/a%2fb/users", "", 400, "invalid_room", ""},
		// Unchanged.
		{"GET", "/rooms/general/events", "", 200, "", "text/event-stream"},
		{"GET", "/rooms/general/messages", "", 200, "", "application/json"},
		{"POST", "/rooms/general/messages", `{"message":"hi"}`, 201, "", "application/json"},
		{"POST", "/rooms/general/typing", `{"typing":true}`, 204, "", ""},
		{"GET", "/rooms/general/users", "", 200, "", "application/json"},
		{"GET", "/rooms/gen%65ral/users", "", 200, "", "application/json"},
		{"GET", "/rooms", "", 200, "", "application/json"},
		{"GET", "/", "", 303, "", "/r/general"},
		{"GET", "/login", "", 200, "", "text/html"},
		{"GET", "/register", "", 200, "", "text/html"},
		{"GET", "/r/general", "", 200, "", "text/html"},
		{"GET", "/r/a%2Fb", "", 303, "", "/r/general?bad_room=a%2Fb"},
		{"GET", "/static/css/papo.css", "", 200, "", "text/css"},
		{"GET", "/static/js/api.js", "", 200, "", "javascript"},
		{"GET", "/static/js%2Fapi.js", "", 200, "", "javascript"},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var req *http.Request
			if tc.body != "" {
				req, _ = http.NewRequestWithContext(rctx, tc.method, s.URL+tc.path, strings.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
			} else {
				req, _ = http.NewRequestWithContext(rctx, tc.method, s.URL+tc.path, nil)
			}
			if tc.check == "text/event-stream" {
				// A stream does not end: its status and type are enough.
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.check) {
					t.Fatalf("%d %q, want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status, tc.check)
				}
				return
			}
			resp, body := request(t, &hc, req)
			switch {
			case tc.code != "":
				assertError(t, resp, body, tc.status, tc.code)
			case resp.StatusCode != tc.status:
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			case tc.status == 303 && resp.Header.Get("Location") != tc.check:
				t.Fatalf("redirect to %q, want %q", resp.Header.Get("Location"), tc.check)
			case tc.status != 303 && !strings.Contains(resp.Header.Get("Content-Type"), tc.check):
				t.Fatalf("Content-Type %q, want %s", resp.Header.Get("Content-Type"), tc.check)
			}
		})
	}
}

// TestJSONTextMustBeValidUnicode: JSON text that is not Unicode (bytes
// that are not UTF-8, a lone surrogate escape) is refused, as a form's is,
// rather than stored with U+FFFD in its place; a U+FFFD that was sent is
// kept.
func TestJSONTextMustBeValidUnicode(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		c := s.user(t, "mia")
		cases := []struct {
			name   string
			value  string // a JSON string literal, quotes included, as sent
			stored string // what is stored when accepted
			code   string // of the 400 when refused
		}{
			{"invalid UTF-8", `"a` + "\xff" + `b"`, "", "invalid_json"},
			{"a truncated UTF-8 sequence", `"a` + "\xe2\x82" + `"`, "", "invalid_json"},
			{"lone high surrogate", `"a\ud800b"`, "", "invalid_%s"},
			{"lone low surrogate", `"a\uDC00b"`, "", "invalid_%s"},
			{"high surrogate before another escape", `"\ud83d\u0041"`, "", "invalid_%s"},
			{"lone surrogate beside a sent U+FFFD", `"\ufffd\ud800"`, "", "invalid_%s"},
			{"lone surrogate after an escaped backslash", `"\\\ud800"`, "", "invalid_%s"},
			{"surrogate pair", `"a\ud83d\ude00b"`, "a😀b", ""},
			{"U+FFFD escaped", `"a\ufffdb"`, "a\uFFFDb", ""},
			{"U+FFFD escaped in capitals", `"a\uFFFDb\uFffDc"`, "a\uFFFDb\uFFFDc", ""},
			{"U+FFFD as itself", `"a` + "\uFFFD" + `b"`, "a\uFFFDb", ""},
			{"an escaped backslash then ud800", `"\\ud800"`, `\ud800`, ""},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Run("message", func(t *testing.T) {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/rooms/general/messages",
						strings.NewReader(`{"message":`+tc.value+`}`))
					req.Header.Set("Content-Type", "application/json")
					resp, body := request(t, c.HTTP, req)
					if tc.code != "" {
						assertError(t, resp, body, 400, strings.ReplaceAll(tc.code, "%s", "message"))
						return
					}
					var out struct{ Message client.Message }
					if resp.StatusCode != 201 || json.Unmarshal([]byte(body), &out) != nil || out.Message.Message != tc.stored {
						t.Fatalf("%d %s, want 201 with %q", resp.StatusCode, body, tc.stored)
					}
				})
				t.Run("register", func(t *testing.T) {
					name := fmt.Sprintf("utf%d", i)
					before := countUsers(t, store)
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/register",
						strings.NewReader(`{"username":"`+name+`","password":"correct horse `+strings.Trim(tc.value, `"`)+`"}`))
					req.Header.Set("Content-Type", "application/json")
					resp, body := request(t, nil, req)
					if tc.code != "" {
						assertError(t, resp, body, 400, strings.ReplaceAll(tc.code, "%s", "password"))
						if after := countUsers(t, store); after != before {
							t.Fatalf("users went from %d to %d", before, after)
						}
						return
					}
					if resp.StatusCode != 201 {
						t.Fatalf("%d %s, want 201", resp.StatusCode, body)
					}
					// The password is the text that was sent.
					if _, err := s.client().Login(ctx, name, "correct horse "+tc.stored); err != nil {
						t.Fatalf("login with the password as sent: %v", err)
					}
				})
			})
		}
	})
}

// TestTypingField: typing takes true/false, 1/0 and on/off in any case
// (form or JSON string) and JSON booleans; null, absent and numbers are
// refused.
func TestTypingField(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	c := s.user(t, "noa")
	cases := []struct {
		ctype, body string
		status      int
	}{
		{"application/json", `{"typing":null}`, 400},
		{"application/json", `{}`, 400},
		{"application/json", `{"typing":1}`, 400},
		{"application/json", `{"typing":0}`, 400},
		{"application/json", `{"typing":""}`, 400},
		{"application/json", `{"typing":"maybe"}`, 400},
		{"application/json", `{"typing":[true]}`, 400},
		{"application/json", `{"typing":true}`, 204},
		{"application/json", `{"typing":false}`, 204},
		{"application/json", `{"typing":"ON"}`, 204},
		{"application/json", `{"typing":"0"}`, 204},
		{"application/x-www-form-urlencoded", "typing=True", 204},
		{"application/x-www-form-urlencoded", "typing=off", 204},
		{"application/x-www-form-urlencoded", "typing=1", 204},
		{"application/x-www-form-urlencoded", "typing=", 400},
		{"application/x-www-form-urlencoded", "", 400},
		{"application/x-www-form-urlencoded", "typing=yes", 400},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/rooms/general/typing", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			resp, body := request(t, c.HTTP, req)
			if tc.status == 400 {
				assertError(t, resp, body, 400, "invalid_typing")
				return
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
		})
	}
}
