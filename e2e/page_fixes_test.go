package e2e

// Browser tests of the chat page's fixes: reconnecting within the leave
// grace, text that a failed send or command gives back, a bounded message
// list, right-to-left text, the list's accessibility roles, and a bad room
// name in the page URL.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"papo/models"
)

// TestRestartWithinGraceAnnouncesNobody: the server stops (SIGTERM) for
// longer than the leave grace and comes back on the same database. The
// page tries again every couple of seconds, as the stream's retry: 2000
// asks, so it is back well inside the grace that the restart gives it, and
// nobody is announced as leaving or joining.
//
// The stop lasts 10 s on purpose: a page that backed off from 0.5 s,
// doubling, would have tried last at 7.5–9.75 s and next only at
// 15.5–20 s, 5 s or more after the restart, when the grace has ended.
func TestRestartWithinGraceAnnouncesNobody(t *testing.T) {
	const grace = 5 * time.Second
	srv := startForBrowser(t, "PAPO_LEAVE_GRACE="+grace.String())
	ana := chatter(t, srv, "ana")
	ana.WaitMessage(".msg-system", "ana joined the chat")
	bot := srv.Register(t, "bot") // reads the stored messages; never opens a stream

	srv.Stop()
	ana.Wait("the banner", `!document.getElementById("banner").hidden`)
	time.Sleep(10 * time.Second) // the outage itself, not a wait for a condition
	srv.Restart()
	restarted := time.Now()

	// Back within the grace: what matters is that no leave was announced,
	// checked below; this only says how late the page was when it was.
	if err := ana.poll(`document.body.dataset.stream === "live"`, grace); err != nil {
		t.Errorf("the page was not live within %v of the restart: %v", grace, err)
	}
	ana.WaitLive("/r/general")

	// A leave would be stored once the grace after the restart ends; wait
	// past it, then look at what was stored and what the page shows.
	time.Sleep(time.Until(restarted.Add(grace + 1500*time.Millisecond)))
	var texts []string
	for _, m := range storedMessages(t, bot, "general") {
		if m.Kind == "system" {
			texts = append(texts, m.Message)
		}
	}
	if strings.Join(texts, "|") != "ana joined the chat" {
		t.Errorf("system messages stored across the restart: %q, want only the first join", texts)
	}
	if n := ana.CountMessage(".msg-system", "ana left the chat"); n != 0 {
		t.Errorf("the page shows %d leave messages", n)
	}
	ana.WaitUsers("ana")
	ana.CheckNoExceptions()
}

type storedMessage struct {
	ID      int64  `json:"id"`
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// storedMessages returns the newest messages of room, oldest first.
func storedMessages(t *testing.T, c *Client, room string) []storedMessage {
	t.Helper()
	status, body := c.Get(t, "/rooms/"+room+"/messages?limit=200")
	if status != 200 {
		t.Fatalf("history of %s: %d %s", room, status, body)
	}
	var page struct{ Messages []storedMessage }
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("history of %s: %v", room, err)
	}
	return page.Messages
}

// refuseMessages makes the server's SQLite database refuse every new
// message, so that a send answers 503 with nothing stored, until the test
// ends.
func refuseMessages(t *testing.T, srv *Server) {
	t.Helper()
	target, err := models.ParseDatabaseURL(srv.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	store, err := models.Open(context.Background(), target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sql := "CREATE TRIGGER refuse_messages BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'messages refused'); END"
	if err := store.DB().Exec(sql).Error; err != nil {
		t.Fatalf("creating the trigger: %v", err)
	}
}

// holdSends makes the page's message POSTs wait until releaseSend, so that
// the test can type while one is on its way. The server still answers it.
func holdSends(tab *Tab) {
	tab.t.Helper()
	Eval[bool](tab, `(() => {
		const real = window.fetch;
		window.__held = [];
		window.fetch = (url, init) => {
			if (init?.method !== "POST" || !String(url).endsWith("/messages")) return real(url, init);
			return new Promise((resolve) => window.__held.push(() => resolve(real(url, init))));
		};
		return true;
	})()`)
}

func releaseSend(tab *Tab) {
	tab.t.Helper()
	tab.Wait("a send on its way", `window.__held.length > 0`)
	Eval[bool](tab, `(window.__held.shift()(), true)`)
}

// composerState is a JS expression: the composer's text and selection.
const composerState = `(() => { const c = document.getElementById("composer");
	return JSON.stringify([c.value, c.selectionStart, c.selectionEnd]); })()`

// TestFailedSendKeepsTypedText: a send fails (the database refuses it)
// after the reader has typed more. The unsent text comes back ahead of the
// new text, on a line of its own, and the caret stays where the reader
// left it in what they typed.
func TestFailedSendKeepsTypedText(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	ana.WaitMessage(".msg-system", "ana joined the chat")
	refuseMessages(t, srv)
	holdSends(ana)

	ana.Type("#composer", "first draft")
	ana.Enter()
	ana.Wait("an empty composer while sending", `document.getElementById("composer").value === ""`)
	ana.Type("#composer", "second thought")
	// The caret after "second", as if the reader went back to fix a word.
	Eval[bool](ana, `(document.getElementById("composer").setSelectionRange(6, 6), true)`)
	releaseSend(ana)

	ana.Wait("the failure shown", `document.querySelector("#messages .notice-error")?.textContent.startsWith("Not sent")`)
	want := fmt.Sprintf(`[%s,%d,%d]`, jsString("first draft\nsecond thought"), 18, 18)
	ana.Wait("both texts in the box, the caret kept", composerState+` === `+jsString(want))

	// Into an empty box, the text simply comes back, the caret at its end.
	ana.ClearComposer()
	ana.Type("#composer", "third try")
	ana.Enter()
	releaseSend(ana)
	want = fmt.Sprintf(`[%s,%d,%d]`, jsString("third try"), 9, 9)
	ana.Wait("the text back in the empty box", composerState+` === `+jsString(want))
	if n := ana.CountMessage(".msg-user", "first draft"); n != 0 {
		t.Errorf("a refused message is shown %d times", n)
	}
	ana.CheckNoExceptions()
}

// TestFailedCommandKeepsText: a command that answers ok: false (a typo in
// the user's name) shows its reply and leaves the text in the box to be
// fixed; one that works empties the box.
func TestFailedCommandKeepsText(t *testing.T) {
	srv := startForBrowser(t)
	srv.Register(t, "bia")
	ana := chatter(t, srv, "ana")

	ana.Type("#composer", "/msg bai hello")
	ana.Enter()
	ana.Wait("the command's error", `document.querySelector("#messages .notice-error")?.textContent.includes("bai")`)
	ana.Wait("the command still in the box", `document.getElementById("composer").value === "/msg bai hello"`)

	ana.ClearComposer()
	ana.Send("/msg bia hello")
	ana.WaitMessage(".msg-private", "hello")
	ana.CheckNoExceptions()
}

// TestLongRoomKeepsTheListBounded: 1,500 messages arrive while the page is
// open at the bottom. The page keeps at most 1,000 lines, the newest
// shown, each once; scrolling up brings back the dropped ones from history,
// in order and without repeats, though the page had already reached the
// start of the room before they were dropped.
func TestLongRoomKeepsTheListBounded(t *testing.T) {
	const total, shown = 1500, 1000 // shown: MAX_SHOWN in messages.js
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	ana.Wait("the start of the room", `document.getElementById("history-status").textContent.includes("#general")`)

	bot := srv.Register(t, "bot")
	for i := 1; i <= total; i++ {
		bot.Say(t, "general", fmt.Sprintf("m %04d", i))
	}
	last := fmt.Sprintf("m %04d", total)
	ana.WaitMessage(".msg-user", last)
	lines := `document.querySelectorAll("#messages > li").length`
	ana.Wait(fmt.Sprintf("at most %d lines", shown), fmt.Sprintf(`%s <= %d`, lines, shown))
	ana.Wait("the newest in view", `(() => {
		const s = document.getElementById("scroller");
		return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
	})()`)
	if n := Eval[int](ana, lines); n < shown/2 {
		t.Fatalf("only %d lines shown; the list was cut too far", n)
	}
	ana.CheckOrder()
	if ana.CountMessage(".msg-user", last) != 1 {
		t.Fatal("the newest message is shown more than once")
	}

	// Back up to the start: every message once, in order.
	texts := messageTexts(".msg-user")
	ana.Wait("every message back", fmt.Sprintf(`(() => {
		document.getElementById("scroller").scrollTop = 0;
		return %s.length === %d;
	})()`, texts, total))
	ana.Wait("the start of the room again", `document.getElementById("history-status").textContent.includes("#general")`)
	got := Eval[[]string](ana, texts)
	for i, text := range got {
		if want := fmt.Sprintf("m %04d", i+1); text != want {
			t.Fatalf("message %d reads %q, want %q", i, text, want)
		}
	}
	ana.WaitMessage(".msg-system", "ana joined the chat")
	ana.CheckOrder()
	ana.CheckNoExceptions()
}

// TestRightToLeftText: a Hebrew message reads right to left in the list,
// and the composer follows the direction of what is typed in it.
func TestRightToLeftText(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	const hebrew = "שלום, מה שלומך?"
	srv.Register(t, "dan").Say(t, "general", hebrew)
	ana.WaitMessage(".msg-user", hebrew)
	ana.Wait("the Hebrew message right to left", fmt.Sprintf(`(() => {
		const p = [...document.querySelectorAll("#messages .msg-user .text")].find(e => e.textContent === %s);
		return p.dir === "auto" && p.matches(":dir(rtl)") && getComputedStyle(p).direction === "rtl";
	})()`, jsString(hebrew)))
	ana.Wait("English left to right", `document.querySelector("#messages .msg-system .text").matches(":dir(ltr)")`)

	ana.Type("#composer", hebrew)
	ana.Wait("the composer right to left", `(() => {
		const c = document.getElementById("composer");
		return c.dir === "auto" && c.matches(":dir(rtl)");
	})()`)
	ana.CheckNoExceptions()
}

// TestMessageListRoles: the messages are a list inside a log, and the
// scroller is a named region.
func TestMessageListRoles(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	ana.WaitMessage(".msg-system", "ana joined the chat")
	ana.Wait("the roles", `(() => {
		const list = document.getElementById("messages");
		const log = list.parentElement;
		const scroller = document.getElementById("scroller");
		return list.tagName === "OL" && !list.hasAttribute("role") && !list.hasAttribute("aria-live") &&
			log.getAttribute("role") === "log" && log.getAttribute("aria-live") === "polite" &&
			scroller.contains(log) && scroller.getAttribute("role") === "region" &&
			scroller.getAttribute("aria-label") === "Messages in #general";
	})()`)
	ana.CheckNoExceptions()
}

// TestBadRoomInPageURL: /r/Dev is #dev; a name that is no room name leads
// to #general, which says why, as text, once.
func TestBadRoomInPageURL(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")

	ana.Open("/r/Dev")
	ana.WaitLive("/r/dev")
	ana.WaitMessage(".msg-system", "ana joined the chat")

	bad := `<img src=x onerror="window.__pwned=1">`
	ana.Open("/r/" + url.PathEscape(bad))
	ana.WaitLive("/r/general")
	notice := `[...document.querySelectorAll("#messages .notice-error")].filter(n => n.textContent.includes(` + jsString(bad) + `)).length`
	ana.Wait("the notice", notice+` === 1`)
	if !Eval[bool](ana, `location.search === "" && window.__pwned === undefined && !document.querySelector("#messages img")`) {
		t.Fatal("the bad name stayed in the URL, or became markup")
	}
	if text := Eval[string](ana, `document.querySelector("#messages .notice-error").textContent`); !strings.Contains(text, "#general") {
		t.Errorf("the notice does not say where the reader is: %q", text)
	}

	// A reload does not say it again. The mark tells the new page from
	// the old one, which is live at the same path until it goes.
	Eval[bool](ana, `(window.__before = true, location.reload(), true)`)
	ana.Wait("the reloaded page", `window.__before === undefined && document.body.dataset.stream === "live"`)
	ana.WaitMessage(".msg-system", "ana joined the chat")
	if n := Eval[int](ana, notice); n != 0 {
		t.Errorf("the notice came back after a reload (%d)", n)
	}
	ana.CheckNoExceptions()
}
