package app

import (
	"sync"
	"sync/atomic"
)

// frameQueue is a subscriber's queue of frames: first in, first out,
// bounded, filled by the hub while the stream's writer empties it. It
// holds no slots until a frame comes, and then as many as have waited at
// once, doubling up to its bound. A channel of the bound cost every
// stream, idle or not, 8 bytes a slot (1 KiB at 128, a sixth of an idle
// stream's memory) that the garbage collector scanned on every cycle.
type frameQueue struct {
	mu     sync.Mutex
	frames []*Frame
	// queued is len(frames), for a look without the lock: a writer looks
	// at every stream it served once more, and finds most of them empty.
	queued atomic.Int32
}

const (
	// frameQueueFirst is the ring a queue takes at its first frame: a
	// busy room's frames come coalesced, a few at a time.
	frameQueueFirst = 4
	// frameQueueKeep is the largest ring a queue keeps once emptied; one
	// that a burst grew past it is given back.
	frameQueueKeep = 32
)

// push queues f; it reports false, queuing nothing, when bound frames are
// already waiting.
func (q *frameQueue) push(f *Frame, bound int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.frames)
	if n >= bound {
		return false
	}
	if n == cap(q.frames) {
		grown := make([]*Frame, n, min(max(frameQueueFirst, 2*n), bound))
		copy(grown, q.frames)
		q.frames = grown
	}
	q.frames = append(q.frames, f)
	q.queued.Store(int32(len(q.frames)))
	return true
}

// take appends every frame queued to dst, oldest first, and empties the
// queue.
func (q *frameQueue) take(dst []*Frame) []*Frame {
	if q.queued.Load() == 0 {
		return dst
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	dst = append(dst, q.frames...)
	clear(q.frames) // the frames are the reader's now, not the queue's to keep alive
	q.frames = q.frames[:0]
	q.queued.Store(0)
	if cap(q.frames) > frameQueueKeep {
		q.frames = nil
	}
	return dst
}

// waiting reports whether frames are queued.
func (q *frameQueue) waiting() bool { return q.queued.Load() > 0 }
