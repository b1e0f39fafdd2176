package app

import (
	"context"
	"slices"
	"sync"
	"time"

	"papo/models"
)

// recentRing keeps the last messages the hub dispatched, with their
// encoded frames, so that a stream's backlog (the newest messages, or what
// a reconnecting client missed) is usually served from memory: no query,
// no encoding, and the same frame bytes shared by every stream.
//
// It holds an unbroken run of the sequence: the hub dispatches strictly in
// id order and without gaps, and appends each message here before offering
// it to any subscriber. So a stream that registers with the hub and then
// reads the ring misses nothing: a message is either in the ring already or
// still to be offered to it (or both, which the stream's cursor dedupes).
type recentRing struct {
	mu    sync.RWMutex
	buf   []recentMessage
	head  int   // index of the oldest entry
	n     int   // entries held
	first int64 // id of the oldest entry
	// origin is true when the run starts at the very first id of the
	// sequence, so a room with fewer messages than asked has no more.
	origin bool
}

type recentMessage struct {
	id      int64
	room    string
	private bool
	from    int64
	to      int64
	frame   *Frame
}

func (r *recentRing) add(env Envelope, f *Frame) {
	if len(r.buf) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n > 0 && env.ID != r.first+int64(r.n) {
		// The run broke (ids skipped: rows deleted by hand). Start over.
		r.n, r.head, r.origin = 0, 0, false
	}
	if r.n == 0 {
		r.first = env.ID
		r.origin = r.origin || env.ID == 1
	}
	m := recentMessage{id: env.ID, room: env.Room, private: env.Private, from: env.From, to: env.To, frame: f}
	if r.n < len(r.buf) {
		r.buf[(r.head+r.n)%len(r.buf)] = m
		r.n++
		return
	}
	r.buf[r.head] = m
	r.head = (r.head + 1) % len(r.buf)
	r.first++
	r.origin = false
}

func (m *recentMessage) visible(v models.Visibility) bool {
	if m.private {
		return m.from == v.UserID || m.to == v.UserID
	}
	return m.room == v.Room
}

// newest returns the newest limit messages visible under v, oldest first,
// and ok when that is certainly the answer: the ring held limit of them, or
// it reaches back to the start of the sequence.
func (r *recentRing) newest(v models.Visibility, limit int) (frames []*Frame, last int64, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.buf) == 0 || (r.n == 0 && !r.origin) {
		return nil, 0, false
	}
	// Gathered newest first, then turned around in place; the room for
	// the users and ready frames that follow is made here too.
	frames = make([]*Frame, 0, min(limit, r.n)+2)
	for i := r.n - 1; i >= 0 && len(frames) < limit; i-- {
		m := &r.buf[(r.head+i)%len(r.buf)]
		if m.visible(v) {
			if last == 0 {
				last = m.id
			}
			frames = append(frames, m.frame)
		}
	}
	if len(frames) < limit && !r.origin {
		return nil, 0, false
	}
	slices.Reverse(frames)
	return frames, last, true
}

// after returns every message visible under v with id > cursor, oldest
// first, and ok when the ring covers everything after cursor and there are
// at most limit of them.
func (r *recentRing) after(v models.Visibility, cursor int64, limit int) (frames []*Frame, last int64, ok bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.buf) == 0 {
		return nil, 0, false
	}
	// The run must start at or before cursor+1 (and, empty, be known to
	// start at the origin).
	if r.n == 0 || r.first > cursor+1 {
		return nil, 0, false
	}
	for i := max(0, int(cursor+1-r.first)); i < r.n; i++ {
		m := &r.buf[(r.head+i)%len(r.buf)]
		if !m.visible(v) {
			continue
		}
		if len(frames) == limit {
			return nil, 0, false
		}
		frames = append(frames, m.frame)
		last = m.id
	}
	return frames, last, true
}

// preloadRecent fills the ring with the committed tail of the sequence, up
// to last, so backlogs are served from memory from the start. A failure
// only leaves the ring empty: backlogs then come from the database.
func (h *Hub) preloadRecent(ctx context.Context, last int64) {
	size := len(h.recent.buf)
	if size == 0 {
		return
	}
	if last == 0 {
		h.recent.mu.Lock()
		h.recent.origin = true
		h.recent.mu.Unlock()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	from := max(0, last-int64(size))
	rows, err := h.source.MessagesAfter(ctx, from, size)
	if err != nil {
		h.log.Warn("hub: preloading recent messages; backlogs will read the database", "err", err)
		return
	}
	// Keep the unbroken run that ends at last.
	start := len(rows)
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].ID != last-int64(len(rows)-1-i) {
			break
		}
		start = i
	}
	if start == len(rows) || rows[len(rows)-1].ID != last {
		return
	}
	for i := start; i < len(rows); i++ {
		env := messageEnvelope(&rows[i])
		h.recent.add(env, EncodeFrame(env.ID, EventMessage, env.Data))
	}
}

// RecentBacklog serves a stream's backlog from memory when it can. cursor
// is as OpenStream takes it. It reports ok=false when the database must
// answer instead: a cursor older than the ring, or one this hub has not
// yet dispatched (perhaps from the future). A resume gets every message
// after its cursor; the ring bounds how many that can be. The caller must
// have subscribed first.
func (h *Hub) RecentBacklog(v models.Visibility, cursor string, size int) (frames []*Frame, last int64, resume string, ok bool) {
	if cursor == "" {
		frames, last, ok = h.recent.newest(v, size)
		return frames, last, resumeNew, ok
	}
	id, valid := ParseCursor(cursor)
	if !valid || id > h.dispatched.Load() {
		return nil, 0, "", false
	}
	frames, last, ok = h.recent.after(v, id, len(h.recent.buf))
	return frames, last, resumeOK, ok
}
