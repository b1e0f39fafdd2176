package app

import (
	"sync"
	"time"
)

// failureStreak follows one kind of work through an outage, so that it is
// logged when it starts and when it ends (with how much failed, and for
// how long) rather than a line per failure. Its zero value is ready, and it
// is safe for concurrent use.
type failureStreak struct {
	mu    sync.Mutex
	since time.Time // zero while the work succeeds
	times int64     // failures since then
	items int64     // what those failures carried (messages, say)
}

// fail records a failure carrying n items; it reports whether it is the
// first of a streak, the one to log.
func (f *failureStreak) fail(n int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.times++
	f.items += int64(n)
	if !f.since.IsZero() {
		return false
	}
	f.since = time.Now()
	return true
}

// failing reports whether a streak is under way.
func (f *failureStreak) failing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.since.IsZero()
}

// succeed ends a streak: it reports how many failures it held, what they
// carried, and how long it lasted (rounded for a log); ok is false when
// there was none.
func (f *failureStreak) succeed() (times, items int64, d time.Duration, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.since.IsZero() {
		return 0, 0, 0, false
	}
	times, items, d = f.times, f.items, time.Since(f.since).Round(time.Millisecond)
	f.since, f.times, f.items = time.Time{}, 0, 0
	return times, items, d, true
}
