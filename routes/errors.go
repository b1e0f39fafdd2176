package routes

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"papo/app"
)

// errorBody is the contract's error shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var statusOf = map[app.Kind]int{
	app.KindInvalid:      http.StatusBadRequest,
	app.KindUnauthorized: http.StatusUnauthorized,
	app.KindNotFound:     http.StatusNotFound,
	app.KindConflict:     http.StatusConflict,
	app.KindRateLimited:  http.StatusTooManyRequests,
	app.KindUnavailable:  http.StatusServiceUnavailable,
}

// abortWith answers err in the contract's shape and stops the chain.
func abortWith(c *gin.Context, err error) {
	e, status := answerOf(c, err)
	abortStatus(c, status, e.Code, e.Message)
}

// answerOf is the status of an application error, for a JSON answer and a
// form page alike; it logs an outage and sets Retry-After.
func answerOf(c *gin.Context, err error) (*app.Error, int) {
	e := app.AsError(err)
	status := statusOf[e.Kind]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if status == http.StatusServiceUnavailable {
		if ok, unlogged := unavailableBursts(c).take(e.Code, time.Now()); ok {
			// An outage's start and end are logged by the component that
			// met it (the writer, the hub, the broker); here a burst of
			// 503s is one line.
			logFrom(c).Warn("request failed: service unavailable "+
				"(further 503s with this code are not logged until none has come for "+unavailableQuiet.String()+")",
				"code", e.Code, "err", e.Err, "unlogged_before", unlogged)
		}
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	return e, status
}

// unavailableQuiet is how long 503s of one code must stop before the next
// is logged again.
const unavailableQuiet = 10 * time.Second

// unavailableBursts is the request's router's burst log of 503s; a
// request outside the router's middleware (a test) logs every one.
func unavailableBursts(c *gin.Context) *burstLog {
	if l, ok := c.Get(ctxLog); ok && l.(requestLogger).unavailable != nil {
		return l.(requestLogger).unavailable
	}
	return newBurstLog(0)
}

// burstLog lets the first event of each burst per key be logged: an event
// is logged when none of its key came in the quiet before it. A steady
// stream of failures (an outage) is one line; a lone failure is a line.
type burstLog struct {
	quiet time.Duration
	mu    sync.Mutex
	last  map[string]time.Time // each key's latest event, logged or not
	// unlogged counts each key's events not logged since its last line.
	unlogged map[string]int
}

func newBurstLog(quiet time.Duration) *burstLog {
	return &burstLog{quiet: quiet, last: map[string]time.Time{}, unlogged: map[string]int{}}
}

// take records an event of key at now and reports whether to log it, and
// how many of key's events went unlogged since its last line.
func (b *burstLog) take(key string, now time.Time) (bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, seen := b.last[key]
	b.last[key] = now
	if seen && now.Sub(last) < b.quiet {
		b.unlogged[key]++
		return false, 0
	}
	n := b.unlogged[key]
	b.unlogged[key] = 0
	return true, n
}

func abortStatus(c *gin.Context, status int, code, message string) {
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

func badRequest(c *gin.Context, code, message string) {
	abortStatus(c, http.StatusBadRequest, code, message)
}

// errRequest is a malformed request found while reading it, with its status.
type errRequest struct {
	status  int
	code    string
	message string
}

func (e *errRequest) Error() string { return e.message }

func abortRequest(c *gin.Context, err error) {
	var re *errRequest
	if errors.As(err, &re) {
		abortStatus(c, re.status, re.code, re.message)
		return
	}
	abortWith(c, err)
}
