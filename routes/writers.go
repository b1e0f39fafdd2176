package routes

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// streamWriters are the goroutines that write to detached streams: one
// per CPU, each with its own ready list, so a fan-out to thousands of
// streams costs one goroutine wake per writer rather than one per stream,
// and the writes of one message spread over every CPU.
type streamWriters struct {
	shards []*writerShard
	next   atomic.Uint32
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newStreamWriters() *streamWriters {
	w := &streamWriters{stop: make(chan struct{})}
	for range runtime.GOMAXPROCS(0) {
		sh := &writerShard{wake: make(chan struct{}, 1)}
		w.shards = append(w.shards, sh)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			sh.run(w.stop)
		}()
	}
	return w
}

// pick assigns a new stream to a writer, round robin.
func (w *streamWriters) pick() *writerShard {
	return w.shards[int(w.next.Add(1))%len(w.shards)]
}

// Close stops the writers; call it once no stream is left.
func (w *streamWriters) Close() {
	w.once.Do(func() { close(w.stop) })
	w.wg.Wait()
}

type writerShard struct {
	mu    sync.Mutex
	ready []*detachedStream
	wake  chan struct{}
}

// push puts s on the ready list. It runs on the hub's goroutine and only
// appends under a short lock.
func (sh *writerShard) push(s *detachedStream) {
	sh.mu.Lock()
	sh.ready = append(sh.ready, s)
	first := len(sh.ready) == 1
	sh.mu.Unlock()
	if first {
		// The writer takes the whole list when it wakes; later pushes
		// before then need no signal of their own.
		select {
		case sh.wake <- struct{}{}:
		default:
		}
	}
}

func (sh *writerShard) run(stop <-chan struct{}) {
	var batch []*detachedStream
	for {
		select {
		case <-sh.wake:
		case <-stop:
			return
		}
		sh.mu.Lock()
		batch, sh.ready = sh.ready, batch[:0]
		sh.mu.Unlock()
		for i, s := range batch {
			// Cleared first: a frame queued from here on schedules the
			// stream again.
			s.scheduled.Store(false)
			s.serve(false)
			batch[i] = nil
			if i%yieldEvery == yieldEvery-1 {
				runtime.Gosched()
			}
		}
	}
}

// yieldEvery is how many streams a writer serves before it lets other
// goroutines run. Its writes do not enter the scheduler (sysWrite), so a
// fan-out to thousands of streams would otherwise hold its P until the
// runtime preempts it, 10 ms later, while posts wait for a P to be
// answered on. 64 writes take a few hundred microseconds.
const yieldEvery = 64
