package routes

import (
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"papo/app"
)

// pageData is what every template gets.
type pageData struct {
	Title    string
	Error    string
	Username string
	User     *pageUser // nil when logged out
	Room     string
}

// pageUser is the logged-in user as templates name it: .User.ID and
// .User.Username, the field names the pages were written against.
type pageUser struct {
	ID       int64
	Username string
}

type pages struct {
	tmpl  *template.Template
	store *dbSessionStore
}

func newPages(assets fs.FS, store *dbSessionStore) (*pages, error) {
	tmpl, err := template.ParseFS(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &pages{tmpl: tmpl, store: store}, nil
}

// render writes a page; its Content-Security-Policy comes from
// securityHeaders, as every answer's does.
func (p *pages) render(c *gin.Context, status int, name string, data pageData) {
	c.Header("Cache-Control", "no-store")
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := p.tmpl.ExecuteTemplate(c.Writer, name, data); err != nil {
		logFrom(c).Error("rendering a page", "page", name, "err", err)
	}
}

// sessionUser is the logged-in user of a page request, if any. A storage
// failure shows as logged out, and the form then reports the outage.
func (p *pages) sessionUser(c *gin.Context) *pageUser {
	s, err := p.store.Get(c.Request, sessionCookie)
	if err != nil {
		return nil
	}
	if u, ok := currentUser(s); ok {
		return &pageUser{ID: u.ID, Username: u.Name}
	}
	return nil
}

func (p *pages) home(c *gin.Context) {
	if p.sessionUser(c) == nil {
		c.Redirect(http.StatusSeeOther, "/login")
		return
	}
	c.Redirect(http.StatusSeeOther, "/r/"+app.DefaultRoom)
}

func (p *pages) chat(c *gin.Context) {
	u := p.sessionUser(c)
	if u == nil {
		c.Redirect(http.StatusSeeOther, "/login")
		return
	}
	name := c.Param("room")
	if !app.ValidRoom(name) {
		c.Redirect(http.StatusSeeOther, roomRedirect(name))
		return
	}
	p.render(c, http.StatusOK, "chat.html", pageData{Title: "#" + name, User: u, Room: name})
}

// badRoomShown bounds how much of a bad room name the notice repeats.
const badRoomShown = 80

// roomRedirect is where a page URL with an invalid room name goes. A name
// that is only spelt in capitals or with spaces around it (/r/Dev) is the
// room the reader meant (/r/dev). Any other goes to the default room, and
// the page tells the reader why (chat.js shows bad_room as text).
func roomRedirect(name string) string {
	if fixed := strings.ToLower(strings.TrimSpace(name)); app.ValidRoom(fixed) {
		return "/r/" + fixed
	}
	if r := []rune(name); len(r) > badRoomShown {
		name = string(r[:badRoomShown]) + "…"
	}
	return "/r/" + app.DefaultRoom + "?" + url.Values{"bad_room": {name}}.Encode()
}

func (p *pages) login(c *gin.Context) {
	p.render(c, http.StatusOK, "login.html", pageData{Title: "Log in", User: p.sessionUser(c)})
}

func (p *pages) register(c *gin.Context) {
	p.render(c, http.StatusOK, "register.html", pageData{Title: "Register", User: p.sessionUser(c)})
}

// formError shows a form page again with what went wrong, under the status
// the API would have answered, and with its Retry-After.
func (p *pages) formError(c *gin.Context, page string, err error) {
	var status int
	var message string
	if re, ok := err.(*errRequest); ok {
		status, message = re.status, re.message
	} else {
		var ae *app.Error
		ae, status = answerOf(c, err)
		message = ae.Message
	}
	title := "Log in"
	if page == "register.html" {
		title = "Register"
	}
	// Only what readFields parsed, within the body limit: PostFormValue
	// would parse a body refused as too large, or never read, in full.
	username := c.Request.PostForm.Get("username")
	p.render(c, status, page, pageData{Title: title, Error: message, Username: username})
	c.Abort()
}

// acceptsHTML is whether the client asks for a page.
func acceptsHTML(c *gin.Context) bool {
	return c.NegotiateFormat(gin.MIMEHTML, gin.MIMEJSON) == gin.MIMEHTML
}
