// Package routes is papo's HTTP layer: Gin handlers, middleware (auth,
// cross-origin, limits), and the SSE writer. It turns requests into calls
// on the app package, and app errors into the contract's statuses.
package routes

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	ginsessions "github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"papo/app"
)

// New builds papo's HTTP handler. assets holds templates/ and static/.
func New(ctx context.Context, a *app.App, assets fs.FS) (*Handler, error) {
	secret, err := a.Sessions.Secret(ctx, a.Config.SessionSecret)
	if err != nil {
		return nil, err
	}
	trusted := a.Config.Limits.TrustedProxies
	store := newDBSessionStore(a.Sessions, secret, isTLS(trusted))
	pg, err := newPages(assets, store)
	if err != nil {
		return nil, err
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	clients := func(r *http.Request) string { return clientAddr(r, trusted) }
	m := newMetrics(a)

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = false
	// An unknown path is the contract's JSON 404, with or without a
	// trailing slash or another case: no redirects to a guessed route.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	// Routes match the path as sent, so an encoded slash stays inside its
	// segment: /rooms/a%2Fb/messages reaches the room check (400
	// invalid_room) instead of missing every route. Parameters are still
	// given decoded.
	r.UseRawPath = true
	r.UnescapePathValues = true
	r.RemoteIPHeaders = nil // client addresses come from clientAddr, which trusts only configured proxies
	_ = r.SetTrustedProxies(nil)
	r.Use(requestLog(a.Log, clients, m.observe), recovery, securityHeaders, ginsessions.Sessions(sessionCookie, store))
	r.NoRoute(func(c *gin.Context) { abortStatus(c, http.StatusNotFound, "not_found", "No such route.") })

	acc := &accountHandlers{app: a, store: store, pages: pg, trusted: clients}
	rooms := &roomHandlers{app: a}
	streams := newStreamHandlers(a, clients)
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "papo_stream_writes_blocked_total",
		Help: "Writes to a stream that found the client's socket full and had to wait (slow clients)."}, func() float64 { return float64(streams.blocked.Load()) }))
	post := r.Group("/", crossOrigin())
	post.POST("/register", acc.register)
	post.POST("/login", acc.login)
	post.POST("/logout", acc.logout)

	auth := r.Group("/", requireUser(store))
	auth.GET("/me", acc.me)
	auth.GET("/rooms", rooms.list)
	auth.GET("/rooms/:room/events", streams.events)
	auth.GET("/rooms/:room/messages", rooms.history)
	auth.GET("/rooms/:room/users", rooms.users)
	authPost := auth.Group("/", crossOrigin())
	authPost.POST("/rooms/:room/messages", rooms.post)
	authPost.POST("/rooms/:room/typing", rooms.typing)

	r.GET("/", pg.home)
	r.GET("/login", pg.login)
	r.GET("/register", pg.register)
	r.GET("/r/:room", pg.chat)
	r.GET("/commands", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"commands": commandList(a)}) })
	r.GET("/static/*filepath", staticFiles(static))
	r.HEAD("/static/*filepath", staticFiles(static))

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", func(c *gin.Context) {
		rctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
		defer cancel()
		if err := a.Ready(rctx); err != nil {
			logFrom(c).Warn("not ready", "err", err)
			abortStatus(c, http.StatusServiceUnavailable, "not_ready", err.Error())
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	r.GET("/metrics", m.handler())
	return &Handler{Handler: r, streams: streams}, nil
}

// Handler is papo's HTTP handler. Streams over HTTP/1 take their
// connections over, so http.Server.Shutdown does not wait for them:
// Drain does.
type Handler struct {
	http.Handler
	streams *streamHandlers
}

// Drain waits until every stream has ended; call it after
// app.App.StopStreams, before app.App.Close.
func (h *Handler) Drain(ctx context.Context) error { return h.streams.drain(ctx) }

type commandInfo struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
	Usage   string   `json:"usage"`
	Summary string   `json:"summary"`
}

func commandList(a *app.App) []commandInfo {
	var out []commandInfo
	for _, c := range a.Chat.Commands() {
		out = append(out, commandInfo{Name: c.Name, Aliases: c.Aliases, Usage: c.Usage, Summary: c.Summary})
	}
	return out
}

// staticFiles serves the files of static/ and nothing else: a directory,
// with or without its slash, or a file that is not there, is the
// contract's JSON 404 like any unknown path, never a listing or a redirect.
// http.ServeContent gives what the file server gave: the type from the
// name, Last-Modified when the file system knows it, conditional and range
// requests.
func staticFiles(files fs.FS) gin.HandlerFunc {
	return func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("filepath"), "/")
		f, info, ok := openFile(files, name)
		if !ok {
			abortStatus(c, http.StatusNotFound, "not_found", "No such route.")
			return
		}
		defer f.Close()
		http.ServeContent(c.Writer, c.Request, info.Name(), info.ModTime(), f)
	}
}

// openFile opens name in files when it is a regular file that can seek,
// as http.ServeContent needs (embedded and on-disk files both can).
func openFile(files fs.FS, name string) (io.ReadSeekCloser, fs.FileInfo, bool) {
	if !fs.ValidPath(name) || name == "." {
		return nil, nil, false
	}
	f, err := files.Open(name)
	if err != nil {
		return nil, nil, false
	}
	info, err := f.Stat()
	rs, seeks := f.(io.ReadSeekCloser)
	if err != nil || !info.Mode().IsRegular() || !seeks {
		f.Close()
		return nil, nil, false
	}
	return rs, info, true
}

// recovery answers a panic with the contract's error shape instead of
// Gin's bare 500.
func recovery(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			logFrom(c).Error("panic serving request", "panic", v)
			abortStatus(c, http.StatusInternalServerError, "internal", "Something went wrong on our side.")
		}
	}()
	c.Next()
}
