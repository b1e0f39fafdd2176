package app

import (
	"strconv"
	"sync"
)

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
func (l *StreamLimits) Acquire(userID int64, addr string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enabled {
		if l.perUser > 0 && l.byUser[userID] >= l.perUser {
			return nil, rateLimited("too_many_streams", "You have too many open streams ("+strconv.Itoa(l.perUser)+"); close some tabs.", 5e9)
		}
		if l.perAddr > 0 && l.byAddr[addr] >= l.perAddr {
			return nil, rateLimited("too_many_streams", "Too many open streams from your address.", 5e9)
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
