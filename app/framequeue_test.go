package app

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// pop takes the oldest frame, nil when none is queued: tests read a
// queue a frame at a time, as streams never do.
func (q *frameQueue) pop() *Frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 {
		return nil
	}
	f := q.frames[0]
	n := copy(q.frames, q.frames[1:])
	q.frames[n] = nil
	q.frames = q.frames[:n]
	q.queued.Store(int32(n))
	return f
}

// frameWithin waits up to d for sub's next frame; nil when none came.
func frameWithin(sub *Subscriber, d time.Duration) *Frame {
	deadline := time.Now().Add(d)
	for {
		if f := sub.queue.pop(); f != nil {
			return f
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFrameQueue(t *testing.T) {
	frames := make([]*Frame, 200)
	for i := range frames {
		frames[i] = &Frame{ID: int64(i + 1)}
	}
	ids := func(fs []*Frame) string {
		var out []int64
		for _, f := range fs {
			out = append(out, f.ID)
		}
		return fmt.Sprint(out)
	}
	tests := []struct {
		name     string
		bound    int
		push     int
		wantIDs  string
		refused  int // pushes refused for the bound
		keptRing bool
	}{
		{"empty", 8, 0, "[]", 0, false},
		{"one frame", 8, 1, "[1]", 0, true},
		{"grows past its first ring", 128, 9, "[1 2 3 4 5 6 7 8 9]", 0, true},
		{"full at the bound refuses the rest", 3, 5, "[1 2 3]", 2, true},
		{"a burst's large ring is given back", 128, 100, ids(frames[:100]), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q frameQueue
			if cap(q.frames) != 0 {
				t.Fatal("a new queue holds slots")
			}
			refused := 0
			for _, f := range frames[:tt.push] {
				if !q.push(f, tt.bound) {
					refused++
				}
			}
			if refused != tt.refused {
				t.Fatalf("refused %d pushes, want %d", refused, tt.refused)
			}
			if cap(q.frames) > tt.bound {
				t.Fatalf("ring of %d slots past the bound %d", cap(q.frames), tt.bound)
			}
			if got := q.waiting(); got != (tt.push > 0) {
				t.Fatalf("waiting = %v with %d pushed", got, tt.push)
			}
			ring := q.frames[:cap(q.frames)]
			got := q.take(nil)
			if ids(got) != tt.wantIDs {
				t.Fatalf("took %s, want %s", ids(got), tt.wantIDs)
			}
			if q.waiting() || len(q.take(nil)) != 0 {
				t.Fatal("frames left after take")
			}
			for i, f := range ring {
				if f != nil {
					t.Fatalf("slot %d still holds frame %d after take: the queue keeps it alive", i, f.ID)
				}
			}
			if kept := cap(q.frames) > 0; kept != tt.keptRing {
				t.Fatalf("ring kept = %v (%d slots), want %v", kept, cap(q.frames), tt.keptRing)
			}
		})
	}
}

// One goroutine fills the queue as the hub does while another empties it
// as a writer does: every frame comes out once, in order.
func TestFrameQueueConcurrentFillAndTake(t *testing.T) {
	var q frameQueue
	const n = 20000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; {
			if q.push(&Frame{ID: int64(i)}, 128) {
				i++
			}
		}
	}()
	next := int64(1)
	var buf []*Frame
	for next <= n {
		buf = q.take(buf[:0])
		for _, f := range buf {
			if f.ID != next {
				t.Fatalf("frame %d came where %d was due", f.ID, next)
			}
			next++
		}
	}
	wg.Wait()
}
