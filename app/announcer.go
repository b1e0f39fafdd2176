package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"papo/models"
)

// Announcer turns presence changes into what the room sees: the stored
// "joined"/"left" system message and a fresh users event. One goroutine
// does this, in the order presence decided, so a quick leave and rejoin
// are stored in that order; and it takes every change that is waiting at
// once, so a thousand streams connecting together cost a few batches and
// one users event per room.
type Announcer struct {
	writer   *Writer
	hub      *Hub
	presence func() PresenceManager
	log      *slog.Logger

	mu      sync.Mutex
	queue   []PresenceChange
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	closeMu sync.Once
}

// NewAnnouncer starts the announcer. presence is read lazily because the
// presence manager is built with the announcer's Notify as its callback.
func NewAnnouncer(writer *Writer, hub *Hub, presence func() PresenceManager, log *slog.Logger) *Announcer {
	a := &Announcer{
		writer: writer, hub: hub, presence: presence, log: log,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go a.run()
	return a
}

// Notify queues a change; it never blocks.
func (a *Announcer) Notify(c PresenceChange) {
	a.mu.Lock()
	a.queue = append(a.queue, c)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Close announces what is queued and stops.
func (a *Announcer) Close() {
	a.closeMu.Do(func() { close(a.quit) })
	<-a.done
}

func (a *Announcer) run() {
	defer close(a.done)
	for {
		select {
		case <-a.wake:
			a.announce()
		case <-a.quit:
			a.announce()
			return
		}
	}
}

func (a *Announcer) announce() {
	a.mu.Lock()
	changes := a.queue
	a.queue = nil
	a.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	type pending struct {
		change  PresenceChange
		verdict <-chan error
	}
	verdicts := make([]pending, 0, len(changes))
	rooms := map[string]bool{}
	for _, c := range changes {
		rooms[c.Room] = true
		errc, err := a.writer.Submit(ctx, systemMessage(c))
		if err != nil {
			a.log.Error("presence: announcing", "room", c.Room, "user", c.User.Name, "joined", c.Joined, "err", err)
			continue
		}
		verdicts = append(verdicts, pending{c, errc})
	}
	for _, p := range verdicts {
		switch err := <-p.verdict; {
		case errors.Is(err, errSuperseded):
			// Another instance stored the decision that followed this
			// one first: the room's history ends as presence does.
			a.log.Info("presence: not stored, superseded by a later decision stored first",
				"room", p.change.Room, "user", p.change.User.Name, "joined", p.change.Joined)
		case err != nil:
			a.log.Error("presence: storing a join or leave message",
				"room", p.change.Room, "user", p.change.User.Name, "joined", p.change.Joined, "err", err)
		}
	}
	for room := range rooms {
		if err := PublishUsers(ctx, a.hub, a.presence(), room); err != nil {
			a.log.Warn("presence: publishing users", "room", room, "err", err)
		}
	}
}

// UsersEvent is the data of a users event.
type UsersEvent struct {
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

// stampedOnline is a presence manager shared by several instances: it
// tells when, in the order of its decisions, an online list was read.
type stampedOnline interface {
	OnlineStamped(ctx context.Context, room string) ([]string, int64, error)
}

// PublishUsers sends the room's online list to its streams everywhere.
func PublishUsers(ctx context.Context, hub *Hub, presence PresenceManager, room string) error {
	var (
		users []string
		stamp int64
		err   error
	)
	if sp, ok := presence.(stampedOnline); ok {
		users, stamp, err = sp.OnlineStamped(ctx, room)
	} else {
		users, err = presence.Online(ctx, room)
	}
	if err != nil {
		return err
	}
	return hub.PublishEvent(ctx, Envelope{Type: EventUsers, Room: room, Stamp: stamp}, UsersEvent{Room: room, Users: users})
}

func systemMessage(c PresenceChange) *models.Message {
	m := &models.Message{Room: c.Room, Kind: models.KindSystem, UserID: c.User.ID, Username: c.User.Name, PresenceStamp: c.Stamp}
	if c.Joined {
		m.Event = models.EventJoin
		m.Body = fmt.Sprintf("%s joined the chat", c.User.Name)
	} else {
		m.Event = models.EventLeave
		m.Body = fmt.Sprintf("%s left the chat", c.User.Name)
	}
	m.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	return m
}
