package routes

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/http/httpguts"

	"papo/app"
)

// A stream over HTTP/1 takes its connection over (Hijack) once it is open,
// and from then on costs no goroutine and no buffer while idle:
//
//   - net/http keeps, per connection, a goroutine whose stack has grown to
//     what opening the stream needed (middleware, session, presence,
//     backlog), a second goroutine reading in the background to notice the
//     client leaving, and 10 KiB of buffers. At 10,000 idle streams that was
//     most of the server's memory, and its garbage collector scanned 20,000
//     stacks each cycle.
//   - Here the hub tells a stream when frames are queued (OnReady), and one
//     of a few writers (streamWriters, one per CPU) takes what is queued and
//     writes it in one non-blocking write from a pooled buffer. Waking one
//     goroutine per stream per message, and setting a write deadline for
//     each write, had been a quarter of the server's CPU in a fan-out.
//   - A write that would block (the client's socket buffer is full) is
//     finished by a goroutine of the stream's own, with a deadline, which
//     then keeps writing until the queue is empty; meanwhile the hub keeps
//     queueing, and drops the stream if its queue fills.
//   - The client hanging up is noticed by one watcher for all streams
//     (epoll on Linux; elsewhere a small reader goroutine per stream).
//
// Exactly one party writes to a stream at a time: the holder of busy. A
// holder looks at the queue again after letting go, so a frame queued
// while a writer skipped the stream (busy) is never left behind.
//
// HTTP/2 connections cannot be taken over; they keep the net/http path.
// The response is the same on the wire: chunked over HTTP/1.1, and the
// connection closes when the stream ends.

// detach takes the connection over, writes the head and the stream's
// opening frames, and hands the stream to the writers. It reports false
// when the connection cannot be taken (HTTP/2, or a writer that does not
// allow it): the caller then serves the stream itself.
func (h *streamHandlers) detach(c *gin.Context, st *app.Stream, release func()) bool {
	r := c.Request
	if r.ProtoMajor != 1 {
		return false
	}
	head := responseHead(r, c.Writer.Header())
	conn, brw, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		return false
	}
	// Bytes the client sent after its request (it should send none) are
	// dropped with the reader: the stream never reads.
	_ = brw
	done := &detachedRequest{}
	c.Set(ctxDetached, done)
	s := &detachedStream{
		conn:    conn,
		fd:      descriptorOf(conn),
		st:      st,
		sub:     st.Sub,
		chunked: r.ProtoAtLeast(1, 1),
		release: release,
		done:    done,
		owner:   h,
		last:    st.LastID,
	}
	h.detached.Add(1)
	s.unwatch = h.hangups.watch(conn, func() { h.app.Hub.Unsubscribe(s.sub) })
	// Nothing else writes yet: the writers learn of the stream at OnReady.
	if ok, finish := s.writeOpening(c.Request.Context(), head); !ok {
		s.end(finish)
		return true
	}
	if s.fd >= 0 {
		limitSendBuffer(s.fd)
		s.shard = h.writers.pick()
	} else {
		s.kick = make(chan struct{}, 1)
		go s.pump()
	}
	s.sub.OnReady(s.wake)
	return true
}

// responseHead is the status line and headers of a 200 event stream.
func responseHead(r *http.Request, hdr http.Header) []byte {
	hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	hdr.Set("Connection", "close")
	if r.ProtoAtLeast(1, 1) {
		hdr.Set("Transfer-Encoding", "chunked")
	}
	b := make([]byte, 0, 512)
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	if !r.ProtoAtLeast(1, 1) {
		b = b[:0]
		b = append(b, "HTTP/1.0 200 OK\r\n"...)
	}
	return append(appendHeader(b, hdr), "\r\n"...)
}

// appendHeader is hdr.Write into b, sorted by name as net/http writes
// it, without its writer, sorter and replacer (7 % of a connect storm's
// CPU went to hdr.Write).
func appendHeader(b []byte, hdr http.Header) []byte {
	var stack [24]string
	names := stack[:0]
	for name := range hdr {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !httpguts.ValidHeaderFieldName(name) {
			continue // dropped, as net/http drops it
		}
		for _, v := range hdr[name] {
			b = append(b, name...)
			b = append(b, ": "...)
			// As net/http does: a line break in a value becomes a space.
			for _, c := range []byte(textproto.TrimString(v)) {
				if c == '\r' || c == '\n' {
					c = ' '
				}
				b = append(b, c)
			}
			b = append(b, "\r\n"...)
		}
	}
	return b
}

type detachedStream struct {
	conn    net.Conn
	fd      int // conn's socket, for the writers; -1 without one (TLS): see pump
	st      *app.Stream
	sub     *app.Subscriber
	chunked bool
	release func()
	done    *detachedRequest
	owner   *streamHandlers
	unwatch func()

	shard     *writerShard  // the writer that serves the stream
	scheduled atomic.Bool   // on its writer's ready list
	kick      chan struct{} // instead of a writer, when fd is -1
	busy      atomic.Bool   // held by whoever writes to the stream

	// Touched only by the holder of busy.
	last int64 // the id of the last message sent
	sent int   // body bytes written
}

// newWriteBuffers is the pool of write buffers of all detached streams: a
// stream holds one only while it writes.
func newWriteBuffers() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}
}

// streamWriteTimeout bounds one blocking write to a client. A client that
// takes longer is too slow to keep: its write fails, and it reconnects and
// resumes from its cursor. Without it a stuck client would hold its
// goroutine until TCP gave up.
const streamWriteTimeout = 15 * time.Second

const maxPooledBuf = 64 << 10

// openingWriteSize is the size past which the opening is written in
// several writes: a long replay goes out in pieces of about this size from
// one pooled buffer, rather than as one buffer of it all.
const openingWriteSize = maxPooledBuf - 8<<10

// writeOpening writes the response head, the retry line and the stream's
// opening (see app.Stream: the backlog, users, ready, and after a long
// replay the live events that came meanwhile): in one write when it is
// short, as most are, else in writes of about openingWriteSize. It runs on
// the request's goroutine, before the writers learn of the stream, so a
// replay of any length blocks no writer. It reports false when the stream
// has ended (finish tells end whether to close the body cleanly).
func (s *detachedStream) writeOpening(ctx context.Context, head []byte) (ok, finish bool) {
	bp := s.owner.bufs.Get().(*[]byte)
	b := append((*bp)[:0], head...)
	s.sent -= len(b) // the head is not the body
	at := len(b)     // where the chunk being filled starts
	b = s.beginChunk(b)
	b = append(b, retryLine...)
	// flush writes b, which ends with the chunk that starts at b[at:], and
	// starts the next chunk.
	flush := func() bool {
		b = s.endChunk(b, at)
		ok := s.write(b)
		at = 0
		b = s.beginChunk(b[:0])
		return ok
	}
	headLen := len(b) - at - len(retryLine)
	empty := func() bool { return len(b) == at+headLen }
	frames := s.st.Initial
	s.st.Initial = nil // sent: an idle stream should not keep it
	for len(frames) > 0 {
		for _, f := range frames {
			b = appendFrame(b, f, &s.last)
			if len(b) >= openingWriteSize && !flush() {
				s.recycle(bp, b)
				return false, false
			}
		}
		var err error
		if frames, err = s.st.Next(ctx); err != nil {
			// The database failed, or the subscription ended, mid-replay:
			// what was read goes out, and the stream ends; the client
			// resumes from its cursor.
			if !errors.Is(err, app.ErrStreamEnded) {
				s.owner.app.Log.Warn("stream: replaying the backlog", "room", s.sub.Room, "err", err)
			}
			finish = true
		}
	}
	ok = empty() || flush()
	s.recycle(bp, b)
	return ok && !finish, finish
}

// wake is the subscriber's OnReady: frames are queued, or the
// subscription ended.
func (s *detachedStream) wake() {
	if s.kick != nil {
		select {
		case s.kick <- struct{}{}:
		default:
		}
		return
	}
	if s.scheduled.CompareAndSwap(false, true) {
		s.shard.push(s)
	}
}

// pump serves a stream whose connection has no descriptor for
// non-blocking writes (TLS) from a goroutine of its own.
func (s *detachedStream) pump() {
	for range s.kick {
		if s.serve(true) {
			return
		}
	}
}

// serve writes what is queued, if no one else is writing to the stream.
// A writer calls it with blocking false: a write that would block is then
// finished, and the stream served on, by a goroutine of the stream's own.
// It reports whether the stream has ended.
func (s *detachedStream) serve(blocking bool) (ended bool) {
	if !s.busy.CompareAndSwap(false, true) {
		return false // the holder looks at the queue again before letting go
	}
	return s.serveHeld(blocking)
}

func (s *detachedStream) serveHeld(blocking bool) (ended bool) {
	for {
		if s.sub.Ended() {
			// Dropped for being slow, logged out, or shutdown (Hub.Stop
			// ends every subscription): end the response; the client
			// reconnects and resumes from its cursor (after logout, to a
			// 401). Unsubscribed: the client hung up. busy stays held:
			// nothing more is written.
			finish := s.sub.Reason() != app.CloseUnsubscribed
			if blocking {
				s.end(finish)
			} else {
				go s.end(finish) // it may block; a writer must not
			}
			return true
		}
		bp, b := s.collect()
		if b == nil {
			s.busy.Store(false)
			if !s.hasWork() || !s.busy.CompareAndSwap(false, true) {
				return false
			}
			continue
		}
		if blocking {
			ok := s.write(b)
			s.recycle(bp, b)
			if !ok {
				s.end(false)
				return true
			}
			continue
		}
		n, err := writeNow(s.fd, b)
		s.sent += n
		switch {
		case err != nil:
			s.recycle(bp, b)
			go s.end(false)
			return true
		case n < len(b):
			s.owner.blocked.Add(1)
			go s.finishWrite(b, n, bp)
			return false
		}
		s.recycle(bp, b)
	}
}

// finishWrite writes the rest of a write that would have blocked, then
// serves the stream on while holding busy.
func (s *detachedStream) finishWrite(b []byte, from int, bp *[]byte) {
	ok := s.write(b[from:])
	s.recycle(bp, b)
	if !ok {
		s.end(false)
		return
	}
	s.serveHeld(true)
}

func (s *detachedStream) hasWork() bool {
	return s.sub.Waiting() || s.sub.Ended()
}

// collect takes every frame queued, as one chunk in a pooled buffer; nil
// when there is nothing to write.
func (s *detachedStream) collect() (*[]byte, []byte) {
	var scratch [16]*app.Frame
	frames := s.sub.Take(scratch[:0])
	if len(frames) == 0 {
		return nil, nil
	}
	bp := s.owner.bufs.Get().(*[]byte)
	b := s.beginChunk((*bp)[:0])
	start := len(b)
	for _, f := range frames {
		b = appendFrame(b, f, &s.last)
	}
	if len(b) == start { // only duplicates of the backlog
		s.recycle(bp, b)
		return nil, nil
	}
	return bp, s.endChunk(b, 0)
}

func (s *detachedStream) recycle(bp *[]byte, b []byte) {
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		s.owner.bufs.Put(bp)
	}
}

// end closes the stream, writing the end of the chunked body first when
// finish is set, and releases what it held.
func (s *detachedStream) end(finish bool) {
	defer s.owner.detached.Done()
	if finish && s.chunked {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.conn.Write([]byte("0\r\n\r\n"))
	}
	s.unwatch()
	_ = s.conn.Close()
	// Presence must see the close; the request's context is gone.
	s.st.Close(context.Background())
	s.release()
	s.done.end(s.sent)
}

// chunkHeadLen is the room kept for a chunk's size line: 8 hex digits and
// CRLF, written in place once the size is known.
const chunkHeadLen = 10

func (s *detachedStream) beginChunk(b []byte) []byte {
	if !s.chunked {
		return b
	}
	return append(b, "00000000\r\n"...)
}

// endChunk fills in the size of the chunk that starts at b[at:] and closes it.
func (s *detachedStream) endChunk(b []byte, at int) []byte {
	if !s.chunked {
		return b
	}
	n := len(b) - at - chunkHeadLen
	const hex = "0123456789abcdef"
	for i := 7; i >= 0; i-- {
		b[at+i] = hex[n&0xf]
		n >>= 4
	}
	return append(b, "\r\n"...)
}

// appendFrame adds what of f the stream has not sent (the backlog may
// have sent some of its messages).
func appendFrame(b []byte, f *app.Frame, last *int64) []byte {
	out, next := f.Since(*last)
	*last = next
	return append(b, out...)
}

// write is a blocking write of b with a deadline, which it clears after:
// the non-blocking writes that follow would otherwise fail once it passed.
func (s *detachedStream) write(b []byte) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	n, err := s.conn.Write(b)
	s.sent += n
	if err != nil {
		return false
	}
	return s.conn.SetWriteDeadline(time.Time{}) == nil
}
