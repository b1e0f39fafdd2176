package app

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an application error; the routes map each kind to one
// HTTP status.
type Kind int

const (
	KindInvalid      Kind = iota + 1 // 400
	KindUnauthorized                 // 401
	KindNotFound                     // 404
	KindConflict                     // 409
	KindRateLimited                  // 429
	KindUnavailable                  // 503
)

// Error is an error a client can act on: a kind, a stable snake_case code
// and a sentence for a person.
type Error struct {
	Kind       Kind
	Code       string
	Message    string
	RetryAfter time.Duration // for KindRateLimited
	Err        error         // the cause, for logs; never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func invalid(code, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrUnauthorized is returned for a missing or ended session.
var ErrUnauthorized = &Error{Kind: KindUnauthorized, Code: "unauthorized", Message: "Log in first."}

// unavailable wraps a storage failure: the client sees a 503, the logs the cause.
func unavailable(err error) *Error {
	return &Error{Kind: KindUnavailable, Code: "unavailable", Message: "The database is unavailable; nothing was stored. Try again shortly.", Err: err}
}

func rateLimited(code, message string, after time.Duration) *Error {
	if after < time.Second {
		after = time.Second
	}
	return &Error{Kind: KindRateLimited, Code: code, Message: message, RetryAfter: after}
}

// AsError returns err as an *Error, treating anything unknown as a storage
// failure (the only other way the services fail).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return unavailable(err)
}
