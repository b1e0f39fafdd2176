package app

import (
	"encoding/json"
	"strings"
	"testing"
)

// The users frame a stream opens with lists whoever is online now: the
// kept frame is reused only while the list is the same.
func TestUsersFrameFollowsTheList(t *testing.T) {
	var u usersFrames
	decode := func(f *Frame) UsersEvent {
		t.Helper()
		s := string(f.Bytes)
		if !strings.HasPrefix(s, "event: users\ndata: ") || !strings.HasSuffix(s, "\n\n") {
			t.Fatalf("frame %q", s)
		}
		var ev UsersEvent
		if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(s, "event: users\ndata: "), "\n\n")), &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	steps := []struct {
		room  string
		users []string
		reuse bool // the previous frame of this room is handed out again
	}{
		{"general", []string{"ana"}, false},
		{"general", []string{"ana"}, true},
		{"general", []string{"ana", "bia"}, false},
		{"dev", []string{"ana", "bia"}, false},
		{"general", []string{"ana", "bia"}, true},
		{"general", []string{"bia"}, false},
		{"general", []string{}, false},
	}
	last := map[string]*Frame{}
	for i, s := range steps {
		f := u.frame(s.room, s.users)
		ev := decode(f)
		if ev.Room != s.room || strings.Join(ev.Users, ",") != strings.Join(s.users, ",") {
			t.Errorf("step %d: %+v, want room %s users %v", i, ev, s.room, s.users)
		}
		if reused := f == last[s.room]; reused != s.reuse {
			t.Errorf("step %d: reused %v, want %v", i, reused, s.reuse)
		}
		last[s.room] = f
	}
}
