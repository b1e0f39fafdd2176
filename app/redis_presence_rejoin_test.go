package app

import (
	"context"
	"testing"
	"time"
)

// Tests of the joins that happen while Redis is down and that Redis then
// comes back empty (restarted without persistence): the rebuild is quiet
// for users online all along, but announces, once, those who joined
// during the outage.

// rejoinOpts beat fast so that the joins held by a rebuild (a TTL) fall
// due quickly.
func rejoinOpts(url string) presenceOpts {
	return presenceOpts{url: url, prefix: "papotest:", heartbeat: 100 * time.Millisecond, ttl: time.Second}
}

// joinsLeaves returns name's changes as a string of + (join) and - (leave).
func joinsLeaves(changes *changeLog, name string) string {
	s := ""
	for _, c := range changes.of(name) {
		if c.Joined {
			s += "+"
		} else {
			s += "-"
		}
	}
	return s
}

// stopRedis stops the private Redis and waits until every instance has
// noticed.
func stopRedis(t *testing.T, srv *redisServer, insts ...*RedisPresence) {
	t.Helper()
	srv.stop()
	eventually(t, 10*time.Second, "the instances notice the outage", func() bool {
		for _, p := range insts {
			if p.usable() {
				return false
			}
		}
		return true
	})
}

func startRedisAgain(t *testing.T, srv *redisServer, insts ...*RedisPresence) {
	t.Helper()
	srv.start(t, srv.cmd.Path)
	eventually(t, 15*time.Second, "the instances are back", func() bool {
		for _, p := range insts {
			if !p.usable() {
				return false
			}
		}
		return true
	})
}

func TestRedisPresenceAnnouncesOutageJoinsWhenRedisCameBackEmpty(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	o := rejoinOpts(srv.url)
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"} // on a all along
	bia := UserRef{ID: 2, Name: "bia"} // on b, reloads onto a during the outage
	eve := UserRef{ID: 3, Name: "eve"} // joins on b during the outage
	fay := UserRef{ID: 4, Name: "fay"} // joins on a during it, leaves right after
	gus := UserRef{ID: 5, Name: "gus"} // joins and leaves during it
	must(t, a.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", bia))

	stopRedis(t, srv, a, b)
	b.Disconnect(ctx, "general", bia)
	must(t, a.Connect(ctx, "general", bia))
	must(t, b.Connect(ctx, "general", eve))
	must(t, a.Connect(ctx, "general", fay))
	must(t, b.Connect(ctx, "general", gus))
	b.Disconnect(ctx, "general", gus)
	if n := len(changes.of("eve")); n != 0 {
		t.Fatalf("eve's join was announced during the outage")
	}

	startRedisAgain(t, srv, a, b)
	a.Disconnect(ctx, "general", fay) // before her held join is decided
	eventually(t, 15*time.Second, "eve's join is announced", func() bool { return changes.count("eve", true) == 1 })
	eventually(t, 15*time.Second, "fay's join and leave are announced", func() bool { return joinsLeaves(&changes, "fay") == "+-" })
	time.Sleep(o.ttl + 3*testGrace) // every held join is decided by now
	for name, want := range map[string]string{"ana": "+", "bia": "+", "eve": "+", "fay": "+-", "gus": ""} {
		if got := joinsLeaves(&changes, name); got != want {
			t.Errorf("%s's changes: %q, want %q (%+v)", name, got, want, changes.of(name))
		}
	}
	for _, p := range []*RedisPresence{a, b} {
		if got := online(t, p, "general"); !equalNames(got, []string{"ana", "bia", "eve"}) {
			t.Fatalf("online after the outage: %v", got)
		}
	}

	// Her leave comes after her join, once.
	b.Disconnect(ctx, "general", eve)
	eventually(t, 10*time.Second, "eve leaves", func() bool { return changes.count("eve", false) == 1 })
	time.Sleep(3 * testGrace)
	if got := joinsLeaves(&changes, "eve"); got != "+-" {
		t.Fatalf("eve's changes: %q, want a join then a leave", got)
	}
}

// A user whose streams on two instances both opened during the outage
// joins once, whichever instance rebuilds first.
func TestRedisPresenceOutageJoinOnTwoInstancesIsAnnouncedOnce(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	o := rejoinOpts(srv.url)
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	c := startPresence(t, o, "c", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	eve := UserRef{ID: 3, Name: "eve"}
	must(t, c.Connect(ctx, "general", ana))

	stopRedis(t, srv, a, b, c)
	must(t, a.Connect(ctx, "general", eve))
	must(t, b.Connect(ctx, "general", eve))
	must(t, b.Connect(ctx, "random", ana)) // new in random: a join there
	startRedisAgain(t, srv, a, b, c)

	eventually(t, 15*time.Second, "eve's join is announced", func() bool { return changes.count("eve", true) == 1 })
	time.Sleep(o.ttl + 3*testGrace)
	if got := joinsLeaves(&changes, "eve"); got != "+" {
		t.Fatalf("eve's changes: %+v, want one join", changes.of("eve"))
	}
	var rooms []string
	for _, ch := range changes.of("ana") {
		if !ch.Joined {
			t.Fatalf("ana left: %+v", ch)
		}
		rooms = append(rooms, ch.Room)
	}
	if !equalNames(rooms, []string{"general", "random"}) {
		t.Fatalf("ana joined %v, want general (before the outage) then random", rooms)
	}

	a.Disconnect(ctx, "general", eve)
	time.Sleep(3 * testGrace) // still on b
	b.Disconnect(ctx, "general", eve)
	eventually(t, 10*time.Second, "eve leaves", func() bool { return changes.count("eve", false) == 1 })
	time.Sleep(3 * testGrace)
	if got := joinsLeaves(&changes, "eve"); got != "+-" {
		t.Fatalf("eve's changes: %+v, want a join then a leave", changes.of("eve"))
	}
}

// A stream that opens on an instance that has not yet noticed that Redis
// lost its data (it restarted between two beats) is a join, announced
// once; the users online before are not announced again.
func TestRedisPresenceJoinIntoAnEmptiedRedis(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	o := rejoinOpts(srv.url)
	o.heartbeat = time.Second // so the stream usually opens before the next beat
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	eve := UserRef{ID: 3, Name: "eve"}
	must(t, a.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", ana))

	srv.restart(t)
	must(t, a.Connect(ctx, "general", eve))
	eventually(t, 15*time.Second, "eve's join is announced", func() bool { return changes.count("eve", true) == 1 })
	eventually(t, 15*time.Second, "the records are back", func() bool {
		return a.usable() && b.usable() && equalNames(online(t, b, "general"), []string{"ana", "eve"})
	})
	time.Sleep(o.ttl + 3*testGrace)
	if got := joinsLeaves(&changes, "eve"); got != "+" {
		t.Fatalf("eve's changes: %+v, want one join", changes.of("eve"))
	}
	if got := joinsLeaves(&changes, "ana"); got != "+" {
		t.Fatalf("ana's changes: %+v, want the first join alone", changes.of("ana"))
	}
}

// A user who reloads inside the leave grace just as Redis comes back empty
// was online all along: no second join.
func TestRedisPresenceReloadInGraceAcrossEmptiedRedis(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	var changes changeLog
	p := startPresence(t, presenceOpts{url: srv.url, prefix: "papotest:", grace: 5 * time.Second, heartbeat: time.Second, ttl: time.Second}, "a", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	must(t, p.Connect(ctx, "general", ana))
	eventually(t, 5*time.Second, "ana joins", func() bool { return changes.count("ana", true) == 1 })

	p.Disconnect(ctx, "general", ana) // the reload starts: leave due in 5 s
	srv.restart(t)
	must(t, p.Connect(ctx, "general", ana)) // the reload ends, well inside the grace
	eventually(t, 15*time.Second, "the record is back", func() bool {
		return p.usable() && equalNames(online(t, p, "general"), []string{"ana"})
	})
	time.Sleep(3 * time.Second) // past a held join's TTL
	if got := joinsLeaves(&changes, "ana"); got != "+" {
		t.Fatalf("ana's changes: %q (%+v), want the first join alone", got, changes.of("ana"))
	}
}

// A user who left during the outage leaves when Redis comes back empty:
// announced once, after every instance has rebuilt, and only if no
// instance holds a stream of theirs any more.
func TestRedisPresenceAnnouncesOutageLeavesWhenRedisCameBackEmpty(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	o := rejoinOpts(srv.url)
	var changes changeLog
	a := startPresence(t, o, "a", &changes)
	b := startPresence(t, o, "b", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"} // on a all along
	hal := UserRef{ID: 2, Name: "hal"} // on b, leaves during the outage
	ivy := UserRef{ID: 3, Name: "ivy"} // on a and b, closes b's tab during it
	jon := UserRef{ID: 4, Name: "jon"} // in two rooms on b, leaves one during it
	must(t, a.Connect(ctx, "general", ana))
	must(t, b.Connect(ctx, "general", hal))
	must(t, a.Connect(ctx, "general", ivy))
	must(t, b.Connect(ctx, "general", ivy))
	must(t, b.Connect(ctx, "general", jon))
	must(t, b.Connect(ctx, "random", jon))
	eventually(t, 5*time.Second, "everyone joins", func() bool {
		return changes.count("ana", true) == 1 && changes.count("hal", true) == 1 &&
			changes.count("ivy", true) == 1 && changes.count("jon", true) == 2
	})

	stopRedis(t, srv, a, b)
	b.Disconnect(ctx, "general", hal)
	b.Disconnect(ctx, "general", ivy)
	b.Disconnect(ctx, "random", jon)
	startRedisAgain(t, srv, a, b)

	eventually(t, 15*time.Second, "hal's leave is announced", func() bool { return changes.count("hal", false) == 1 })
	eventually(t, 15*time.Second, "jon leaves random", func() bool { return changes.count("jon", false) == 1 })
	time.Sleep(o.ttl + 3*testGrace) // every held leave is decided by now
	for name, want := range map[string]string{"ana": "+", "hal": "+-", "ivy": "+", "jon": "++-"} {
		if got := joinsLeaves(&changes, name); got != want {
			t.Errorf("%s's changes: %q, want %q (%+v)", name, got, want, changes.of(name))
		}
	}
	if left := changes.of("jon")[2]; left.Room != "random" {
		t.Errorf("jon left %s, want random", left.Room)
	}
	for _, p := range []*RedisPresence{a, b} {
		if got := online(t, p, "general"); !equalNames(got, []string{"ana", "ivy", "jon"}) {
			t.Errorf("online in general after the outage: %v", got)
		}
		if got := online(t, p, "random"); len(got) != 0 {
			t.Errorf("online in random after the outage: %v", got)
		}
	}
}

// A user whose leave was pending when Redis restarted empty, between two
// beats, still leaves, once. (One whose leave had fallen due before the
// restart was noticed may or may not have been announced by then, and is
// not claimed: see onlineHere.)
func TestRedisPresenceLeaveInGraceAcrossEmptiedRedis(t *testing.T) {
	requireRedis(t)
	srv := startRedisServer(t)
	var changes changeLog
	p := startPresence(t, presenceOpts{url: srv.url, prefix: "papotest:", grace: 5 * time.Second, heartbeat: time.Second, ttl: time.Second}, "a", &changes)
	ctx := context.Background()
	ana := UserRef{ID: 1, Name: "ana"}
	hal := UserRef{ID: 2, Name: "hal"}
	must(t, p.Connect(ctx, "general", ana))
	must(t, p.Connect(ctx, "general", hal))
	eventually(t, 5*time.Second, "both join", func() bool {
		return changes.count("ana", true) == 1 && changes.count("hal", true) == 1
	})

	p.Disconnect(ctx, "general", hal) // leave due in 5 s
	srv.restart(t)
	eventually(t, 15*time.Second, "hal's leave is announced", func() bool { return changes.count("hal", false) == 1 })
	if got := online(t, p, "general"); !equalNames(got, []string{"ana"}) {
		t.Fatalf("online after the restart: %v", got)
	}
	time.Sleep(3 * time.Second) // past another sweep's chance to repeat it
	if got := joinsLeaves(&changes, "hal"); got != "+-" {
		t.Fatalf("hal's changes: %q (%+v), want a join then a leave", got, changes.of("hal"))
	}
	if got := joinsLeaves(&changes, "ana"); got != "+" {
		t.Fatalf("ana's changes: %q (%+v), want the first join alone", got, changes.of("ana"))
	}
}
