package routes

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"papo/e2e/client"
	"papo/models"
)

// A graceful restart of a single instance is, for presence, a reload: the
// users whose clients come back within the leave grace are neither
// announced as leaving nor as joining again, and the others are announced
// as leaving once the grace is over.
func TestRestartCarriesPresence(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		first := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia := first.user(t, "ana"), first.user(t, "bia")
		anaStream := watch(t, ana, "general", "")
		anaStream.untilReady()
		watch(t, bia, "general", "").untilReady()
		anaStream.message(func(m client.Message) bool { return m.Event == "join" && m.Username == "bia" })
		cursor := anaStream.cursor
		first.Close()

		second := newTestServer(t, store)
		ana.Base, bia.Base = second.URL, second.URL
		back := watch(t, ana, "general", cursor)
		_, ready := back.untilReady()
		if ready.Resume != "ok" {
			t.Fatalf("resume after the restart: %+v", ready)
		}
		users, err := ana.Users(ctx, "general")
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != 2 {
			t.Fatalf("online right after the restart: %v, want ana and bia (bia is in the grace)", users)
		}
		// bia does not come back: announced as leaving after the grace.
		left := back.message(func(m client.Message) bool { return m.Kind == "system" })
		if left.Event != "leave" || left.Username != "bia" {
			t.Fatalf("first system message after the restart: %+v, want bia leaving", left)
		}
		time.Sleep(200 * time.Millisecond)
		var joins, leaves = map[string]int{}, map[string]int{}
		for _, m := range storedVisible(t, store, "general", 0) {
			switch m.Event {
			case "join":
				joins[m.Username]++
			case "leave":
				leaves[m.Username]++
			}
		}
		if joins["ana"] != 1 || joins["bia"] != 1 || leaves["ana"] != 0 || leaves["bia"] != 1 {
			t.Fatalf("joins %v, leaves %v; want one join each, and bia's leave alone", joins, leaves)
		}
		if users, _ := ana.Users(context.Background(), "general"); len(users) != 1 || users[0] != "ana" {
			t.Fatalf("online after the grace: %v", users)
		}
	})
}

func TestRoomsListsTheBusiestFirst(t *testing.T) {
	eachStore(t, func(t *testing.T, store *models.Store) {
		s := newTestServer(t, store)
		ctx := ctxT(t)
		ana, bia, caio := s.user(t, "ana"), s.user(t, "bia"), s.user(t, "caio")
		empty, err := ana.Rooms(ctx)
		if err != nil || empty == nil || len(empty) != 0 {
			t.Fatalf("rooms with nobody online: %#v, %v; want an empty list", empty, err)
		}
		watch(t, ana, "general", "").untilReady()
		watch(t, bia, "general", "").untilReady()
		watch(t, caio, "lobby", "").untilReady()
		watch(t, caio, "lobby", "").untilReady() // a second tab counts once
		rooms, err := ana.Rooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []client.RoomCount{{Room: "general", Users: 2}, {Room: "lobby", Users: 1}}
		if !slices.Equal(rooms, want) {
			t.Fatalf("GET /rooms = %+v, want %+v", rooms, want)
		}
		if _, err := s.client().Rooms(ctx); status(err) != http.StatusUnauthorized {
			t.Fatalf("GET /rooms without a session: %v, want 401", err)
		}
	})
}
