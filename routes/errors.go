package routes

import (
	"errors"
	"math"
	"net/http"
	"strconv"

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
		logFrom(c).Error("request failed: service unavailable", "code", e.Code, "err", e.Err)
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	return e, status
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
