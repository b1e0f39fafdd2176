package routes

import (
	"net/http"

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
	})
}

func (h *accountHandlers) login(c *gin.Context) {
	h.authenticate(c, "login.html", http.StatusOK, func(username, password string) (*models.User, error) {
		return h.app.Accounts.Login(c.Request.Context(), username, password, h.trusted(c.Request))
	})
}

// authenticate is register and login alike: read the fields, run the
// check, and on success start a new session (a new id, the old one
// deleted) and answer JSON or, to a browser's form, a redirect.
func (h *accountHandlers) authenticate(c *gin.Context, page string, status int,
	check func(username, password string) (*models.User, error)) {
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
	u, err := check(username, password)
	if err != nil {
		fail(err)
		return
	}
	if _, ok := loadSession(c, h.store); !ok {
		return
	}
	s := ginsessions.Default(c)
	gs := gorillaSession(s)
	if err := h.store.rotate(c.Request.Context(), gs); err != nil {
		fail(err)
		return
	}
	s.Clear()
	s.Set(keyUserID, u.ID)
	s.Set(keyUsername, u.Username)
	if err := s.Save(); err != nil {
		fail(err)
		return
	}
	if html {
		c.Redirect(http.StatusSeeOther, "/")
		return
	}
	c.JSON(status, userBody{User: app.UserView(u)})
}

// logout deletes the session row (dead on every instance) and closes the
// session's open streams.
func (h *accountHandlers) logout(c *gin.Context) {
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
		c.Redirect(http.StatusSeeOther, "/login")
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
