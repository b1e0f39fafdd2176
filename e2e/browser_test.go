package e2e

// The chat page in a real headless Chromium. Each browser user has a
// browser context of their own; every wait is for a condition on the page,
// never a fixed sleep, and no test passes or fails on timing.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"papo/e2e/client"
)

// --- page helpers -----------------------------------------------------------

// Register creates the account through the register page's form and waits
// until the chat page's stream is live.
func (tab *Tab) Register(name string) {
	tab.t.Helper()
	tab.Open("/register")
	tab.Type("#username", name)
	tab.Type("#password", testPassword)
	tab.Do("submit the register form", clickCSS("button[type=submit]"))
	tab.WaitLive("/r/general")
}

// WaitLive waits until the page at path is showing the live stream, in a
// leader tab or in a follower.
func (tab *Tab) WaitLive(path string) {
	tab.t.Helper()
	tab.Wait("the live chat page at "+path,
		fmt.Sprintf(`location.pathname === %s && document.body.dataset.stream === "live"`, jsString(path)))
}

// Send types text into the composer and presses Enter, which sends it
// and leaves the composer empty (no stray line break from the Enter).
func (tab *Tab) Send(text string) {
	tab.t.Helper()
	tab.Type("#composer", text)
	tab.Enter()
	tab.Wait("an empty composer after sending", `document.getElementById("composer").value === ""`)
}

// ClearComposer empties the composer the way select-all and delete would.
func (tab *Tab) ClearComposer() {
	tab.t.Helper()
	tab.ClearInput("#composer")
}

// ClearInput empties a field and tells the page, as deleting its text would.
func (tab *Tab) ClearInput(sel string) {
	tab.t.Helper()
	Eval[bool](tab, fmt.Sprintf(`(() => { const c = document.querySelector(%s);
		c.value = ""; c.dispatchEvent(new Event("input")); return true; })()`, jsString(sel)))
}

// messageTexts is a JS expression: the text of every shown message of kind
// (".msg" for all), in order.
func messageTexts(kind string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages %s .text")].map(e => e.textContent)`, kind)
}

// CountMessage returns how many messages of kind show exactly text.
func (tab *Tab) CountMessage(kind, text string) int {
	tab.t.Helper()
	return Eval[int](tab, fmt.Sprintf(`%s.filter(t => t === %s).length`, messageTexts(kind), jsString(text)))
}

// WaitMessage waits until a message of kind shows exactly text.
func (tab *Tab) WaitMessage(kind, text string) {
	tab.t.Helper()
	tab.Wait(fmt.Sprintf("%s message %q", kind, text),
		fmt.Sprintf(`%s.includes(%s)`, messageTexts(kind), jsString(text)))
}

// WaitTyping waits until the typing line reads exactly text.
func (tab *Tab) WaitTyping(text string) {
	tab.t.Helper()
	tab.Wait(fmt.Sprintf("typing line %q", text),
		fmt.Sprintf(`document.getElementById("typing").textContent === %s`, jsString(text)))
}

// WaitUsers waits until the online list is exactly names, in order.
func (tab *Tab) WaitUsers(names ...string) {
	tab.t.Helper()
	want, _ := json.Marshal(names)
	tab.Wait("online users "+string(want), fmt.Sprintf(
		`JSON.stringify([...document.querySelectorAll("#users li")].map(li => li.firstChild.textContent)) === %s`,
		jsString(string(want))))
}

// CheckOrder fails the test unless the shown messages are in strictly
// increasing id order: no message twice, none out of place.
func (tab *Tab) CheckOrder() {
	tab.t.Helper()
	ids := Eval[[]int](tab, `[...document.querySelectorAll("#messages [data-id]")].map(e => Number(e.dataset.id))`)
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			tab.t.Fatalf("%s: message ids out of order or repeated at %d: %v", tab.Name, i, ids)
		}
	}
}

// CheckNoExceptions fails the test if the page threw anything uncaught.
func (tab *Tab) CheckNoExceptions() {
	tab.t.Helper()
	if ex := tab.Exceptions(); len(ex) > 0 {
		tab.t.Errorf("%s: uncaught exceptions:\n%s", tab.Name, strings.Join(ex, "\n"))
	}
}

func clickCSS(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel))
}

// emulatePhone gives the tab a phone's viewport.
func emulatePhone() chromedp.Action[chromedp.Void] {
	return chromedp.EmulateViewport(390, 800, chromedp.EmulateMobile)
}

// screenshots tells whether to save pictures of the page even when the
// test passes, for a person to look at: PAPO_E2E_SCREENSHOTS=1.
func screenshots() bool { return os.Getenv("PAPO_E2E_SCREENSHOTS") == "1" }

// startForBrowser starts a server for a browser test, after checking that
// there is a browser: without one the test skips before building anything.
func startForBrowser(t *testing.T, env ...string) *Server {
	t.Helper()
	requireBrowser(t)
	return StartServer(t, env...)
}

// chatter opens a new user with one tab, registered and on #general.
func chatter(t *testing.T, srv *Server, name string) *Tab {
	t.Helper()
	tab := NewUser(t, srv, name).NewTab()
	tab.Register(name)
	return tab
}

// --- tests ----------------------------------------------------------------

func TestTwoUsersChatAndType(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	bia := chatter(t, srv, "bia")

	// Each sees the other join: ana live, bia in the backlog.
	ana.WaitMessage(".msg-system", "bia joined the chat")
	bia.WaitMessage(".msg-system", "ana joined the chat")
	ana.WaitUsers("ana", "bia")
	bia.WaitUsers("ana", "bia")

	ana.Type("#composer", "hello b")
	bia.WaitTyping("ana is typing…")
	ana.Type("#composer", "ia")
	ana.Enter()
	bia.WaitMessage(".msg-user", "hello bia")
	bia.WaitTyping("") // sending says "stopped typing"
	ana.Wait("ana's own message", `document.querySelector("#messages .msg-user.mine .text")?.textContent === "hello bia"`)

	bia.Type("#composer", "hi ana")
	ana.WaitTyping("bia is typing…")
	bia.Enter()
	ana.WaitMessage(".msg-user", "hi ana")
	ana.WaitTyping("")

	// Timestamps are machine-readable and shown in local time.
	ana.Wait("timestamps", `[...document.querySelectorAll("#messages .msg time")].every(t => t.dateTime && t.textContent)`)
	if ana.CountMessage(".msg-user", "hi ana") != 1 || bia.CountMessage(".msg-user", "hello bia") != 1 {
		t.Error("a message is shown more than once")
	}
	if screenshots() {
		ana.Screenshot("chat-wide.png")
		ana.Do("phone width", emulatePhone())
		ana.Screenshot("chat-phone.png")
	}

	// Logging out ends bia's stream; after the leave grace, ana sees it.
	bia.Do("log out", clickCSS(".logout button"))
	bia.Wait("the login page", `location.pathname === "/login"`)
	ana.WaitMessage(".msg-system", "bia left the chat")
	ana.WaitUsers("ana")
	ana.CheckNoExceptions()
	bia.CheckNoExceptions()
}

func TestPrivateMessageStaysPrivate(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	bia := chatter(t, srv, "bia")
	cid := chatter(t, srv, "cid")
	cid.WaitUsers("ana", "bia", "cid")

	// Two people typing at once.
	ana.Type("#composer", "thinking")
	bia.Type("#composer", "me too")
	cid.Wait("two typing", `/^(ana and bia|bia and ana) are typing…$/.test(document.getElementById("typing").textContent)`)
	ana.ClearComposer()
	bia.ClearComposer()
	cid.WaitTyping("")

	ana.Send("/msg bia psst, the cake is in the fridge")
	bia.WaitMessage(".msg-private", "psst, the cake is in the fridge")
	bia.Wait("sender shown", `document.querySelector("#messages .msg-private .author").textContent === "from ana"`)
	ana.WaitMessage(".msg-private", "psst, the cake is in the fridge")
	ana.Wait("receiver shown", `document.querySelector("#messages .msg-private .author").textContent === "to bia"`)

	if screenshots() {
		bia.Screenshot("private.png")
	}

	// A public message after the private one: once cid has it, cid would
	// have had the private one too, had it leaked.
	ana.Send("public after the secret")
	cid.WaitMessage(".msg-user", "public after the secret")
	noSecret := `!document.getElementById("messages").textContent.includes("cake")`
	if !Eval[bool](cid, noSecret) {
		t.Fatal("cid sees ana's private message to bia")
	}
	// Nor in the backlog of a fresh page.
	cid.Open("/r/general")
	cid.WaitLive("/r/general")
	cid.WaitMessage(".msg-user", "public after the secret")
	if !Eval[bool](cid, noSecret) {
		t.Fatal("cid's backlog has ana's private message to bia")
	}
	for _, tab := range []*Tab{ana, bia, cid} {
		tab.CheckNoExceptions()
	}
}

func TestCommandsAndPlainText(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	bia := chatter(t, srv, "bia")

	// Suggestions while the text is a command name.
	ana.Type("#composer", "/m")
	ana.Wait("suggestions for /m", `(() => {
		const box = document.getElementById("suggestions");
		const shown = [...box.querySelectorAll("[role=option] code")].map(c => c.textContent);
		return !box.hidden && JSON.stringify(shown) === JSON.stringify(["/msg USER TEXT", "/me TEXT"]);
	})()`)
	ana.ArrowDown()
	ana.Enter() // completes the highlighted command instead of sending
	ana.Wait("completed /msg", `document.getElementById("composer").value === "/msg "`)
	ana.Escape()
	ana.ClearComposer()
	ana.Wait("suggestions closed", `document.getElementById("suggestions").hidden`)

	ana.Send("/me waves")
	bia.WaitMessage(".msg-action", "* ana waves")
	ana.WaitMessage(".msg-action", "* ana waves")

	ana.Send("/help")
	ana.Wait("the help reply", `(() => {
		const r = [...document.querySelectorAll("#messages .notice-reply")].at(-1)?.textContent ?? "";
		return ["msg", "me", "who", "stats", "rooms"].every(c => r.includes(c));
	})()`)

	// Shift+Enter is a new line, Enter sends.
	ana.Type("#composer", "line one")
	ana.ShiftEnter()
	ana.Type("#composer", "line two")
	ana.Enter()
	bia.WaitMessage(".msg-user", "line one\nline two")

	// Markup is shown as the text it is, and runs nothing.
	payload := `<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> <b>bold?</b>`
	ana.Send(payload)
	for _, tab := range []*Tab{bia, ana} {
		tab.WaitMessage(".msg-user", payload)
		inert := `window.__pwned === undefined && !document.querySelector("#messages script, #messages img, #messages b")`
		if !Eval[bool](tab, inert) {
			t.Fatalf("%s: the message's markup became elements or ran", tab.Name)
		}
		tab.CheckNoExceptions()
	}
	if screenshots() {
		ana.Screenshot("commands.png")
	}
}

func TestReloadAndRestartMissNothing(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	bia := chatter(t, srv, "bia")
	cid := srv.Register(t, "cid") // a script, posting while pages come and go

	// A reload while messages arrive.
	Eval[bool](bia, `(location.reload(), true)`)
	for i := 1; i <= 3; i++ {
		cid.Say(t, "general", fmt.Sprintf("during reload %d", i))
	}
	bia.WaitLive("/r/general")
	for i := 1; i <= 3; i++ {
		bia.WaitMessage(".msg-user", fmt.Sprintf("during reload %d", i))
	}
	bia.CheckOrder()

	// A server restart: the banner comes, goes, and nothing is lost.
	srv.Stop()
	ana.Wait("the banner", `!document.getElementById("banner").hidden`)
	bia.Wait("the banner", `!document.getElementById("banner").hidden`)
	if screenshots() {
		bia.Screenshot("banner.png")
	}
	srv.Restart()
	for i := 1; i <= 3; i++ {
		cid.Say(t, "general", fmt.Sprintf("after restart %d", i))
	}
	ana.Send("ana is back")
	for _, tab := range []*Tab{ana, bia} {
		tab.Wait("the banner gone", `document.getElementById("banner").hidden`)
		tab.WaitLive("/r/general")
		for i := 1; i <= 3; i++ {
			text := fmt.Sprintf("after restart %d", i)
			tab.WaitMessage(".msg-user", text)
			if n := tab.CountMessage(".msg-user", text); n != 1 {
				t.Errorf("%s: %q shown %d times", tab.Name, text, n)
			}
		}
		tab.WaitMessage(".msg-user", "ana is back")
		tab.CheckOrder()
		tab.CheckNoExceptions()
	}
}

func TestEightTabsShareOneStream(t *testing.T) {
	srv := startForBrowser(t)
	ana := NewUser(t, srv, "ana")
	tabs := []*Tab{ana.NewTab()}
	tabs[0].Register("ana")
	for range 7 {
		tab := ana.NewTab()
		tab.Open("/r/general")
		tabs = append(tabs, tab)
	}
	for _, tab := range tabs {
		tab.WaitLive("/r/general")
		// Followers get the backlog too, though the stream replayed it
		// before they opened.
		tab.WaitMessage(".msg-system", "ana joined the chat")
	}
	leader := onlyLeader(t, tabs)
	// Eight tabs, one stream: the point of the leader.
	srv.WaitMetric(t, "papo_streams_open", 1)

	bia := srv.Register(t, "bia")
	bia.Say(t, "general", "hello, all tabs")
	for _, tab := range tabs {
		tab.WaitMessage(".msg-user", "hello, all tabs")
	}

	// The leader goes; a follower takes over from the last id it saw, and
	// a message sent in between reaches every remaining tab once.
	leader.Close()
	bia.Say(t, "general", "while the leader changes")
	rest := make([]*Tab, 0, len(tabs)-1)
	for _, tab := range tabs {
		if tab != leader {
			rest = append(rest, tab)
		}
	}
	for _, tab := range rest {
		tab.Wait("a live stream", `document.body.dataset.stream === "live"`)
	}
	onlyLeader(t, rest)
	srv.WaitMetric(t, "papo_streams_open", 1)
	bia.Say(t, "general", "after the new leader")
	for _, tab := range rest {
		tab.WaitMessage(".msg-user", "while the leader changes")
		tab.WaitMessage(".msg-user", "after the new leader")
		if n := tab.CountMessage(".msg-user", "while the leader changes"); n != 1 {
			t.Errorf("%s: the handover message shown %d times", tab.Name, n)
		}
		tab.CheckOrder()
		tab.CheckNoExceptions()
	}

	// Logging out in one tab ends the session, and every tab notices.
	rest[0].Do("log out", clickCSS(".logout button"))
	for _, tab := range rest {
		tab.Wait("the login page", `location.pathname === "/login"`)
	}
}

// onlyLeader waits until exactly one of tabs leads the stream, and returns
// it. Two leaders at any moment fail the test: that would be two streams.
func onlyLeader(t *testing.T, tabs []*Tab) *Tab {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var leaders []*Tab
		for _, tab := range tabs {
			if Eval[string](tab, `document.body.dataset.role ?? ""`) == "leader" {
				leaders = append(leaders, tab)
			}
		}
		switch {
		case len(leaders) == 1:
			return leaders[0]
		case len(leaders) > 1:
			t.Fatalf("%d leader tabs at once", len(leaders))
		case time.Now().After(deadline):
			t.Fatalf("no leader tab after %v", waitTimeout)
		}
		// The lock passes to the next tab asynchronously.
		time.Sleep(100 * time.Millisecond)
	}
}

func TestScrollUpLoadsHistory(t *testing.T) {
	srv := startForBrowser(t)
	const total = 130
	bot := srv.Register(t, "bot")
	for i := 1; i <= total; i++ {
		bot.Say(t, "history", fmt.Sprintf("old %03d", i))
	}

	ana := NewUser(t, srv, "ana").NewTab()
	ana.Register("ana")
	ana.Open("/r/history")
	ana.WaitLive("/r/history")
	ana.WaitMessage(".msg-user", fmt.Sprintf("old %03d", total))

	count := `[...document.querySelectorAll("#messages .msg-user .text")].filter(e => e.textContent.startsWith("old ")).length`
	if n := Eval[int](ana, count); n >= total {
		t.Fatalf("all %d messages were shown before any scrolling; the test proves nothing", n)
	}
	// Scroll to the top again and again, as a reader would, until the
	// start of the room is reached.
	ana.Wait("all history", fmt.Sprintf(`(() => {
		document.getElementById("scroller").scrollTop = 0;
		return %s === %d;
	})()`, count, total))
	ana.WaitMessage(".msg-user", "old 001")
	ana.Wait("the start of the room", `document.getElementById("history-status").textContent.includes("#history")`)
	ana.CheckOrder()
	ana.CheckNoExceptions()
}

func TestPortuguese(t *testing.T) {
	srv := startForBrowser(t)
	ana := NewUser(t, srv, "ana").NewTab()
	ana.EmulateLanguage("pt-BR,pt")
	ana.Open("/login")
	ana.Wait("the login page in Portuguese", `document.querySelector("h1").textContent === "Entrar"`)
	ana.Register("ana")
	bia := chatter(t, srv, "bia")
	ana.WaitMessage(".msg-system", "bia entrou na conversa")
	bia.Send("oi")
	ana.Wait("the page in Portuguese", `document.documentElement.lang === "pt-BR" && document.getElementById("composer").placeholder.startsWith("Mensagem")`)
	ana.CheckNoExceptions()
}

// TestRoomSwitcher also checks the page at a phone's width, where the
// rooms are behind the menu button.
func TestRoomSwitcher(t *testing.T) {
	srv := startForBrowser(t)
	ana := chatter(t, srv, "ana")
	ana.Do("phone width", emulatePhone())
	sidebarShown := `getComputedStyle(document.getElementById("sidebar")).display !== "none"`
	ana.Wait("the rooms folded away", "!("+sidebarShown+")")
	ana.Do("open the menu", clickCSS("#sidebar-toggle"))
	ana.Wait("the rooms shown", sidebarShown)

	ana.Type("#room-name", "Not A Room!")
	ana.Enter()
	ana.Wait("the room name error", `document.getElementById("room-error").textContent !== ""`)
	ana.ClearInput("#room-name")

	// A new room is made by going to it.
	ana.Type("#room-name", "random")
	ana.Enter()
	ana.WaitLive("/r/random")
	ana.WaitMessage(".msg-system", "ana joined the chat")
	ana.Send("in random")

	ana.Do("open the menu", clickCSS("#sidebar-toggle"))
	ana.Wait("both rooms in the switcher, newest first", `JSON.stringify([...document.querySelectorAll("#rooms a")].map(a => a.textContent)) === '["#random","#general"]'`)
	ana.Escape()
	ana.Wait("Escape folds the menu", "!("+sidebarShown+")")
	ana.Wait("focus back on the menu button", `document.activeElement.id === "sidebar-toggle"`)
	ana.Do("open the menu", clickCSS("#sidebar-toggle"))
	ana.Do("switch back", clickCSS(`#rooms a[href="/r/general"]`))
	ana.WaitLive("/r/general")
	if ana.CountMessage(".msg-user", "in random") != 0 {
		t.Error("a message of #random shows in #general")
	}
	if screenshots() {
		ana.Do("open the menu", clickCSS("#sidebar-toggle"))
		ana.Screenshot("phone-menu.png")
	}
	ana.CheckNoExceptions()
}

func TestRoomSwitcherShowsBusyRooms(t *testing.T) {
	// A long grace: ana is still online in #general for the whole test
	// after she moves to #lobby, so the counts do not hang on how fast
	// the browser loads the next page (the default 300 ms did, under load).
	srv := startForBrowser(t, "PAPO_LEAVE_GRACE=1m")
	// bia is in #lobby, which ana's browser has never visited.
	bia := client.New(srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	if _, err := bia.Register(ctx, "bia", testPassword); err != nil {
		t.Fatal(err)
	}
	st, err := bia.Open(ctx, "lobby", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if _, err := st.Backlog(); err != nil {
		t.Fatal(err)
	}

	ana := chatter(t, srv, "ana")
	rooms := `JSON.stringify([...document.querySelectorAll("#rooms li")].map(li => [li.querySelector("a").textContent, li.querySelector(".room-count")?.textContent ?? ""]))`
	ana.Wait("#lobby listed with one online, after the visited rooms", rooms+` === '[["#general","1"],["#lobby","1"]]'`)
	ana.Do("go to #lobby", clickCSS(`#rooms a[href="/r/lobby"]`))
	ana.WaitLive("/r/lobby")
	ana.WaitUsers("ana", "bia")
	ana.Wait("#lobby now visited, first, with both", rooms+` === '[["#lobby","2"],["#general","1"]]'`)
	ana.CheckNoExceptions()
}

func TestUnreadCountWhileHidden(t *testing.T) {
	srv := startForBrowser(t)
	ana := NewUser(t, srv, "ana")
	chat := ana.NewTab()
	chat.Register("ana")
	chat.Wait("the plain title", `document.title === "#general · papo"`)

	// Another tab in the same window hides the chat, as switching tabs does.
	other := ana.NewTabInWindow()
	chat.Wait("the chat tab hidden", `document.hidden`)

	bia := srv.Register(t, "bia")
	bia.Say(t, "general", "one")
	bia.Say(t, "general", "two")
	chat.Wait("two unread in the title", `document.title === "(2) #general · papo"`)

	other.Close()
	chat.Activate()
	chat.Wait("the count gone once seen", `!document.hidden && document.title === "#general · papo"`)
	chat.CheckNoExceptions()
}

func TestHTTPSWithHTTP2(t *testing.T) {
	srv := startForBrowser(t, TLSEnv(t)...)
	ana := NewUser(t, srv, "ana")
	first := ana.NewTab()
	first.Register("ana")
	second := ana.NewTab()
	second.Open("/r/general")
	second.WaitLive("/r/general")
	for _, tab := range []*Tab{first, second} {
		tab.Wait("HTTP/2 in a secure context", `window.isSecureContext &&
			performance.getEntriesByType("navigation")[0].nextHopProtocol === "h2"`)
	}
	srv.Register(t, "bia").Say(t, "general", "over h2")
	for _, tab := range []*Tab{first, second} {
		tab.WaitMessage(".msg-user", "over h2")
		tab.CheckNoExceptions()
	}
}
