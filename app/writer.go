package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"papo/models"
)

// MessageStore is where the writer commits batches.
type MessageStore interface {
	InsertMessages(ctx context.Context, msgs []*models.Message) error
	// ProbeWrite commits a write of its own that no user sees: it fails
	// where a batch would (a full disk, a read-only file or server).
	ProbeWrite(ctx context.Context) error
}

// errSuperseded answers a join or leave that the database did not store
// because a later decision for its user and room was stored first, by
// another instance (see models.PresenceMark).
var errSuperseded = errors.New("superseded by a later presence decision")

// maxBatch bounds one transaction; larger bursts take several.
const maxBatch = 512

// Writer is the one goroutine per instance that stores messages. It takes
// every message that is waiting, commits them in one transaction (which
// gives them their ids, in commit order, and bumps the senders' counts),
// hands them to the hub in id order, and only then answers their senders.
type Writer struct {
	store MessageStore
	hub   *Hub
	log   *slog.Logger

	reqs chan *writeReq
	quit chan struct{}
	done chan struct{}
	once sync.Once

	// Stored counts committed messages, for /metrics.
	stored     func(n int)
	batchSizes func(n int)

	// unpublished counts the messages not published since the broker
	// began failing; lastBatch is the size of the last commit. Both are
	// owned by the writer goroutine.
	unpublished int
	lastBatch   int

	// storeFailures counts the commits that failed since the database
	// began failing, and their messages.
	storeFailures failureStreak
}

type writeReq struct {
	msg  *models.Message
	errc chan error
	// data is the message's JSON as streams receive it, set before a nil
	// verdict is sent on errc.
	data []byte
}

// NewWriter starts the writer goroutine.
func NewWriter(store MessageStore, hub *Hub, log *slog.Logger) *Writer {
	w := &Writer{
		store: store, hub: hub, log: log,
		reqs:       make(chan *writeReq, 4096),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		stored:     func(int) {},
		batchSizes: func(int) {},
	}
	go w.run()
	return w
}

// Observe sets the hooks that count stored messages and batch sizes.
func (w *Writer) Observe(stored, batch func(n int)) {
	w.stored, w.batchSizes = stored, batch
}

// Store commits m and returns once it is committed and handed to the hub;
// m.ID is then set, and the message's JSON, encoded once for every stream,
// is returned, so that the sender's answer need not encode it again. A
// storage failure stores nothing and returns an unavailable error.
func (w *Writer) Store(ctx context.Context, m *models.Message) ([]byte, error) {
	r, err := w.submit(ctx, m)
	if err != nil {
		return nil, err
	}
	// Wait for the verdict even if ctx ends: the batch may already be
	// committing, and the caller must not reuse m meanwhile.
	if err := <-r.errc; err != nil {
		return nil, err
	}
	return r.data, nil
}

// Submit queues m and returns the channel its verdict will arrive on.
func (w *Writer) Submit(ctx context.Context, m *models.Message) (<-chan error, error) {
	r, err := w.submit(ctx, m)
	if err != nil {
		return nil, err
	}
	return r.errc, nil
}

func (w *Writer) submit(ctx context.Context, m *models.Message) (*writeReq, error) {
	r := &writeReq{msg: m, errc: make(chan error, 1)}
	select {
	case w.reqs <- r:
		return r, nil
	case <-w.quit:
		return nil, ErrShuttingDown
	case <-ctx.Done():
		return nil, unavailable(ctx.Err())
	}
}

// Close stores what is queued and stops. Callers must not Submit after it.
func (w *Writer) Close() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]*writeReq, 0, maxBatch)
	for {
		select {
		case r := <-w.reqs:
			batch = append(batch[:0], r)
		case <-w.quit:
			// Drain what was queued before the quit.
			for {
				select {
				case r := <-w.reqs:
					w.commit([]*writeReq{r})
					continue
				default:
				}
				return
			}
		}
		batch = w.fill(batch)
		w.lastBatch = len(batch)
		w.commit(batch)
	}
}

// fill adds to batch what is waiting. When the last commit took more
// than one message, posts are arriving faster than commits, and before it
// settles it yields the CPU as long as that brings more: the handlers that
// are about to submit get to, and one commit takes them all. At a trickle
// it commits at once, since a yield on a busy CPU can wait behind other
// goroutines for milliseconds.
func (w *Writer) fill(batch []*writeReq) []*writeReq {
	for len(batch) < maxBatch {
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
			continue
		default:
		}
		if w.lastBatch < 2 {
			return batch
		}
		runtime.Gosched()
		if len(w.reqs) == 0 {
			return batch
		}
	}
	return batch
}

func (w *Writer) commit(batch []*writeReq) {
	msgs := make([]*models.Message, len(batch))
	for i, r := range batch {
		msgs[i] = r.msg
	}
	// Not the request's context: once taken, a batch commits or fails as a
	// whole, whoever has stopped waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.store.InsertMessages(ctx, msgs); err != nil {
		w.noteStore(len(msgs), err)
		verdict := unavailable(err)
		if errors.Is(err, models.ErrOutcomeUnknown) {
			// Logged each time, outage or not: each is a batch that may
			// have been stored though its senders are told it failed.
			w.log.Error("writer: the database did not confirm a commit and could not be asked; "+
				"the batch may or may not be stored; answering 503", "messages", len(msgs), "err", err)
			verdict = outcomeUnknown(err)
		}
		for _, r := range batch {
			r.errc <- verdict
		}
		return
	}
	w.noteStore(len(msgs), nil)
	envs := make([]Envelope, 0, len(msgs))
	for _, m := range msgs {
		if m.ID != 0 {
			envs = append(envs, messageEnvelope(m))
		}
	}
	w.stored(len(envs))
	w.batchSizes(len(msgs))
	w.hub.publishLocal(envs)
	i := 0
	for _, r := range batch {
		if r.msg.ID == 0 {
			r.errc <- errSuperseded
			continue
		}
		r.data = envs[i].Data
		i++
		r.errc <- nil
	}
	// The broker may be down: the messages are stored and local streams
	// have them; other instances will fill the gap from the database.
	w.notePublish(len(envs), w.hub.publishRemote(ctx, envs))
}

// Writable reports whether the database takes writes. While commits
// succeed it trusts them; once one has failed, until storing works again,
// it asks the database with a write of its own. A database can answer a
// ping and still refuse every write (a full disk, a read-only file, a
// server demoted to a read-only replica), and an instance reported not
// ready may be sent no post to learn from that it is back.
func (w *Writer) Writable(ctx context.Context) error {
	if !w.storeFailures.failing() {
		return nil
	}
	if err := w.store.ProbeWrite(ctx); err != nil {
		return fmt.Errorf("storing messages fails: %w", err)
	}
	w.noteStore(0, nil)
	return nil
}

// outcomeUnknown is the answer to a batch whose commit went unconfirmed
// and could not be checked: still a 503, but it must not claim that
// nothing was stored.
func outcomeUnknown(err error) *Error {
	return &Error{Kind: KindUnavailable, Code: "unavailable",
		Message: "The database stopped answering while storing this; it may or may not have been stored. Check before sending it again.",
		Err:     err}
}

// noteStore logs the first failed commit of an outage and the first
// success after it, with how many batches failed in between, rather than a
// line per failed batch (each is answered 503).
func (w *Writer) noteStore(n int, err error) {
	if err != nil {
		if w.storeFailures.fail(n) {
			w.log.Error("writer: storing messages failed; answering 503 "+
				"(further failures are counted, not logged, until storing works again)", "messages", n, "err", err)
		}
		return
	}
	if batches, messages, d, was := w.storeFailures.succeed(); was {
		w.log.Info("writer: storing messages works again", "failed_batches", batches,
			"failed_messages", messages, "after", d)
	}
}

// notePublish logs the first failed publish of an outage and the first
// success after it, not every batch in between (the broker logs the
// outage too).
func (w *Writer) notePublish(n int, err error) {
	switch {
	case err != nil && w.unpublished == 0:
		w.log.Warn("writer: publishing to other instances failed; they will catch up from the database "+
			"(further failures are counted, not logged, until publishing works again)", "messages", n, "err", err)
		w.unpublished = n
	case err != nil:
		w.unpublished += n
	case w.unpublished > 0:
		w.log.Info("writer: publishing to other instances works again", "messages_not_published", w.unpublished)
		w.unpublished = 0
	}
}
