package app

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// TypingLapse is how long a typing=true lasts without renewal.
const TypingLapse = 6 * time.Second

// TypingEvent is the data of a typing event.
type TypingEvent struct {
	Room     string `json:"room"`
	Username string `json:"username"`
	Typing   bool   `json:"typing"`
}

// Typing tracks who is typing where. Only changes go out: a renewed true
// only pushes the lapse back, so a client may renew as often as it likes
// without the room seeing more than one event.
type Typing struct {
	hub   *Hub
	log   *slog.Logger
	lapse time.Duration

	mu     sync.Mutex
	active map[typingKey]*typingState

	published publishOutage
}

// typingState is one user typing in one room; the lapse callback compares
// it (under the lock) to tell a current timer from a replaced one.
type typingState struct {
	timer *time.Timer
}

type typingKey struct {
	room string
	user int64
}

// NewTyping builds the typing tracker.
// lapse is TypingLapse but in tests.
func NewTyping(hub *Hub, lapse time.Duration, log *slog.Logger) *Typing {
	if lapse <= 0 {
		lapse = TypingLapse
	}
	return &Typing{hub: hub, log: log, lapse: lapse, active: map[typingKey]*typingState{}}
}

// Set records that user started or stopped typing in room.
func (t *Typing) Set(ctx context.Context, room string, user UserRef, typing bool) {
	key := typingKey{room, user.ID}
	t.mu.Lock()
	state, was := t.active[key]
	if typing {
		if was {
			state.timer.Reset(t.lapse)
			t.mu.Unlock()
			return
		}
		state = &typingState{}
		state.timer = time.AfterFunc(t.lapse, func() { t.expire(key, user, state) })
		t.active[key] = state
	} else {
		if !was {
			t.mu.Unlock()
			return
		}
		state.timer.Stop()
		delete(t.active, key)
	}
	t.mu.Unlock()
	t.publish(ctx, room, user, typing)
}

func (t *Typing) expire(key typingKey, user UserRef, state *typingState) {
	t.mu.Lock()
	if t.active[key] != state {
		t.mu.Unlock()
		return
	}
	delete(t.active, key)
	t.mu.Unlock()
	t.publish(context.Background(), key.room, user, false)
}

func (t *Typing) publish(ctx context.Context, room string, user UserRef, typing bool) {
	env := Envelope{Type: EventTyping, Room: room, User: user.ID}
	err := t.hub.PublishEvent(ctx, env, TypingEvent{Room: room, Username: user.Name, Typing: typing})
	t.published.note(t.log, "typing", err)
}

// publishOutage logs the first failed publish of an outage (the broker
// unreachable) and the first success after it, with the count of failures
// in between, rather than a line per event. Its zero value is ready.
type publishOutage struct{ streak failureStreak }

// note records the outcome of one publish by what (e.g. "typing").
func (p *publishOutage) note(log *slog.Logger, what string, err error) {
	if err != nil {
		if p.streak.fail(1) {
			log.Warn(what+": publishing to other instances failed; their streams miss these events until it works again "+
				"(further failures are counted, not logged)", "err", err)
		}
		return
	}
	if failed, _, d, was := p.streak.succeed(); was {
		log.Info(what+": publishing to other instances works again", "failed_events", failed, "after", d)
	}
}

// Close stops the lapse timers.
func (t *Typing) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, state := range t.active {
		state.timer.Stop()
		delete(t.active, k)
	}
}
