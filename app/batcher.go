package app

import (
	"context"
	"sync"
)

// batcher answers requests to Redis in batches, one script call for many:
// a caller queues its request and takes the run lock, and finds it
// answered by the holder before it, or answers, in calls of at most max,
// the requests queued before its own and its own. Requests that come
// while a call is out go together in the next; a caller never answers
// those queued after it. (RedisPresence does the same under locks of its
// own: see RedisPresence.change.)
type batcher[R any] struct {
	max    int
	answer func(ctx context.Context, batch []R) // answers every request of batch, in order

	mu     sync.Mutex
	queued []queuedRequest[R]
	run    sync.Mutex
}

type queuedRequest[R any] struct {
	req  R
	done chan struct{}
}

// do returns once req has been answered. The calls run on ctx without its
// cancellation: a caller that goes must not fail the others in its batch.
func (b *batcher[R]) do(ctx context.Context, req R) {
	q := queuedRequest[R]{req, make(chan struct{})}
	b.mu.Lock()
	b.queued = append(b.queued, q)
	b.mu.Unlock()
	b.run.Lock()
	defer b.run.Unlock()
	ctx = context.WithoutCancel(ctx)
	for !isClosed(q.done) {
		b.answerNext(ctx)
	}
}

// answerNext answers the oldest queued requests, as many as one call
// takes. Called under run.
func (b *batcher[R]) answerNext(ctx context.Context) {
	b.mu.Lock()
	batch := b.queued[:min(len(b.queued), b.max)]
	b.queued = b.queued[len(batch):]
	if len(b.queued) == 0 {
		b.queued = nil
	}
	b.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	reqs := make([]R, len(batch))
	for i, q := range batch {
		reqs[i] = q.req
	}
	b.answer(ctx, reqs)
	for _, q := range batch {
		close(q.done)
	}
}

// pending is how many requests wait for a call.
func (b *batcher[R]) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queued)
}
