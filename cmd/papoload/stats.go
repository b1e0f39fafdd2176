package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// pct returns the p-th percentile (0..100) of sorted values, nearest rank.
func pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// ms formats nanoseconds as milliseconds.
func ms(ns int64) string {
	return fmt.Sprintf("%.2f ms", float64(ns)/1e6)
}

// dist sorts v in place and formats p50/p99/max.
func dist(v []int64) string {
	if len(v) == 0 {
		return "(none)"
	}
	slices.Sort(v)
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)", ms(pct(v, 50)), ms(pct(v, 90)), ms(pct(v, 99)), ms(v[len(v)-1]), len(v))
}

// latencies joins the receipts of every stream with the posts that made
// them: for each delivery, the time from the POST's answer and from its
// sending. Receipts of messages the load tool did not post (joins, leaves)
// are left out.
func latencies(set *streamSet, posts []postRec) (fromAnswer, fromSent []int64, byMsg map[int64][]int64) {
	idx := make(map[int64]int, len(posts))
	for i, p := range posts {
		if p.id > 0 {
			idx[p.id] = i
		}
	}
	byMsg = map[int64][]int64{}
	for _, st := range set.streams {
		for _, r := range st.recs {
			i, ok := idx[r.id]
			if !ok {
				continue
			}
			fromAnswer = append(fromAnswer, r.at-posts[i].answered)
			fromSent = append(fromSent, r.at-posts[i].sent)
			byMsg[r.id] = append(byMsg[r.id], r.at-posts[i].answered)
		}
	}
	return fromAnswer, fromSent, byMsg
}

// lastDeliveries lists each message's slowest delivery in milliseconds,
// in posting order, so that a message slower than the rest (the first,
// or one that met a heartbeat, a collection or a busy neighbour) shows
// which it was. byMsg holds each message's latencies in nanoseconds.
func lastDeliveries(posts []postRec, byMsg map[int64][]int64) string {
	return inPostingOrder(posts, byMsg, func(i int) time.Duration {
		return time.Duration(slices.Max(byMsg[posts[i].id]))
	})
}

// inPostingOrder lists value(i), in milliseconds, for each post i that
// reached some stream (byMsg), in posting order: lines made with it for
// one run have their columns in step.
func inPostingOrder(posts []postRec, byMsg map[int64][]int64, value func(i int) time.Duration) string {
	var b strings.Builder
	for i, p := range posts {
		if len(byMsg[p.id]) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(value(i))/1e6, 'f', 1, 64))
	}
	return b.String()
}

// schedSample is the time the server's threads and the tool's have spent
// on a CPU, and the time the server's have spent ready to run while no
// CPU was theirs, at one moment.
type schedSample struct {
	server, serverWait, tool time.Duration
	ok                       bool
}

func sampleSched(pids []int) schedSample {
	if len(pids) == 0 {
		return schedSample{}
	}
	server, wait, err1 := schedTimes(pids)
	tool, _, err2 := schedTimes([]int{os.Getpid()})
	return schedSample{server: server, serverWait: wait, tool: tool, ok: err1 == nil && err2 == nil}
}

// since is what was spent from earlier to s.
func (s schedSample) since(earlier schedSample) schedSample {
	return schedSample{
		server:     s.server - earlier.server,
		serverWait: s.serverWait - earlier.serverWait,
		tool:       s.tool - earlier.tool,
		ok:         s.ok && earlier.ok,
	}
}

// printMessageCosts prints, beside each message's last delivery, what it
// cost the server and the tool, from just before its post to its last
// delivery. Every message is the same work, so they tell a slow message's
// cause apart: one that cost more CPU than the rest ran on CPU time that
// was charged more for the same instructions (a core shared with another
// guest, time the hypervisor took); one that cost the same waited, and the
// server's wait shows what of that the machine's own scheduler saw.
func printMessageCosts(posts []postRec, byMsg map[int64][]int64, costs []schedSample) {
	for _, c := range costs {
		if !c.ok {
			return
		}
	}
	if len(costs) != len(posts) || len(costs) == 0 {
		return
	}
	line := func(label string, f func(schedSample) time.Duration) {
		fmt.Printf("per message, in posting order, %s (ms): %s\n", label,
			inPostingOrder(posts, byMsg, func(i int) time.Duration { return f(costs[i]) }))
	}
	line("the server's CPU", func(c schedSample) time.Duration { return c.server })
	line("the server's threads waiting for a CPU", func(c schedSample) time.Duration { return c.serverWait })
	line("the tool's CPU", func(c schedSample) time.Duration { return c.tool })
}

// serverDelta prints what the server spent between two samples.
func serverDelta(a, b serverSample, deliveries int64, label string) {
	if b.ok && a.ok {
		cpu := b.cpu - a.cpu
		wall := b.at.Sub(a.at)
		fmt.Printf("server CPU: %s over %s wall (%.0f%% of one core)", cpu, wall.Round(time.Millisecond), 100*cpu.Seconds()/wall.Seconds())
		if deliveries > 0 {
			fmt.Printf("; %.2f ms per 1,000 %s", float64(cpu.Microseconds())/1000/(float64(deliveries)/1000), label)
		}
		fmt.Printf("; RSS %d MiB\n", b.rss>>10)
	}
	if b.sent > 0 || b.stored > 0 {
		fmt.Printf("server /metrics: %.0f events queued to streams, %.0f messages stored, %.0f streams dropped as slow\n",
			b.sent-a.sent, b.stored-a.stored, b.dropped-a.dropped)
	}
}
