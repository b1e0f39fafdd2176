package routes

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	ginsessions "github.com/gin-contrib/sessions"
	"github.com/gin-gonic/gin"

	"papo/app"
)

type streamHandlers struct {
	app     *app.App
	clients func(*http.Request) string

	// For streams that take their connection over (see detach).
	hangups  *hangupWatcher
	writers  *streamWriters
	bufs     *sync.Pool
	detached sync.WaitGroup
	blocked  atomic.Int64 // writes that found a client's socket full
}

func newStreamHandlers(a *app.App, clients func(*http.Request) string) *streamHandlers {
	return &streamHandlers{app: a, clients: clients, hangups: newHangupWatcher(a.Log), writers: newStreamWriters(), bufs: newWriteBuffers()}
}

// drain waits until every detached stream has ended (the hub's Stop ends
// them), then stops the hang-up watcher and the writers.
func (h *streamHandlers) drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() { h.detached.Wait(); close(done) }()
	select {
	case <-done:
		h.hangups.Close()
		h.writers.Close()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// retryLine tells EventSource to reconnect after 2 s.
var retryLine = []byte("retry: 2000\n\n")

// events serves GET /rooms/:room/events: the backlog (or what the client
// missed since its Last-Event-ID), the users event, ready, then live events
// until the client leaves, its session ends, it falls behind, or the server
// shuts down.
func (h *streamHandlers) events(c *gin.Context) {
	name, ok := room(c)
	if !ok {
		return
	}
	user := userOf(c)
	release, err := h.app.Streams.Acquire(c.Request.Context(), user.ID, h.clients(c.Request))
	if err != nil {
		abortWith(c, err)
		return
	}
	detached := false
	defer func() {
		if !detached {
			release()
		}
	}()
	cursor := c.GetHeader("Last-Event-ID")
	if cursor == "" {
		cursor = c.Query("last_event_id")
	}
	// The session is saved (if it changed) before the first byte goes out,
	// while headers can still carry its cookie.
	if err := ginsessions.Default(c).Save(); err != nil {
		abortWith(c, err)
		return
	}
	ctx := c.Request.Context()
	st, err := h.app.Chat.OpenStream(ctx, user, sessionIDOf(c), name, cursor)
	if err != nil {
		abortWith(c, err)
		return
	}

	w := c.Writer
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Del("Content-Length")

	// Over HTTP/1 the stream takes its connection over and this goroutine
	// (with the stack that opening the stream grew) ends; see detach.
	if h.detach(c, st, release) {
		detached = true
		return
	}

	// Presence must see the close even when the request context is gone.
	defer st.Close(context.WithoutCancel(ctx))
	rc := http.NewResponseController(w)
	// Streams outlive any server WriteTimeout; the deadline is cleared for
	// this response alone.
	_ = rc.SetWriteDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)

	out := newSSEWriter(w, rc)
	last, ok := h.writeOpening(ctx, st, out)
	if !ok {
		return
	}
	h.pump(ctx, st, out, last)
}

// writeOpening sends the stream's opening (see app.Stream): Initial, then
// each part Next gives, flushed part by part, so a long replay goes out a
// page at a time. It returns the stream's cursor after it.
func (h *streamHandlers) writeOpening(ctx context.Context, st *app.Stream, out *sseWriter) (last int64, ok bool) {
	last = st.LastID
	send := func(frames []*app.Frame) bool {
		_ = out.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		for _, f := range frames {
			var b []byte
			b, last = f.Since(last)
			if len(b) > 0 {
				out.write(b)
			}
		}
		return out.flush() == nil
	}
	out.write(retryLine)
	frames := st.Initial
	st.Initial = nil // sent: an idle stream should not keep it
	for len(frames) > 0 {
		if !send(frames) {
			return last, false
		}
		var err error
		if frames, err = st.Next(ctx); err != nil {
			if !errors.Is(err, app.ErrStreamEnded) {
				h.app.Log.Warn("stream: replaying the backlog", "room", st.Sub.Room, "err", err)
			}
			return last, false
		}
	}
	_ = out.rc.SetWriteDeadline(time.Time{})
	return last, true
}

// pump copies live frames to the client. It takes every frame already
// queued before flushing once, so a burst costs one write and one flush
// rather than one per event; and it skips message frames at or below the
// stream's cursor last, which the opening already sent.
func (h *streamHandlers) pump(ctx context.Context, st *app.Stream, out *sseWriter, last int64) {
	sub := st.Sub
	queued := make(chan struct{}, 1)
	sub.OnReady(func() {
		select {
		case queued <- struct{}{}:
		default:
		}
	})
	stopping := h.app.Hub.Stopping()
	var frames []*app.Frame
	for {
		select {
		case <-queued:
			if frames = sub.Take(frames[:0]); len(frames) == 0 {
				continue // the subscription ended: Done says so
			}
			// A client that cannot take a batch within the timeout is too
			// slow to keep (see streamWriteTimeout).
			_ = out.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			for _, f := range frames {
				var b []byte
				b, last = f.Since(last)
				if len(b) > 0 {
					out.write(b)
				}
			}
			clear(frames)
			if err := out.flush(); err != nil {
				return
			}
		case <-sub.Done():
			// Dropped for being slow, logged out, or shutdown: end the
			// response; the client reconnects and resumes from its cursor
			// (after logout, to a 401).
			return
		case <-stopping:
			return
		case <-ctx.Done():
			return
		}
	}
}

// sseWriter writes a batch of frames and flushes them together. It adds
// no buffer of its own: net/http already buffers each response, and an
// idle stream should cost as little memory as possible.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func newSSEWriter(w http.ResponseWriter, rc *http.ResponseController) *sseWriter {
	return &sseWriter{w: w, rc: rc}
}

func (s *sseWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

func (s *sseWriter) flush() error {
	if s.err != nil {
		return s.err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
	}
	return s.err
}
