package app

import (
	"context"
	"slices"
	"sync"

	"papo/models"
)

// backlogTails keep the two halves of the visibility rule (see
// models.Visibility) for the rooms and users whose streams were lately
// opened: a room's newest public messages, and a user's newest private
// ones, BacklogSize of each, with their frames, exact as of the hub's last
// dispatch. The ring answers a backlog while the room's newest messages
// are among the last few thousand sent anywhere; in a quiet room they are
// not, and without the tails every stream opened there would cost three
// queries and the encoding of the rows they return. A tail is read from
// the database once, then kept current by dispatch.
type backlogTails struct {
	mu       sync.Mutex
	size     int   // messages kept per tail
	budget   int   // frame bytes kept over all tails
	maxRooms int   // room tails kept
	maxUsers int   // user tails kept
	bytes    int   // frame bytes kept now
	asOf     int64 // the last id dispatched: every tail holds all up to it
	rooms    map[string]*tail
	users    map[int64]*tail
	// The halves being read from the database, each closed when its
	// read is over: a storm of streams into one quiet room reads it once.
	readingRooms map[string]chan struct{}
	readingUsers map[int64]chan struct{}
}

// tail is the newest messages of one half, oldest first.
type tail struct {
	ids    []int64
	frames []*Frame
	bytes  int
}

// The tails' bounds. A room tail of ordinary messages is about 20 KiB; most
// users' tails are empty.
const (
	tailRooms  = 4096
	tailUsers  = 65536
	tailBudget = 32 << 20
)

func newBacklogTails(size, maxRooms, maxUsers, budget int) *backlogTails {
	return &backlogTails{size: size, budget: budget, maxRooms: maxRooms, maxUsers: maxUsers,
		rooms: map[string]*tail{}, users: map[int64]*tail{},
		readingRooms: map[string]chan struct{}{}, readingUsers: map[int64]chan struct{}{}}
}

// start sets the id that the first dispatch follows.
func (t *backlogTails) start(last int64) {
	t.mu.Lock()
	t.asOf = last
	t.mu.Unlock()
}

// add keeps a dispatched message. The hub calls it for every message, in
// id order, before it offers the message to any subscriber (as with the
// ring), so a stream that subscribed before reading the tails gets every
// later message in its queue.
func (t *backlogTails) add(env Envelope, f *Frame) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.asOf = env.ID
	if env.Private {
		t.push(t.users[env.From], env.ID, f)
		if env.To != env.From {
			t.push(t.users[env.To], env.ID, f)
		}
	} else {
		t.push(t.rooms[env.Room], env.ID, f)
	}
	if t.bytes > t.budget {
		t.trim(nil)
	}
}

// push appends a message to tl, if there is a tail, dropping its oldest
// past size.
func (t *backlogTails) push(tl *tail, id int64, f *Frame) {
	if tl == nil {
		return
	}
	before := tl.bytes
	tl.push(id, f, t.size)
	t.bytes += tl.bytes - before
}

func (tl *tail) push(id int64, f *Frame, size int) {
	tl.ids = append(tl.ids, id)
	tl.frames = append(tl.frames, f)
	tl.bytes += len(f.Bytes)
	if len(tl.ids) > size {
		tl.bytes -= len(tl.frames[0].Bytes)
		// Shifted in place, so the slices never grow past size+1.
		copy(tl.ids, tl.ids[1:])
		copy(tl.frames, tl.frames[1:])
		tl.frames[len(tl.frames)-1] = nil
		tl.ids = tl.ids[:len(tl.ids)-1]
		tl.frames = tl.frames[:len(tl.frames)-1]
	}
}

// trim drops tails other than keep, in no particular order, until the
// tails are within their bounds: past a count, any; past the bytes, only
// tails that hold some.
func (t *backlogTails) trim(keep *tail) {
	evict(t, t.rooms, keep, false, func() bool { return len(t.rooms) > t.maxRooms })
	evict(t, t.users, keep, false, func() bool { return len(t.users) > t.maxUsers })
	overBudget := func() bool { return t.bytes > t.budget }
	evict(t, t.rooms, keep, true, overBudget)
	evict(t, t.users, keep, true, overBudget)
}

func evict[K comparable](t *backlogTails, tails map[K]*tail, keep *tail, holdingOnly bool, over func() bool) {
	for key, tl := range tails {
		if !over() {
			return
		}
		if tl == keep || (holdingOnly && tl.bytes == 0) {
			continue
		}
		t.bytes -= tl.bytes
		delete(tails, key)
	}
}

// snapshot is a copy of the tails of one stream's visibility, and the id
// they are exact up to (when one is missing, the id a tail read from the
// database now must reach).
type snapshot struct {
	room, user       tail
	hasRoom, hasUser bool
	asOf             int64
}

func (t *backlogTails) snapshot(v models.Visibility) snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := snapshot{asOf: t.asOf}
	if tl := t.rooms[v.Room]; tl != nil {
		s.room, s.hasRoom = tl.copy(), true
	}
	if tl := t.users[v.UserID]; tl != nil {
		s.user, s.hasUser = tl.copy(), true
	}
	return s
}

func (tl *tail) copy() tail {
	return tail{ids: slices.Clone(tl.ids), frames: slices.Clone(tl.frames), bytes: tl.bytes}
}

// installRoom and installUser keep a tail read from the database, exact
// up to upTo. Messages dispatched since are taken from the ring; when it no
// longer holds them all, the tail is not kept (the next stream tries
// again).
func (t *backlogTails) installRoom(room string, read tail, upTo int64, ring *recentRing) {
	install(t, t.rooms, room, read, upTo, ring, func(m *recentMessage) bool {
		return !m.private && m.room == room
	})
}

func (t *backlogTails) installUser(user int64, read tail, upTo int64, ring *recentRing) {
	install(t, t.users, user, read, upTo, ring, func(m *recentMessage) bool {
		return m.private && (m.from == user || m.to == user)
	})
}

func install[K comparable](t *backlogTails, tails map[K]*tail, key K, read tail, upTo int64, ring *recentRing, keep func(*recentMessage) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tails[key] != nil {
		return
	}
	tl := read.copy()
	if upTo < t.asOf && !ring.catchUp(&tl, upTo, t.asOf, t.size, keep) {
		return
	}
	tails[key] = &tl
	t.bytes += tl.bytes
	t.trim(&tl)
}

// catchUp pushes onto tl the messages with ids in (from, to] that keep
// selects, and reports whether the ring held every id in that range.
func (r *recentRing) catchUp(tl *tail, from, to int64, size int, keep func(*recentMessage) bool) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.n == 0 || r.first > from+1 || r.first+int64(r.n)-1 < to {
		return false
	}
	for id := from + 1; id <= to; id++ {
		m := &r.buf[(r.head+int(id-r.first))%len(r.buf)]
		if keep(m) {
			tl.push(m.id, m.frame, size)
		}
	}
	return true
}

// tailOf encodes rows read from the database as a tail.
func tailOf(rows []models.Message) tail {
	tl := tail{ids: make([]int64, len(rows)), frames: make([]*Frame, len(rows))}
	for i := range rows {
		tl.ids[i], tl.frames[i] = rows[i].ID, messageFrame(&rows[i])
		tl.bytes += len(tl.frames[i].Bytes)
	}
	return tl
}

// claim is how a stream that misses a half learns whether another is
// reading it already (wait is then closed when that read is over), or is
// to read it itself (and call done after, whatever happened).
func claim[K comparable](t *backlogTails, reading map[K]chan struct{}, key K) (wait <-chan struct{}, done func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := reading[key]; ok {
		return ch, nil
	}
	ch := make(chan struct{})
	reading[key] = ch
	return nil, func() {
		t.mu.Lock()
		delete(reading, key)
		t.mu.Unlock()
		close(ch)
	}
}

// tailsFor returns the tails of v's two halves, reading from the database
// (and keeping) whichever is missing, both exact up to the same id: every
// later message was dispatched after the stream subscribed, so it is in
// the stream's queue. A half that another stream is reading is waited for
// (twice at most: a read whose tail could not be kept leaves it missing).
func (c *Chat) tailsFor(ctx context.Context, v models.Visibility) (snapshot, error) {
	tails := c.hub.tails
	for waits := 0; ; waits++ {
		s := tails.snapshot(v)
		if s.hasRoom && s.hasUser {
			return s, nil
		}
		var (
			wait  <-chan struct{}
			dones []func()
		)
		take := func(w <-chan struct{}, done func()) {
			if wait == nil {
				wait = w
			}
			if done != nil {
				dones = append(dones, done)
			}
		}
		if !s.hasRoom {
			take(claim(tails, tails.readingRooms, v.Room))
		}
		if !s.hasUser {
			take(claim(tails, tails.readingUsers, v.UserID))
		}
		if wait != nil && waits < 2 {
			for _, done := range dones {
				done()
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return s, ctx.Err()
			}
		}
		// Deferred: a read that panics (the router recovers) must still
		// end its claims, or every later stream of the half waits for it.
		for _, done := range dones {
			defer done()
		}
		err := c.readTails(ctx, v, &s)
		return s, err
	}
}

// readTails reads the halves s is missing, up to s.asOf, and keeps them.
func (c *Chat) readTails(ctx context.Context, v models.Visibility, s *snapshot) error {
	tails := c.hub.tails
	if !s.hasRoom {
		rows, err := c.history.RoomNewest(ctx, v.Room, s.asOf, tails.size)
		if err != nil {
			return err
		}
		s.room = tailOf(rows)
		tails.installRoom(v.Room, s.room, s.asOf, &c.hub.recent)
	}
	if !s.hasUser {
		rows, err := c.history.PrivateNewest(ctx, v.UserID, s.asOf, tails.size)
		if err != nil {
			return err
		}
		s.user = tailOf(rows)
		tails.installUser(v.UserID, s.user, s.asOf, &c.hub.recent)
	}
	return nil
}

// newest is the newest limit messages of the two halves, as frames,
// oldest first.
func (s *snapshot) newest(limit int) ([]*Frame, int64) {
	return s.merge(0, limit)
}

// after is every message of the two halves with id > cursor, oldest
// first; ok is false when a half may have more than it holds (it is full,
// and its oldest is newer than cursor+1).
func (s *snapshot) after(cursor int64, size int) (frames []*Frame, last int64, ok bool) {
	for _, tl := range []*tail{&s.room, &s.user} {
		if len(tl.ids) >= size && tl.ids[0] > cursor+1 {
			return nil, 0, false
		}
	}
	frames, last = s.merge(cursor, len(s.room.ids)+len(s.user.ids))
	return frames, last, true
}

// merge returns the newest limit messages with id > cursor of the two
// halves, oldest first, and the newest one's id. It walks from the newest
// end, then turns the result around; room is left for the users and ready
// frames that follow.
func (s *snapshot) merge(cursor int64, limit int) ([]*Frame, int64) {
	room, user := &s.room, &s.user
	out := make([]*Frame, 0, min(limit, len(room.ids)+len(user.ids))+2)
	var last int64
	i, j := len(room.ids)-1, len(user.ids)-1
	for len(out) < limit {
		var id int64
		var f *Frame
		switch {
		case i >= 0 && (j < 0 || room.ids[i] > user.ids[j]):
			id, f = room.ids[i], room.frames[i]
			i--
		case j >= 0:
			id, f = user.ids[j], user.frames[j]
			j--
		}
		if f == nil || id <= cursor {
			break
		}
		if last == 0 {
			last = id
		}
		out = append(out, f)
	}
	slices.Reverse(out)
	return out, last
}
