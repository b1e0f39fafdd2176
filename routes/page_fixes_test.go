package routes

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestStaticServesFilesOnly: /static/ serves its files, and anything else
// under it (a directory, with or without its slash, or a missing file) is
// the contract's JSON 404: no listing, no redirect. Every answer carries
// the Content-Security-Policy, not only pages.
func TestStaticServesFilesOnly(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(t *testing.T, method, path string, header http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, s.URL+path, nil)
		for k, v := range header {
			req.Header[k] = v
		}
		return request(t, hc, req)
	}

	for _, path := range []string{"/static/", "/static/js", "/static/js/", "/static/css", "/static/css/",
		"/static/js/nothing.js", "/static/..", "/static/js/../css/papo.css", "/static//js/chat.js"} {
		t.Run("GET "+path, func(t *testing.T) {
			resp, body := get(t, http.MethodGet, path, nil)
			assertError(t, resp, body, http.StatusNotFound, "not_found")
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Fatalf("redirects to %q", loc)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); csp != contentSecurityPolicy {
				t.Fatalf("CSP = %q", csp)
			}
		})
	}

	t.Run("a file", func(t *testing.T) {
		resp, body := get(t, http.MethodGet, "/static/js/chat.js", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "RoomStream") {
			t.Fatalf("%d %q", resp.StatusCode, body[:min(len(body), 200)])
		}
		if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, "javascript") {
			t.Fatalf("Content-Type %q", ct)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != contentSecurityPolicy {
			t.Fatalf("CSP = %q", csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatal("no nosniff")
		}
		// The validators the file server gave are kept: a file that has a
		// modification time says so, and a conditional GET is a 304.
		modified := resp.Header.Get("Last-Modified")
		if modified == "" {
			t.Fatal("no Last-Modified")
		}
		resp, _ = get(t, http.MethodGet, "/static/js/chat.js", http.Header{"If-Modified-Since": {modified}})
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("conditional GET: %d, want 304", resp.StatusCode)
		}
		resp, body = get(t, http.MethodHead, "/static/css/papo.css", nil)
		if resp.StatusCode != http.StatusOK || body != "" || !strings.Contains(resp.Header.Get("Content-Type"), "text/css") {
			t.Fatalf("HEAD: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	})

	t.Run("JSON answers too", func(t *testing.T) {
		resp, _ := get(t, http.MethodGet, "/healthz", nil)
		if csp := resp.Header.Get("Content-Security-Policy"); csp != contentSecurityPolicy {
			t.Fatalf("/healthz CSP = %q", csp)
		}
	})
}

// TestPageRoomNames: a room name in the page URL that is only spelt with
// capitals or spaces goes to its room; any other goes to the default room
// with the name in bad_room, for the page to say why.
func TestPageRoomNames(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	c := s.user(t, "rui")
	hc := *c.HTTP
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	long := strings.Repeat("ü", 100)
	cases := []struct{ path, location string }{
		{"/r/Dev", "/r/dev"},
		{"/r/GENERAL", "/r/general"},
		{"/r/%20Dev%20", "/r/dev"},
		{"/r/Not%20A%20Room!", "/r/general?bad_room=Not+A+Room%21"},
		{"/r/a%2Fb", "/r/general?bad_room=a%2Fb"},
		{"/r/%3Cb%3Ehi%3C%2Fb%3E", "/r/general?bad_room=%3Cb%3Ehi%3C%2Fb%3E"},
		{"/r/" + strings.Repeat("a", 65), "/r/general?bad_room=" + strings.Repeat("a", 65)},
		// A long name is cut short: the notice repeats the start of it.
		{"/r/" + long, "/r/general?bad_room=" + strings.Repeat("%C3%BC", badRoomShown) + "%E2%80%A6"},
	}
	for _, tc := range cases {
		name := []rune(tc.path)
		t.Run(string(name[:min(len(name), 24)]), func(t *testing.T) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+tc.path, nil)
			resp, body := request(t, &hc, req)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != tc.location {
				t.Fatalf("%d to %q, want 303 to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), tc.location, body)
			}
		})
	}
	// A valid name is the page itself.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+"/r/dev", nil)
	if resp, _ := request(t, &hc, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("/r/dev: %d", resp.StatusCode)
	}
}
