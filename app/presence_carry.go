package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// A single instance keeps its users' presence across a restart the way a
// page reload keeps it: on a graceful stop it stores who was online, and
// the next start takes that list back with each user in the leave grace.
// Users whose clients reconnect within the grace (they retry every 2 s)
// are neither announced as leaving nor as joining again; the others are
// announced as leaving once the grace ends. Without this, every deploy
// posted a "joined" for each user and never a "left".
//
// With Redis, presence lives there and outlasts any one instance, so this
// applies only to MemoryPresence.

// presenceSetting is the setting that holds the stored presence.
const presenceSetting = "presence_at_stop"

// presenceCarryMax bounds the stop that presence is carried across: after
// a longer one, the users are long gone and announcing each of them as
// leaving would only be noise.
const presenceCarryMax = time.Minute

// PresenceSnapshots keeps a stopped instance's presence until it starts.
type PresenceSnapshots interface {
	PutSetting(ctx context.Context, name, value string) error
	TakeSetting(ctx context.Context, name string) (value string, ok bool, err error)
}

// presenceAtStop is the stored form: who was online in which room.
type presenceAtStop struct {
	SavedAt time.Time            `json:"saved_at"`
	Rooms   map[string][]UserRef `json:"rooms"`
}

// savePresence stores p's online users.
func savePresence(ctx context.Context, store PresenceSnapshots, p *MemoryPresence, now time.Time) error {
	raw, err := json.Marshal(presenceAtStop{SavedAt: now.UTC(), Rooms: p.Snapshot()})
	if err != nil {
		return err
	}
	return store.PutSetting(ctx, presenceSetting, string(raw))
}

// restorePresence takes the stored presence, if any, and gives it to p
// when the stop it spans was short enough. It reports how many users it
// restored.
func restorePresence(ctx context.Context, store PresenceSnapshots, p *MemoryPresence, now time.Time) (int, error) {
	raw, ok, err := store.TakeSetting(ctx, presenceSetting)
	if err != nil || !ok {
		return 0, err
	}
	var snap presenceAtStop
	if err := json.Unmarshal([]byte(raw), &snap); err != nil {
		return 0, fmt.Errorf("reading the stored presence: %w", err)
	}
	if age := now.Sub(snap.SavedAt); age < 0 || age > presenceCarryMax {
		return 0, nil
	}
	n := 0
	for room, users := range snap.Rooms {
		if CheckRoom(room) != nil {
			delete(snap.Rooms, room)
			continue
		}
		n += len(users)
	}
	p.Restore(snap.Rooms)
	return n, nil
}
