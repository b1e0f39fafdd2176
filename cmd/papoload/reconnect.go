package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// runReconnect is the storm after a proxy restart or a network blip:
// every stream drops at once while messages keep coming, and each comes
// straight back from the last id it received, as EventSource does with
// Last-Event-ID. Across several instances each stream comes back to the
// next one, as a proxy would send it elsewhere. It reports how long until
// all are live again, what the server spent on it, how late the messages
// posted meanwhile arrived, and whether any client lost, repeated or
// reordered a message across the drop.
func runReconnect(ctx context.Context, cfg *config) error {
	rooms := max(1, min(cfg.rooms, cfg.streams))
	capHint := int(cfg.rate*cfg.duration.Seconds())/rooms + 64
	accts, first, err := setup(ctx, cfg, capHint, nil)
	if err != nil {
		return err
	}
	sleep(ctx, time.Second) // let the joins' announcements pass
	base, err := newestIDs(ctx, cfg, accts[0])
	if err != nil {
		first.closeAll()
		return err
	}
	first.record.Store(true)

	type postRun struct {
		posts []postRec
		late  int
	}
	posted := make(chan postRun, 1)
	go func() {
		p := newPoster(cfg)
		posts, late := p.runRate(ctx, cfg.rate, cfg.duration, func(i int) (*url.URL, string, account) {
			return cfg.urls[i%len(cfg.urls)], cfg.roomName(i), accts[i%len(accts)]
		})
		posted <- postRun{posts, late}
	}()
	sleep(ctx, cfg.duration/3)

	s0 := sampleServer(ctx, cfg)
	prof := startProfile(ctx, cfg, 2)
	dropped := first.alive()
	drop := now()
	first.closeAll()
	// Each client's cursor: the last message it received, or where the
	// room stood before the posting began.
	cursor := make([]int64, cfg.streams)
	for i, st := range first.streams {
		cursor[i] = base[cfg.roomName(i)]
		for _, r := range st.recs {
			cursor[i] = max(cursor[i], r.id)
		}
	}
	second, _ := openStreams(ctx, cfg, func(i int) (*url.URL, string, string, account) {
		return cfg.urls[(i+1)%len(cfg.urls)], cfg.roomName(i), strconv.FormatInt(cursor[i], 10), accts[i%len(accts)]
	}, capHint, true)
	perStream, back := second.readyTimes(drop)
	s1 := sampleServer(ctx, cfg)
	prof.finish(ctx)

	run := <-posted
	want := storedByRoom(run.posts, cfg, base)
	// Every client has the rest of its room's messages after its cursor.
	var expect int64
	for i, st := range second.streams {
		if st.readyAt != 0 {
			expect += int64(len(want[cfg.roomName(i)]) - countUpTo(want[cfg.roomName(i)], cursor[i]))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for second.received.Load()+second.replayed.Load() < expect && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	second.closeAll()

	fmt.Printf("reconnect: %d streams dropped at once, %s into %s of %.0f msg/s; %d back, %d failed; all back %s after the drop\n",
		dropped, cfg.duration/3, cfg.duration, cfg.rate, second.ready.Load(), second.failed.Load(), time.Duration(back).Round(time.Millisecond))
	fmt.Printf("reconnect: per stream, dial to ready: %s\n", dist(perStream))
	for _, e := range second.firstErrors(5) {
		fmt.Println("reconnect error:", e)
	}
	var whole, missing, repeated, disordered int
	clients := 0
	for i, st := range second.streams {
		if st.readyAt == 0 {
			continue
		}
		clients++
		m, r, d := resumeCheck(first.streams[i].recs, st.recs, want[cfg.roomName(i)])
		missing, repeated, disordered = missing+m, repeated+r, disordered+d
		if m+r+d == 0 {
			whole++
		}
	}
	stored := 0
	for _, ids := range want {
		stored += len(ids)
	}
	fmt.Printf("across the drop: %d of %d clients got every message once and in order (%d of %d posts stored over the run, %d sent >10 ms late): %d missing, %d repeated, %d out of order\n",
		whole, clients, stored, len(run.posts), run.late, missing, repeated, disordered)

	// The messages answered while the streams were down reach the clients
	// in their backlogs: how late, and how the posts fared meanwhile.
	var meanwhile []postRec
	for _, r := range run.posts {
		if r.answered >= drop && r.answered <= drop+back {
			meanwhile = append(meanwhile, r)
		}
	}
	fromAnswer, _, _ := latencies(second, meanwhile)
	fmt.Printf("messages answered while the streams were down: %d; delivered %s after their answer\n", len(meanwhile), dist(fromAnswer))
	summarizePosts(meanwhile)
	serverDelta(s0, s1, second.ready.Load(), "streams back")
	fmt.Printf("load tool CPU: %s\n", selfCPU().Round(time.Millisecond))
	return nil
}

// storedByRoom lists, per room and ascending, the ids of the posts that
// were stored after base (the room's newest id before the posting).
func storedByRoom(posts []postRec, cfg *config, base map[string]int64) map[string][]int64 {
	out := map[string][]int64{}
	for _, r := range posts {
		room := cfg.roomName(r.seq)
		if !r.err && r.id > base[room] {
			out[room] = append(out[room], r.id)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// countUpTo is how many of the ascending ids are at most id.
func countUpTo(ids []int64, id int64) int {
	n, found := slices.BinarySearch(ids, id)
	if found {
		n++
	}
	return n
}

// resumeCheck compares what one client received over its two streams, the
// first up to the drop and the second from its cursor, with want, the
// ascending ids of its room's messages stored during the run: each must
// come once, in order. Other messages (joins, leaves) may come too, but
// once each and in order as well.
func resumeCheck(before, after []receipt, want []int64) (missing, repeated, disordered int) {
	seen := make(map[int64]bool, len(want))
	var last int64
	for _, recs := range [][]receipt{before, after} {
		for _, r := range recs {
			switch {
			case seen[r.id]:
				repeated++
			case r.id <= last:
				disordered++
			}
			seen[r.id] = true
			last = max(last, r.id)
		}
	}
	for _, id := range want {
		if !seen[id] {
			missing++
		}
	}
	return missing, repeated, disordered
}
