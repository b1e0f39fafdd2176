package main

import (
	"fmt"
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
	var b strings.Builder
	for _, p := range posts {
		v := byMsg[p.id]
		if len(v) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(slices.Max(v))/1e6, 'f', 1, 64))
	}
	return b.String()
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
