package app

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// StreamSlots caps open event streams per user and per client address.
// Acquire takes a slot or returns a rate-limited error; release gives it
// back and may be called more than once.
type StreamSlots interface {
	Acquire(ctx context.Context, userID int64, addr string) (release func(), err error)
}

func tooManyUserStreams(n int) *Error {
	return rateLimited("too_many_streams", "You have too many open streams ("+strconv.Itoa(n)+"); close some tabs.", 5*time.Second)
}

func tooManyAddrStreams() *Error {
	return rateLimited("too_many_streams", "Too many open streams from your address.", 5*time.Second)
}

// StreamLimits caps open streams per user and per client address on this
// instance.
type StreamLimits struct {
	enabled bool
	perUser int
	perAddr int

	mu     sync.Mutex
	byUser map[int64]int
	byAddr map[string]int
}

// NewStreamLimits builds the caps from the configured limits.
func NewStreamLimits(l Limits) *StreamLimits {
	return &StreamLimits{enabled: l.Enabled, perUser: l.StreamsPerUser, perAddr: l.StreamsPerAddress,
		byUser: map[int64]int{}, byAddr: map[string]int{}}
}

// Acquire takes a stream slot, or returns a rate-limited error. Release
// gives it back.
func (l *StreamLimits) Acquire(_ context.Context, userID int64, addr string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enabled {
		if l.perUser > 0 && l.byUser[userID] >= l.perUser {
			return nil, tooManyUserStreams(l.perUser)
		}
		if l.perAddr > 0 && l.byAddr[addr] >= l.perAddr {
			return nil, tooManyAddrStreams()
		}
	}
	l.byUser[userID]++
	l.byAddr[addr]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.byUser[userID]--; l.byUser[userID] <= 0 {
				delete(l.byUser, userID)
			}
			if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
				delete(l.byAddr, addr)
			}
		})
	}, nil
}
