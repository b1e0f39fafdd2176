package app

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// PresenceManager decides who is online in which room from the lifetime of
// their streams. It calls back with a PresenceChange when a user joins (the
// first stream opens) or leaves (the last stream has stayed closed for the
// grace period), and must call back in the order it decides them.
type PresenceManager interface {
	Connect(ctx context.Context, room string, user UserRef) error
	Disconnect(ctx context.Context, room string, user UserRef)
	// Online lists the usernames online in room, sorted. The slice may
	// be shared with other callers: it must not be changed.
	Online(ctx context.Context, room string) ([]string, error)
	// Rooms lists the rooms with someone online.
	Rooms(ctx context.Context) ([]RoomCount, error)
	Close() error
}

// PresenceChange is a decided join or leave.
type PresenceChange struct {
	Room   string
	User   UserRef
	Joined bool // false: left
	// Stamp orders the decisions of a cluster (see RedisPresence); 0 on
	// one instance, whose announcer already stores them in order.
	Stamp int64
}

// RoomCount is a room and how many users are online in it.
type RoomCount struct {
	Room  string `json:"room"`
	Users int    `json:"users"`
}

// MemoryPresence is the presence of a single instance.
type MemoryPresence struct {
	grace  time.Duration
	notify func(PresenceChange)

	mu    sync.Mutex
	rooms map[string]map[int64]*presenceEntry
	// sorted caches Online per room; a join or leave there drops it.
	sorted map[string][]string
}

type presenceEntry struct {
	user    UserRef
	streams int
	leave   *time.Timer // set while the user has no stream, during the grace
	// leaveGen tells the current leave timer's callback from a stale one.
	leaveGen uint64
}

// NewMemoryPresence tracks presence in this process. notify is called
// under the presence lock, so it must not block; see Announcer.
func NewMemoryPresence(grace time.Duration, notify func(PresenceChange)) *MemoryPresence {
	return &MemoryPresence{grace: grace, notify: notify, rooms: map[string]map[int64]*presenceEntry{}}
}

func (p *MemoryPresence) Connect(_ context.Context, room string, user UserRef) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	users := p.rooms[room]
	if users == nil {
		users = map[int64]*presenceEntry{}
		p.rooms[room] = users
	}
	e := users[user.ID]
	if e == nil {
		e = &presenceEntry{user: user}
		users[user.ID] = e
		delete(p.sorted, room)
		p.notify(PresenceChange{Room: room, User: user, Joined: true})
	}
	if e.leave != nil {
		// Back inside the grace (a reload): no leave, no join.
		e.leave.Stop()
		e.leave = nil
	}
	e.streams++
	return nil
}

func (p *MemoryPresence) Disconnect(_ context.Context, room string, user UserRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.rooms[room][user.ID]
	if e == nil || e.streams == 0 {
		return
	}
	e.streams--
	if e.streams > 0 {
		return
	}
	e.leaveGen++
	gen := e.leaveGen
	e.leave = time.AfterFunc(p.grace, func() { p.expire(room, user.ID, gen) })
}

func (p *MemoryPresence) expire(room string, userID int64, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.rooms[room][userID]
	if e == nil || e.leave == nil || e.leaveGen != gen || e.streams > 0 {
		return // reconnected meanwhile
	}
	delete(p.rooms[room], userID)
	delete(p.sorted, room)
	if len(p.rooms[room]) == 0 {
		delete(p.rooms, room)
	}
	p.notify(PresenceChange{Room: room, User: e.user, Joined: false})
}

func (p *MemoryPresence) Online(_ context.Context, room string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Every stream that opens asks, so the sorted list is kept until the
	// room's membership changes, and handed out as it is (a change makes
	// a new one).
	if names, ok := p.sorted[room]; ok {
		return names, nil
	}
	names := make([]string, 0, len(p.rooms[room]))
	for _, e := range p.rooms[room] {
		names = append(names, e.user.Name)
	}
	SortUsernames(names)
	if p.sorted == nil {
		p.sorted = map[string][]string{}
	}
	p.sorted[room] = names
	return names, nil
}

func (p *MemoryPresence) Rooms(_ context.Context) ([]RoomCount, error) {
	p.mu.Lock()
	out := make([]RoomCount, 0, len(p.rooms))
	for room, users := range p.rooms {
		out = append(out, RoomCount{Room: room, Users: len(users)})
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b RoomCount) int {
		if a.Users != b.Users {
			return b.Users - a.Users
		}
		if a.Room < b.Room {
			return -1
		}
		return 1
	})
	return out, nil
}

// Snapshot lists the users online in each room, those in the leave grace
// included.
func (p *MemoryPresence) Snapshot() map[string][]UserRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]UserRef, len(p.rooms))
	for room, users := range p.rooms {
		for _, e := range users {
			out[room] = append(out[room], e.user)
		}
	}
	return out
}

// Restore makes the given users online, each as if their last stream had
// just closed: one that reconnects within the grace is not announced, one
// that does not is announced as leaving. It is for a start, before any
// stream opens; a user already present is left as it is.
func (p *MemoryPresence) Restore(rooms map[string][]UserRef) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for room, users := range rooms {
		if p.rooms[room] == nil {
			p.rooms[room] = map[int64]*presenceEntry{}
		}
		for _, u := range users {
			if p.rooms[room][u.ID] != nil {
				continue
			}
			e := &presenceEntry{user: u, leaveGen: 1}
			p.rooms[room][u.ID] = e
			room, id := room, u.ID
			e.leave = time.AfterFunc(p.grace, func() { p.expire(room, id, 1) })
		}
		delete(p.sorted, room)
	}
}

// Close stops pending leave timers. The users of an instance that stops
// are not announced as leaving: their clients reconnect, to this instance
// when it is back or to a sibling.
func (p *MemoryPresence) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, users := range p.rooms {
		for _, e := range users {
			if e.leave != nil {
				e.leave.Stop()
			}
		}
	}
	p.rooms = map[string]map[int64]*presenceEntry{}
	p.sorted = nil
	return nil
}

// SortUsernames sorts names as people read a list: without regard to case,
// with the exact bytes breaking ties so the order is stable.
func SortUsernames(names []string) {
	slices.SortFunc(names, func(a, b string) int {
		if c := compareFold(a, b); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
}

// compareFold is strings.Compare(strings.ToLower(a), strings.ToLower(b))
// without building the lower-case strings, for ASCII; other text takes
// the general way.
func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca >= 0x80 || cb >= 0x80 {
			return strings.Compare(strings.ToLower(a), strings.ToLower(b))
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
