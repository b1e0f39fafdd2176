package routes

import (
	"net/http"
	"strings"
	"testing"
)

// TestEscapedSlashCountsTheStoredText: "//" posts its text with one slash
// removed, and the 2,000-character limit is the stored text's.
func TestEscapedSlashCountsTheStoredText(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	ctx := ctxT(t)
	ana := s.user(t, "ana")
	cases := []struct {
		name   string
		text   string
		status int
		stored string
	}{
		{"2000 stored", "//" + strings.Repeat("x", 1999), http.StatusCreated, "/" + strings.Repeat("x", 1999)},
		{"2000 stored, multibyte", "//" + strings.Repeat("é", 1999), http.StatusCreated, "/" + strings.Repeat("é", 1999)},
		{"2000 stored, spaces around", "  //" + strings.Repeat("x", 1999) + " \r\n", http.StatusCreated, "/" + strings.Repeat("x", 1999)},
		{"2001 stored", "//" + strings.Repeat("x", 2000), http.StatusBadRequest, ""},
		{"2001 stored, multibyte", "//" + strings.Repeat("é", 2000), http.StatusBadRequest, ""},
		{"only the escape", "//", http.StatusCreated, "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := ana.Post(ctx, "general", tc.text)
			if tc.status == http.StatusBadRequest {
				if err == nil || res.Status != http.StatusBadRequest || !strings.Contains(err.Error(), "at most 2000 characters") {
					t.Fatalf("posting %d characters: %+v, %v; want 400 at most 2000 characters", len([]rune(tc.text)), res, err)
				}
				return
			}
			if err != nil || res.Status != tc.status || res.Message == nil || res.Message.Message != tc.stored {
				t.Fatalf("posting %d characters: %+v, %v", len([]rune(tc.text)), res, err)
			}
			// What is stored, and what history gives back, is the same text.
			page, err := ana.History(ctx, "general", 0, 1)
			if err != nil || len(page) != 1 || page[0].Message != tc.stored {
				t.Fatalf("history after the post: %d messages, %v", len(page), err)
			}
		})
	}
}
