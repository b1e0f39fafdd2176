package routes

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	gsessions "github.com/gorilla/sessions"

	"papo/app"
)

const (
	ctxLog  = "papo.log"
	ctxUser = "papo.user"
	ctxSess = "papo.session"
)

// requestLog gives every request an id (X-Request-Id, taken from the
// client when it is sane) and a logger that carries it, and logs the
// request when it ends, with the client's address as clients tells it.
func requestLog(log *slog.Logger, clients func(*http.Request) string, observe func(route, method string, status int, d time.Duration)) gin.HandlerFunc {
	unavailable := newBurstLog(unavailableQuiet)
	return func(c *gin.Context) {
		start := time.Now()
		id := c.GetHeader("X-Request-Id")
		if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(r rune) bool { return r < '!' || r > '~' }) {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		c.Header("X-Request-Id", id)
		c.Set(ctxLog, requestLogger{log: log, id: id, unavailable: unavailable})
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		method, path, status, client := c.Request.Method, c.Request.URL.Path, c.Writer.Status(), clients(c.Request)
		finish := func(size int) {
			d := time.Since(start)
			observe(route, method, status, d)
			log.Info("request", "request_id", id, "method", method, "path", path, "route", route,
				"status", status, "duration", d, "bytes", size, "client", client)
		}
		// A stream that took over its connection outlives the handler: it
		// is logged when it ends. The gin context is reused from here on,
		// so finish holds only copies.
		if v, ok := c.Get(ctxDetached); ok {
			v.(*detachedRequest).whenEnded(finish)
			return
		}
		finish(c.Writer.Size())
	}
}

// ctxDetached holds a *detachedRequest when the handler handed its
// connection to a goroutine of its own (see streamHandlers.detach).
const ctxDetached = "papo.detached"

// detachedRequest tells requestLog when a detached response has ended, and
// how many bytes it sent.
type detachedRequest struct {
	mu    sync.Mutex
	ended bool
	size  int
	then  func(size int)
}

func (d *detachedRequest) end(size int) {
	d.mu.Lock()
	d.ended, d.size = true, size
	then := d.then
	d.mu.Unlock()
	if then != nil {
		then(size)
	}
}

func (d *detachedRequest) whenEnded(f func(size int)) {
	d.mu.Lock()
	if !d.ended {
		d.then = f
		d.mu.Unlock()
		return
	}
	size := d.size
	d.mu.Unlock()
	f(size)
}

// requestLogger is what a handler needs to log with its request's id. The
// logger itself is made only when a handler logs (few do): a logger per
// request was a measurable part of opening a stream.
type requestLogger struct {
	log *slog.Logger
	id  string
	// unavailable is the router's: its 503s are logged once per burst
	// (see answerOf).
	unavailable *burstLog
}

func logFrom(c *gin.Context) *slog.Logger {
	if l, ok := c.Get(ctxLog); ok {
		rl := l.(requestLogger)
		return rl.log.With("request_id", rl.id)
	}
	return slog.Default()
}

// crossOrigin refuses browsers' cross-origin POSTs, judged from
// Sec-Fetch-Site and Origin by net/http's CrossOriginProtection. curl and
// scripts send neither and pass.
func crossOrigin() gin.HandlerFunc {
	cop := http.NewCrossOriginProtection()
	return func(c *gin.Context) {
		if err := cop.Check(c.Request); err != nil {
			abortStatus(c, http.StatusForbidden, "cross_origin", "Cross-origin requests are refused.")
			return
		}
		c.Next()
	}
}

// securityHeaders go on every answer. The CSP too: it matters on pages,
// but a script, a stylesheet or a JSON answer opened on its own is a
// document as well, and should be as locked down.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	c.Next()
}

const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// session loads the caller's session; a storage failure answers 503 (an
// API route) rather than pretending the caller is logged out.
func loadSession(c *gin.Context, store *dbSessionStore) (*gsessions.Session, bool) {
	s, err := store.Get(c.Request, sessionCookie)
	if err != nil {
		abortWith(c, err)
		return nil, false
	}
	return s, true
}

// currentUser reads the logged-in user from the session, if any.
func currentUser(s *gsessions.Session) (app.UserRef, bool) {
	uid, _ := s.Values[keyUserID].(int64)
	name, _ := s.Values[keyUsername].(string)
	if s.IsNew || uid == 0 || name == "" {
		return app.UserRef{}, false
	}
	return app.UserRef{ID: uid, Name: name}, true
}

// requireUser answers 401 without a live session.
func requireUser(store *dbSessionStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		s, ok := loadSession(c, store)
		if !ok {
			return
		}
		u, ok := currentUser(s)
		if !ok {
			abortWith(c, app.ErrUnauthorized)
			return
		}
		c.Set(ctxUser, u)
		c.Set(ctxSess, s.ID)
		c.Next()
	}
}

func userOf(c *gin.Context) app.UserRef { return c.MustGet(ctxUser).(app.UserRef) }

func sessionIDOf(c *gin.Context) string { return c.GetString(ctxSess) }

// wantsHTML tells a browser's form post (form body, Accept naming
// text/html) from an API call.
func wantsHTML(c *gin.Context) bool {
	// Media types are case-insensitive; ParseMediaType gives them in lower
	// case, as readFields reads them, so both agree on what a form is.
	ct, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
	form := ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data"
	return form && strings.Contains(strings.ToLower(c.GetHeader("Accept")), "text/html")
}

// clientAddr is the client's address: the connection's peer, or the
// nearest untrusted address in X-Forwarded-For when the peer is a trusted
// proxy.
func clientAddr(r *http.Request, trusted []*net.IPNet) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if !isTrusted(host, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if net.ParseIP(hop) == nil {
			break
		}
		if !isTrusted(hop, trusted) {
			return hop
		}
		host = hop
	}
	return host
}

func isTrusted(addr string, trusted []*net.IPNet) bool {
	ip := net.ParseIP(addr)
	if ip == nil {
		return false
	}
	for _, n := range trusted {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// isTLS is whether the client reached us over TLS, directly or through a
// trusted proxy that says so.
func isTLS(trusted []*net.IPNet) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if r.TLS != nil {
			return true
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		return isTrusted(host, trusted) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	}
}
