package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"papo/models"
)

// SessionStore is the part of the store that sessions need.
type SessionStore interface {
	LoadSession(ctx context.Context, id string) (*models.Session, error)
	SaveSession(ctx context.Context, s *models.Session) error
	DeleteSession(ctx context.Context, id string) error
	DeleteExpiredSessions(ctx context.Context) (int64, error)
	// LiveSessionIDs returns which of ids exist and have not expired.
	LiveSessionIDs(ctx context.Context, ids []string) (map[string]bool, error)
	EnsureSetting(ctx context.Context, name string, generate func() (string, error)) (string, error)
}

// ErrNoSession means the session does not exist (anymore).
var ErrNoSession = errors.New("no such session")

// Sessions keeps login sessions in the database, so that every instance
// sharing it agrees on them, and a deleted one is dead everywhere.
//
// Every authenticated request loads its session, so a loaded session is
// kept in memory for SessionCacheTTL. Ending a session forgets it here at
// once, and on every other instance when the hub's session_end event
// arrives there; only if that event is lost (the broker down) may another
// instance accept the ended session for up to SessionCacheTTL more.
//
// The streams of an ended session close on every instance through the same
// event. Should it be lost, WatchStreams closes them anyway: each instance
// checks its streams' sessions against the database when its broker's
// subscription is restored, and every StreamSessionCheck besides.
type Sessions struct {
	store SessionStore
	hub   *Hub

	mu    sync.Mutex
	cache map[string]cachedSession

	// The failed checks of WatchStreams while the database does not
	// answer them (logged at the start and the end).
	checkFailures failureStreak
}

// StreamSessionCheck is how often WatchStreams checks, besides after an
// outage of the broker, that this instance's streams' sessions still exist.
const StreamSessionCheck = 30 * time.Second

// streamCheckBatch is how many sessions one query of the check asks about.
const streamCheckBatch = 500

// SessionCacheTTL is how long a loaded session is trusted without the
// database.
const SessionCacheTTL = 10 * time.Second

// sessionCacheMax bounds the cache; past it, it is emptied (the database
// answers again), which is cheap and needs no eviction order.
const sessionCacheMax = 100_000

type cachedSession struct {
	values  any // what the caller's decode made of the stored data
	userID  int64
	expires time.Time // the session's own expiry
	until   time.Time // when this entry must be read again
	// ended marks a session ended here: until then, a load that raced
	// with the end (it read the row just before the delete) must not
	// cache it again.
	ended bool
}

// NewSessions builds the service.
func NewSessions(store SessionStore, hub *Hub) *Sessions {
	s := &Sessions{store: store, hub: hub, cache: map[string]cachedSession{}}
	if hub != nil {
		hub.OnSessionEnd(s.forget)
	}
	return s
}

func (s *Sessions) remember(id string, values any, userID int64, expires time.Time) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[id]; ok && c.ended && now.Before(c.until) {
		return
	}
	if len(s.cache) >= sessionCacheMax {
		clear(s.cache)
	}
	s.cache[id] = cachedSession{values: values, userID: userID, expires: expires, until: now.Add(SessionCacheTTL)}
}

// forget drops a session that ended (here, or on another instance).
func (s *Sessions) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= sessionCacheMax {
		clear(s.cache)
	}
	s.cache[id] = cachedSession{ended: true, until: time.Now().Add(SessionCacheTTL)}
}

// NewSessionID returns 256 random bits, hex-encoded.
func NewSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// Load returns the session's values, as decode makes them of its stored
// data, and its user; or ErrNoSession when it does not exist or decode
// cannot read it. decode runs only when the session is read from the
// database: the cache keeps its result, so callers must not modify it.
func (s *Sessions) Load(ctx context.Context, id string, decode func([]byte) (any, error)) (values any, userID int64, err error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && !c.ended && now.Before(c.until) && now.Before(c.expires) {
		return c.values, c.userID, nil
	}
	row, err := s.store.LoadSession(ctx, id)
	if errors.Is(err, models.ErrNotFound) {
		return nil, 0, ErrNoSession
	}
	if err != nil {
		return nil, 0, unavailable(err)
	}
	if values, err = decode(row.Data); err != nil {
		return nil, 0, ErrNoSession
	}
	if row.UserID != nil {
		userID = *row.UserID
	}
	s.remember(id, values, userID, row.ExpiresAt)
	return values, userID, nil
}

// Save stores the session's data until expires.
func (s *Sessions) Save(ctx context.Context, id string, userID int64, data []byte, expires time.Time) error {
	row := &models.Session{ID: id, Data: data, ExpiresAt: expires.UTC()}
	if userID != 0 {
		row.UserID = &userID
	}
	err := s.store.SaveSession(ctx, row)
	// The next Load reads (and decodes) what was saved; an ended session
	// keeps its mark.
	s.mu.Lock()
	if c, ok := s.cache[id]; ok && !c.ended {
		delete(s.cache, id)
	}
	s.mu.Unlock()
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Delete ends a session: its row goes, and its open streams close on
// every instance.
func (s *Sessions) Delete(ctx context.Context, id string, userID int64) error {
	s.forget(id)
	if err := s.store.DeleteSession(ctx, id); err != nil {
		return unavailable(err)
	}
	if userID != 0 {
		_ = s.hub.EndSession(ctx, userID, id)
	}
	return nil
}

// Secret returns the configured secret, or the one kept in the database,
// generating it on first use, so restarts and sibling instances agree.
func (s *Sessions) Secret(ctx context.Context, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil
	}
	secret, err := s.store.EnsureSetting(ctx, "session_secret", func() (string, error) {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b), nil
	})
	if err != nil {
		return nil, err
	}
	return []byte(secret), nil
}

// Sweep deletes expired sessions every interval until ctx ends.
func (s *Sessions) Sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.store.DeleteExpiredSessions(ctx)
		}
	}
}

// WatchStreams ends the streams of this instance whose session has ended
// (deleted, or expired) without this instance hearing of it: a logout on
// another instance while the broker was down sends its session_end event
// nowhere. It checks when the hub's broker is restored after an outage,
// and every interval besides, until ctx ends.
func (s *Sessions) WatchStreams(ctx context.Context, every time.Duration) {
	if s.hub == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.hub.Stopping():
			return
		case <-s.hub.BrokerRestored():
		case <-t.C:
		}
		s.checkStreams(ctx)
	}
}

// checkStreams asks the database which of the sessions of this instance's
// streams are still live, streamCheckBatch at a time, and ends the streams
// of the others. Its cost follows the distinct sessions, not the streams
// (10,000 streams of 100 sessions: one query of 100 ids), and it holds no
// lock of the hub while it waits on the database. If the database fails,
// the check ends nothing and tries again next time; the failure is logged
// once, and the recovery once. It returns how many streams it ended.
func (s *Sessions) checkStreams(ctx context.Context) int {
	ids := s.hub.SessionIDs()
	ended := 0
	for start := 0; start < len(ids); start += streamCheckBatch {
		part := ids[start:min(start+streamCheckBatch, len(ids))]
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		live, err := s.store.LiveSessionIDs(qctx, part)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ended
			}
			if s.checkFailures.fail(1) {
				s.hub.log.Warn("sessions: checking that open streams' sessions still exist failed; "+
					"a stream whose session ended unheard stays open until the database answers "+
					"(further failures are counted, not logged)", "err", err)
			}
			return ended
		}
		dead := map[string]bool{}
		for _, id := range part {
			if !live[id] {
				dead[id] = true
			}
		}
		if n := s.hub.EndSessions(dead); n > 0 {
			s.hub.log.Info("sessions: closed the streams of sessions that ended unheard (a logout elsewhere while Redis was down, or an expiry)",
				"sessions", len(dead), "streams", n)
			ended += n
		}
	}
	if failed, _, d, was := s.checkFailures.succeed(); was {
		s.hub.log.Info("sessions: checking open streams' sessions works again", "failed_checks", failed, "after", d)
	}
	return ended
}
