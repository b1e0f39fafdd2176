package routes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"papo/app"
	"papo/e2e/client"
	"papo/models"
)

func TestCommands(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia := s.user(t, "ana"), s.user(t, "Bia")
		wa := watch(t, ana, "general", "")
		wa.untilReady()
		wb := watch(t, bia, "general", "")
		wb.untilReady()
		watch(t, bia, "random", "").untilReady()
		if _, err := ana.Post(ctx, "general", "one"); err != nil {
			t.Fatal(err)
		}

		cases := []struct {
			text    string
			command string
			ok      bool
			output  string // a substring
		}{
			{"/help", "help", true, "/msg USER TEXT (/w) — a private message to USER"},
			{"/HELP", "help", true, "/stats [USER]"},
			{"/who", "who", true, "ana, Bia"},
			{"/rooms", "rooms", true, "general (2), random (1)"},
			{"/stats", "stats", true, "ana has posted 1 message."},
			{"/stats bia", "stats", true, "Bia has posted 0 messages."},
			{"/stats nobody", "stats", false, "No user named nobody; /who lists who is here."},
			{"/stats a b", "stats", false, "Usage: /stats [USER]"},
			{"/me", "me", false, "Usage: /me TEXT"},
			{"/me waves  slowly", "me", true, "* ana waves  slowly"},
			{"/msg", "msg", false, "Usage: /msg USER TEXT"},
			{"/msg bia", "msg", false, "Usage: /msg USER TEXT"},
			{"/msg nobody hi", "msg", false, "No user named nobody"},
			{"/msg ana note to self", "msg", false, "yourself"},
			{"/msg bia " + strings.Repeat("x", 2001), "msg", false, "at most 2000 characters"},
			{"/msg bia hi   there", "msg", true, "To Bia: hi   there"},
			{"/W BIA whisper", "msg", true, "To Bia: whisper"},
			{"/dance", "dance", false, "Unknown command /dance; /help lists the commands."},
			{"/", "", false, "Type a command after the slash"},
		}
		for i, tc := range cases {
			t.Run(fmt.Sprintf("%d-%s", i, tc.command), func(t *testing.T) {
				res, err := ana.Post(ctx, "general", tc.text)
				if err != nil || res.Status != 200 || res.Reply == nil {
					t.Fatalf("%.40q: %+v, %v", tc.text, res, err)
				}
				r := *res.Reply
				if r.Command != tc.command || r.OK != tc.ok || !strings.Contains(r.Output, tc.output) {
					t.Fatalf("%.40q: reply %+v, want command %q ok=%v output with %q", tc.text, r, tc.command, tc.ok, tc.output)
				}
				// The reply also reaches the issuer's stream in this room.
				ev := wa.next("reply")
				if got := decode[client.Reply](t, ev); got != r {
					t.Fatalf("reply event %+v, want %+v", got, r)
				}
			})
		}
		// Bia never got ana's replies, and got the private messages and the action.
		var got []string
		for len(got) < 3 {
			ev := wb.next("message", "reply")
			if ev.Type == "reply" {
				t.Fatalf("bia got a reply meant for ana: %s", ev.Data)
			}
			m := decode[client.Message](t, ev)
			if m.Username == "ana" && m.Kind != "system" && m.Kind != "user" {
				got = append(got, m.Kind+":"+m.To+":"+m.Message)
			}
		}
		want := []string{"action::waves  slowly", "private:Bia:hi   there", "private:Bia:whisper"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("bia got %v, want %v", got, want)
		}
		// "//" escapes a leading slash.
		res, err := ana.Post(ctx, "general", "//not a command")
		if err != nil || res.Status != 201 || res.Message.Message != "/not a command" {
			t.Fatalf("escaped slash: %+v, %v", res, err)
		}
	})
}

// TestPrivateMessagesStayPrivate: a third user tries every route, room
// and cursor, and never sees a private message.
func TestPrivateMessagesStayPrivate(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia, eve := s.user(t, "ana"), s.user(t, "bia"), s.user(t, "eve")
		eveLive := watch(t, eve, "general", "")
		eveLive.untilReady()
		biaRandom := watch(t, bia, "random", "") // bia is in another room
		biaRandom.untilReady()

		res, err := ana.Post(ctx, "general", "/msg bia the secret is 42")
		if err != nil || res.Message == nil {
			t.Fatalf("%+v, %v", res, err)
		}
		pm := *res.Message
		if pm.Kind != "private" || pm.To != "bia" || pm.Room != "general" {
			t.Fatalf("pm = %+v", pm)
		}
		after, _ := ana.Post(ctx, "general", "public after")

		// Bia gets it in a room other than the one it was sent from, and in
		// history and backlog of any room.
		if got := biaRandom.message(func(m client.Message) bool { return m.Kind == "private" }); got != pm {
			t.Fatalf("bia in random got %+v", got)
		}
		for _, room := range []string{"general", "random", "elsewhere"} {
			page, err := bia.History(ctx, room, 0, 0)
			if err != nil || !containsID(page, pm.ID) {
				t.Fatalf("bia's history of %s lacks the pm: %v", room, err)
			}
		}

		secret := func(where string, msgs []client.Message) {
			t.Helper()
			for _, m := range msgs {
				if m.ID == pm.ID || strings.Contains(m.Message, "secret") {
					t.Fatalf("eve saw the private message through %s", where)
				}
			}
		}
		// Live: eve's stream gets the public message after it, not the pm.
		got := eveLive.message(func(m client.Message) bool { return m.ID >= pm.ID })
		if got.ID != after.Message.ID {
			t.Fatalf("eve's next message after the pm is %+v", got)
		}
		rooms := []string{"general", "random", "elsewhere", "bia", "ana"}
		for _, room := range rooms {
			page, err := eve.History(ctx, room, 0, 200)
			if err != nil {
				t.Fatal(err)
			}
			secret("history of "+room, page)
			page, _ = eve.History(ctx, room, pm.ID+1, 200)
			secret("history before the pm's id in "+room, page)
			for _, cursor := range []string{"", "0", strconv.FormatInt(pm.ID-1, 10), strconv.FormatInt(pm.ID, 10), "-1", "abc"} {
				backlog, _ := watch(t, eve, room, cursor).untilReady()
				secret(fmt.Sprintf("backlog of %s from %q", room, cursor), backlog)
			}
		}
		// Raw requests with crafted parameters.
		for _, q := range []string{"before=" + strconv.FormatInt(pm.ID+1, 10) + "&limit=1", "limit=200", "before=99999999999999999999"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/rooms/general/messages?"+q, nil)
			_, body := request(t, eve.HTTP, req)
			if strings.Contains(body, "secret") {
				t.Fatalf("eve saw the pm with ?%s", q)
			}
		}
		// Nor may eve post as bia's peer: /msg to herself is refused, and
		// eve's /stats of bia shows only a count.
		if res, _ := eve.Post(ctx, "general", "/stats bia"); strings.Contains(res.Reply.Output, "secret") {
			t.Fatal("stats leaked text")
		}
	})
}

func containsID(msgs []client.Message, id int64) bool {
	for _, m := range msgs {
		if m.ID == id {
			return true
		}
	}
	return false
}

// TestMessageCountsAreExactUnderConcurrency: 3 users post 30 each at once,
// mixing plain, /me and /msg; the counts are exact.
func TestMessageCountsAreExactUnderConcurrency(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		names := []string{"ana", "bia", "caio"}
		clients := make([]*client.Client, len(names))
		for i, n := range names {
			clients[i] = s.user(t, n)
		}
		// A stream adds a join message, which must not count.
		watch(t, clients[0], "general", "").untilReady()
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				peer := names[(i+1)%len(names)]
				for j := 0; j < 30; j++ {
					var text string
					switch j % 3 {
					case 0:
						text = fmt.Sprintf("plain %d", j)
					case 1:
						text = fmt.Sprintf("/me counts %d", j)
					case 2:
						text = fmt.Sprintf("/msg %s private %d", peer, j)
					}
					if _, err := c.Post(ctx, "general", text); err != nil {
						t.Errorf("%s: %v", names[i], err)
						return
					}
					if j%10 == 0 { // commands that post nothing do not count
						_, _ = c.Post(ctx, "general", "/who")
					}
				}
			}()
		}
		wg.Wait()
		for i, c := range clients {
			me, err := c.Me(ctx)
			if err != nil || me.MessageCount != 30 {
				t.Fatalf("%s: /me count %d, %v; want 30", names[i], me.MessageCount, err)
			}
			res, _ := clients[(i+1)%3].Post(ctx, "general", "/stats "+names[i])
			if !strings.Contains(res.Reply.Output, "has posted 30 messages") {
				t.Fatalf("/stats %s: %q", names[i], res.Reply.Output)
			}
		}
	})
}

// FuzzPostCommand: no command text panics or answers 5xx.
func FuzzPostCommand(f *testing.F) {
	for _, s := range []string{"/msg bia hi", "/w", "/me", "/stats", "/stats \x00", "/MSG  bia   x", "/\u202e", "/msg bia \x07", "//", "/who\t\n", "/rooms x", "/msg " + strings.Repeat("b", 40) + " x"} {
		f.Add(s)
	}
	store := modelstestOpen(f, models.SQLite)
	s := newTestServer(f, store)
	ana := s.user(f, "ana")
	s.user(f, "bia")
	f.Fuzz(func(t *testing.T, text string) {
		form := url.Values{"message": {text}}
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/rooms/general/messages", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := request(t, ana.HTTP, req)
		switch resp.StatusCode {
		case 200, 201, 400, 429:
		default:
			t.Fatalf("%q: %d %s", text, resp.StatusCode, body)
		}
	})
}

func TestParseCommand(t *testing.T) {
	cases := []struct{ in, name, args string }{
		{"/help", "help", ""},
		{"/MSG bia  hello  there", "msg", "bia  hello  there"},
		{"/me\twaves", "me", "waves"},
		{"/", "", ""},
		{"/stats   ", "stats", ""},
	}
	for _, tc := range cases {
		name, args := app.ParseCommand(tc.in)
		if name != tc.name || args != tc.args {
			t.Errorf("ParseCommand(%q) = %q, %q; want %q, %q", tc.in, name, args, tc.name, tc.args)
		}
	}
}

// TestPageSuggestsEveryCommand keeps the page's suggestions in step with
// the command table that /help and /commands come from.
func TestPageSuggestsEveryCommand(t *testing.T) {
	s := newTestServer(t, storeSQLite(t))
	resp, err := http.Get(s.URL + "/commands")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var table struct {
		Commands []struct {
			Name    string
			Aliases []string
			Usage   string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil || len(table.Commands) != 6 {
		t.Fatalf("/commands: %+v, %v", table, err)
	}
	page, err := os.ReadFile("../static/js/composer.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range table.Commands {
		for _, name := range append([]string{c.Name}, c.Aliases...) {
			if !strings.Contains(string(page), `name: "`+name+`"`) {
				t.Errorf("the page does not suggest /%s", name)
			}
		}
		if !strings.Contains(string(page), `usage: "`+c.Usage+`"`) {
			t.Errorf("the page's usage of /%s differs from %q", c.Name, c.Usage)
		}
	}
}
