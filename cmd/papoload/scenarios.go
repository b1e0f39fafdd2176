package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// roomName is the room of stream or post i.
func (cfg *config) roomName(i int) string {
	if cfg.rooms <= 1 {
		return cfg.room
	}
	return cfg.room + "-" + strconv.Itoa(i%cfg.rooms)
}

// cursors returns, per room, the newest message id there (for -resume:
// the stream then replays nothing), read through the history route.
func cursors(ctx context.Context, cfg *config, acct account) (map[string]string, error) {
	out := map[string]string{}
	if !cfg.resume {
		return out, nil
	}
	ids, err := newestIDs(ctx, cfg, acct)
	if err != nil {
		return nil, err
	}
	for room, id := range ids {
		if id > 0 {
			out[room] = strconv.FormatInt(id, 10)
		}
	}
	return out, nil
}

// newestIDs returns the newest message id of every room the streams use
// (0 for an empty one).
func newestIDs(ctx context.Context, cfg *config, acct account) (map[string]int64, error) {
	out := map[string]int64{}
	p := newPoster(cfg)
	for i := 0; i < max(1, min(cfg.rooms, cfg.streams)); i++ {
		room := cfg.roomName(i)
		if _, ok := out[room]; ok {
			continue
		}
		id, err := newestID(ctx, p, cfg.urls[0], room, acct)
		if err != nil {
			return nil, err
		}
		out[room] = id
	}
	return out, nil
}

func newestID(ctx context.Context, p *poster, u *url.URL, room string, acct account) (int64, error) {
	var out struct {
		Messages []struct {
			ID int64 `json:"id"`
		} `json:"messages"`
	}
	if err := getJSON(ctx, p.hc, u.String()+"/rooms/"+room+"/messages?limit=1", acct.Cookie, &out); err != nil {
		return 0, err
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	return out.Messages[len(out.Messages)-1].ID, nil
}

// setup logs in, and opens the streams, reporting connect time.
// beforeOpen, when set, runs just before the first stream opens.
func setup(ctx context.Context, cfg *config, capHint int, beforeOpen func()) ([]account, *streamSet, error) {
	fmt.Println(machineLine())
	accts, err := ensureAccounts(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	curs, err := cursors(ctx, cfg, accts[0])
	if err != nil {
		return nil, nil, err
	}
	if beforeOpen != nil {
		beforeOpen()
	}
	target := func(i int) (*url.URL, string, string, account) {
		room := cfg.roomName(i)
		return cfg.urls[i%len(cfg.urls)], room, curs[room], accts[i%len(accts)]
	}
	t0 := now()
	set, took := openStreams(ctx, cfg, target, capHint, false)
	perStream, last := set.readyTimes(t0)
	mode := "fresh (backlog of the newest 50)"
	if cfg.resume {
		mode = "resuming from the newest id (no backlog)"
	}
	fmt.Printf("connect: %d streams, %s, %d at a time, from %d source addresses: %d ready, %d failed; all ready in %s\n",
		cfg.streams, mode, cfg.concurrency, len(cfg.sources), set.ready.Load(), set.failed.Load(), time.Duration(last).Round(time.Millisecond))
	fmt.Printf("connect: per stream, dial to ready: %s; waited %s\n", dist(perStream), took.Round(time.Millisecond))
	for _, e := range set.firstErrors(5) {
		fmt.Println("connect error:", e)
	}
	if set.ready.Load() == 0 && cfg.streams > 0 {
		set.closeAll()
		return nil, nil, fmt.Errorf("no stream became ready")
	}
	return accts, set, nil
}

func runConnect(ctx context.Context, cfg *config) error {
	var (
		before serverSample
		prof   *profiler
	)
	_, set, err := setup(ctx, cfg, 0, func() {
		before = sampleServer(ctx, cfg)
		// A CPU profile runs for whole seconds, fixed when it starts: it
		// spans the connects and the settle, which costs next to nothing.
		prof = startProfile(ctx, cfg, int(cfg.settle.Seconds())+2)
	})
	if err != nil {
		return err
	}
	defer set.closeAll()
	sleep(ctx, cfg.settle)
	after := sampleServer(ctx, cfg)
	prof.finish(ctx)
	n := set.alive()
	if before.ok && after.ok && n > 0 {
		fmt.Printf("memory: server RSS %d KiB before, %d KiB with %d open idle streams (after %s): %.1f KiB per stream\n",
			before.rss, after.rss, n, cfg.settle, float64(after.rss-before.rss)/float64(n))
		fmt.Printf("server CPU for the connects: %s (%.1f µs per stream)\n",
			after.cpu-before.cpu, float64((after.cpu-before.cpu).Microseconds())/float64(n))
	}
	if after.open > 0 {
		fmt.Printf("server /metrics: %.0f streams open\n", after.open)
	}
	sleep(ctx, cfg.hold)
	fmt.Printf("load tool CPU: %s\n", selfCPU().Round(time.Millisecond))
	return nil
}

func runFanout(ctx context.Context, cfg *config) error {
	accts, set, err := setup(ctx, cfg, cfg.messages+8, nil)
	if err != nil {
		return err
	}
	sleep(ctx, time.Second) // let the joins' announcements pass
	p := newPoster(cfg)
	n := set.alive()
	s0 := sampleServer(ctx, cfg)
	prof := startProfile(ctx, cfg, int((time.Duration(cfg.messages)*(cfg.gap+200*time.Millisecond)).Seconds())+1)
	set.record.Store(true)
	var posts []postRec
	var costs []schedSample // each message's, from before its post to its last delivery
	incomplete := 0
	conns := newPostConns()
	defer conns.close()
	for m := range cfg.messages {
		if ctx.Err() != nil {
			break
		}
		base := set.received.Load()
		before := sampleSched(cfg.pids)
		r := p.post(ctx, conns, cfg.urls[m%len(cfg.urls)], cfg.room, accts[m%len(accts)], p.body(m))
		posts = append(posts, r)
		deadline := time.Now().Add(cfg.wait)
		for set.received.Load() < base+set.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(200 * time.Microsecond)
		}
		costs = append(costs, sampleSched(cfg.pids).since(before))
		if set.received.Load() < base+set.alive() {
			incomplete++
		}
		sleep(ctx, cfg.gap)
	}
	set.record.Store(false)
	s1 := sampleServer(ctx, cfg)
	prof.finish(ctx)
	set.closeAll()

	fromAnswer, fromSent, byMsg := latencies(set, posts)
	delivered := int64(len(fromAnswer))
	fmt.Printf("fan-out: %d messages, one at a time, to %d streams: %d of %d deliveries (%d messages did not reach every stream within %s)\n",
		len(posts), n, delivered, int64(len(posts))*n, incomplete, cfg.wait)
	fmt.Printf("fan-out latency from the POST's answer: %s\n", dist(fromAnswer))
	fmt.Printf("fan-out latency from the POST's sending: %s\n", dist(fromSent))
	var p99s, maxes []int64
	for _, v := range byMsg {
		slices.Sort(v)
		p99s = append(p99s, pct(v, 99))
		maxes = append(maxes, v[len(v)-1])
	}
	slices.Sort(p99s)
	slices.Sort(maxes)
	if len(p99s) > 0 {
		fmt.Printf("per message (from the answer): p99 median %s, worst %s; max median %s, worst %s\n",
			ms(pct(p99s, 50)), ms(p99s[len(p99s)-1]), ms(pct(maxes, 50)), ms(maxes[len(maxes)-1]))
	}
	if last := lastDeliveries(posts, byMsg); len(last) > 0 {
		fmt.Printf("per message, in posting order, the last delivery (ms): %s\n", last)
		printMessageCosts(posts, byMsg, costs)
	}
	summarizePosts(posts)
	serverDelta(s0, s1, delivered, "deliveries")
	fmt.Printf("load tool CPU: %s\n", selfCPU().Round(time.Millisecond))
	return nil
}

func runSustain(ctx context.Context, cfg *config) error {
	capHint := int(cfg.rate*cfg.duration.Seconds()) + 16
	if cfg.rooms > 1 {
		capHint = capHint/cfg.rooms + 16
	}
	accts, set, err := setup(ctx, cfg, capHint, nil)
	if err != nil {
		return err
	}
	sleep(ctx, time.Second)
	p := newPoster(cfg)
	n := set.alive()
	s0 := sampleServer(ctx, cfg)
	prof := startProfile(ctx, cfg, int(cfg.duration.Seconds()))
	set.record.Store(true)
	base := set.received.Load()
	t0 := now()
	posts, late := p.runRate(ctx, cfg.rate, cfg.duration, func(i int) (*url.URL, string, account) {
		return cfg.urls[i%len(cfg.urls)], cfg.roomName(i), accts[i%len(accts)]
	})
	t1 := now()
	ok := 0
	for _, r := range posts {
		if !r.err {
			ok++
		}
	}
	// Expected deliveries: every stored message to every stream of its room.
	expect := int64(ok) * n / int64(max(1, min(cfg.rooms, cfg.streams)))
	deadline := time.Now().Add(10 * time.Second)
	for set.received.Load()-base < expect && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	t2 := now()
	set.record.Store(false)
	s1 := sampleServer(ctx, cfg)
	prof.finish(ctx)
	set.closeAll()

	fromAnswer, fromSent, _ := latencies(set, posts)
	// Deliveries per second, per one-second window of the posting phase.
	var perSec []int64
	inWindow := int64(0)
	secs := int((t1 - t0) / int64(time.Second))
	if secs > 0 {
		perSec = make([]int64, secs)
		for _, st := range set.streams {
			for _, r := range st.recs {
				if k := int((r.at - t0) / int64(time.Second)); k >= 0 && k < secs {
					perSec[k]++
					inWindow++
				}
			}
		}
	}
	fmt.Printf("sustain: %d streams over %d room(s), %.0f msg/s offered for %s: %d posted (%d sent >10 ms late), %d stored\n",
		n, min(cfg.rooms, cfg.streams), cfg.rate, cfg.duration, len(posts), late, ok)
	fmt.Printf("deliveries: %d of %d expected (%.2f%%), drained %s after the last post; %d streams dropped\n",
		len(fromAnswer), expect, 100*float64(len(fromAnswer))/float64(max(1, expect)),
		time.Duration(t2-t1).Round(time.Millisecond), set.disconnects.Load())
	if secs > 0 {
		sorted := slices.Clone(perSec)
		slices.Sort(sorted)
		fmt.Printf("deliveries/s over the posting phase: mean %.0f, min %d, median %d, max %d (offered %.0f)\n",
			float64(inWindow)/float64(secs), sorted[0], pct(sorted, 50), sorted[len(sorted)-1],
			cfg.rate*float64(n)/float64(max(1, min(cfg.rooms, cfg.streams))))
	}
	fmt.Printf("delivery latency from the POST's answer: %s\n", dist(fromAnswer))
	fmt.Printf("delivery latency from the POST's sending: %s\n", dist(fromSent))
	summarizePosts(posts)
	serverDelta(s0, s1, int64(len(fromAnswer)), "deliveries")
	fmt.Printf("load tool CPU: %s\n", selfCPU().Round(time.Millisecond))
	return nil
}

func runStore(ctx context.Context, cfg *config) error {
	explicit := map[string]bool{}
	visitSet(func(name string) { explicit[name] = true })
	if !explicit["rate"] {
		cfg.rate = 5000
	}
	if !explicit["posters"] {
		cfg.posters = max(4, int(cfg.rate/100))
	}
	if !explicit["duration"] {
		cfg.duration = 10 * time.Second
	}
	accts, set, err := setup(ctx, cfg, int(cfg.rate*cfg.duration.Seconds())/max(1, cfg.rooms)+16, nil)
	if err != nil {
		return err
	}
	sleep(ctx, time.Second)
	p := newPoster(cfg)
	s0 := sampleServer(ctx, cfg)
	prof := startProfile(ctx, cfg, int(cfg.duration.Seconds()))
	set.record.Store(true)
	start := time.Now()
	posts, late := p.runRate(ctx, cfg.rate, cfg.duration, func(i int) (*url.URL, string, account) {
		return cfg.urls[i%len(cfg.urls)], cfg.roomName(i), accts[i%len(accts)]
	})
	elapsed := time.Since(start)
	sleep(ctx, 500*time.Millisecond)
	set.record.Store(false)
	s1 := sampleServer(ctx, cfg)
	prof.finish(ctx)
	set.closeAll()
	ok := 0
	for _, r := range posts {
		if !r.err {
			ok++
		}
	}
	fmt.Printf("store: %.0f msg/s offered over %d rooms for %s with %d posters, %d streams open: %d stored in %s = %.0f stored/s (%d sent >10 ms late)\n",
		cfg.rate, cfg.rooms, cfg.duration, cfg.posters, set.alive(), ok, elapsed.Round(time.Millisecond), float64(ok)/elapsed.Seconds(), late)
	summarizePosts(posts)
	fromAnswer, _, _ := latencies(set, posts)
	fmt.Printf("delivery latency from the POST's answer (%d deliveries): %s\n", len(fromAnswer), dist(fromAnswer))
	serverDelta(s0, s1, int64(ok), "messages stored")
	fmt.Printf("load tool CPU: %s\n", selfCPU().Round(time.Millisecond))
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
