package routes

import (
	"net/http"
	"strings"
	"testing"
)

// cookieValue must find exactly what net/http's r.Cookie finds.
func FuzzCookieValue(f *testing.F) {
	for _, seed := range []string{
		"papo_session=abc",
		"a=1; papo_session=MTcz-_x==; b=2",
		`papo_session="quoted"`,
		"papo_session=bad;value; papo_session=good",
		"papo_session=bad\\; papo_session=second",
		" papo_session = spaced ",
		"papo_session",
		"papo_session=",
		"Papo_session=case",
		"x=1;;papo_session=after-empty",
		"papo_session=\"\"",
		"papo_session=\"",
	} {
		f.Add(seed, "")
	}
	f.Add("a=1", "papo_session=second-line")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		if len(line1)+len(line2) > 2048 {
			return // past 3,000 cookies net/http finds none; papo's header limit is far below that
		}
		h := http.Header{"Cookie": {line1}}
		if line2 != "" {
			h["Cookie"] = append(h["Cookie"], line2)
		}
		want, err := (&http.Request{Header: h}).Cookie(sessionCookie)
		got, ok := cookieValue(h, sessionCookie)
		if (err == nil) != ok || err == nil && want.Value != got {
			t.Fatalf("Cookie %q: got %q, %v; net/http %v, %v", h["Cookie"], got, ok, want, err)
		}
	})
}

// A detached stream's head carries the headers net/http would have
// written, byte for byte.
func FuzzAppendHeader(f *testing.F) {
	f.Add("Content-Type", "text/event-stream", "X-Note", " two\r\nlines \n")
	f.Add("Bad Name", "v", "Cache-Control", "no-cache")
	f.Add("x-lower", "", "X-Lower", "\t")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		hdr := http.Header{}
		hdr[k1] = append(hdr[k1], v1)
		hdr[k2] = append(hdr[k2], v2, v1)
		var want strings.Builder
		if err := hdr.Write(&want); err != nil {
			t.Fatal(err)
		}
		if got := string(appendHeader(nil, hdr)); got != want.String() {
			t.Fatalf("header %q:\n got %q\nwant %q", hdr, got, want.String())
		}
	})
}
