package routes

import (
	"context"
	"net/http"
	"time"

	ginsessions "github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"

	"papo/app"
	"papo/models"
)

type accountHandlers struct {
	app     *app.App
	store   *dbSessionStore
	pages   *pages
	trusted func(*http.Request) string
}

type userBody struct {
	User app.User `json:"user"`
}

func (h *accountHandlers) register(c *gin.Context) {
	h.authenticate(c, "register.html", http.StatusCreated, func(username, password string) (*models.User, error) {
		return h.app.Accounts.Register(c.Request.Context(), username, password, h.trusted(c.Request))
	}, h.app.Accounts.Unregister)
}

func (h *accountHandlers) login(c *gin.Context) {
	h.authenticate(c, "login.html", http.StatusOK, func(username, password string) (*models.User, error) {
		return h.app.Accounts.Login(c.Request.Context(), username, password, h.trusted(c.Request))
	}, nil)
}

// undoTimeout bounds taking a registration back; it runs even when the
// client has gone, so it cannot lean on the request's context.
const undoTimeout = 5 * time.Second

// authenticate is register and login alike: read the fields, run the
// check, and on success start a new session (a new id, the old one
// deleted) and answer JSON or, to a browser's form, a redirect.
//
// undo, when not nil, takes back what check stored: if the session cannot
// be started, the client is told nothing was stored (503), and a register
// must not leave its user behind, or the retry would find the name taken.
func (h *accountHandlers) authenticate(c *gin.Context, page string, status int,
	check func(username, password string) (*models.User, error),
	undo func(ctx context.Context, userID int64) error) {
	html := wantsHTML(c)
	fail := func(err error) {
		if html {
			h.pages.formError(c, page, err)
			return
		}
		abortRequest(c, err)
	}
	f, err := readFields(c)
	if err != nil {
		fail(err)
		return
	}
	username, err := f.str("username")
	if err != nil {
		fail(err)
		return
	}
	password, err := f.str("password")
	if err != nil {
		fail(err)
		return
	}
	// The session is loaded before check stores anything, so that its
	// failing leaves nothing to take back.
	if _, err := h.store.Get(c.Request, sessionCookie); err != nil {
		fail(err)
		return
	}
	u, err := check(username, password)
	if err != nil {
		fail(err)
		return
	}
	if err := h.startSession(c, u); err != nil {
		if undo != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request.Context()), undoTimeout)
			if uerr := undo(ctx, u.ID); uerr != nil {
				logFrom(c).Error("a registration whose session failed is still stored",
					"user_id", u.ID, "username", u.Username, "err", uerr, "session_err", err)
			}
			cancel()
		}
		fail(err)
		return
	}
	if html {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	c.JSON(status, userBody{User: app.UserView(u)})
}

// startSession logs u in on a new session: a new id, the old one deleted.
func (h *accountHandlers) startSession(c *gin.Context, u *models.User) error {
	s := ginsessions.Default(c)
	if err := h.store.rotate(c.Request.Context(), gorillaSession(s)); err != nil {
		return err
	}
	s.Clear()
	s.Set(keyUserID, u.ID)
	s.Set(keyUsername, u.Username)
	return s.Save()
}

// logout deletes the session row (dead on every instance) and closes the
// session's open streams. Its body, though it carries no fields, follows
// every POST's rules (type, size, well-formed); an empty one, as curl -X
// POST sends, passes.
func (h *accountHandlers) logout(c *gin.Context) {
	if _, err := readFields(c); err != nil {
		abortRequest(c, err)
		return
	}
	gs, ok := loadSession(c, h.store)
	if !ok {
		return
	}
	if !gs.IsNew {
		s := ginsessions.Default(c)
		s.Options(ginsessions.Options{Path: "/", MaxAge: -1})
		if err := s.Save(); err != nil {
			abortWith(c, err)
			return
		}
	}
	if wantsHTML(c) {
		// As after login: home sends a logged-out browser on to /login.
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *accountHandlers) me(c *gin.Context) {
	u, err := h.app.Accounts.User(c.Request.Context(), userOf(c).ID)
	if err != nil {
		abortWith(c, err)
		return
	}
	c.JSON(http.StatusOK, userBody{User: app.UserView(u)})
}
