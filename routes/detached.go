package routes

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"papo/app"
)

// A stream over HTTP/1 takes its connection over (Hijack) once it is open,
// and from then on costs one small goroutine and no buffer while idle:
//
//   - net/http keeps, per connection, a goroutine whose stack has grown to
//     what opening the stream needed (middleware, session, presence,
//     backlog), a second goroutine reading in the background to notice the
//     client leaving, and 10 KiB of buffers. At 10,000 idle streams that was
//     most of the server's memory, and its garbage collector scanned 20,000
//     stacks each cycle.
//   - Here, one goroutine per stream waits for frames and writes each batch
//     in one write from a pooled buffer; the client hanging up is noticed by
//     one watcher for all streams (epoll on Linux; elsewhere a small reader
//     goroutine per stream).
//
// HTTP/2 connections cannot be taken over; they keep the net/http path.
// The response is the same on the wire: chunked over HTTP/1.1, and the
// connection closes when the stream ends.

// detach takes the connection over and starts the stream's pump. It
// reports false when the connection cannot be taken (HTTP/2, or a writer
// that does not allow it): the caller then serves the stream itself.
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
	ds := &detachedStream{
		conn:    conn,
		st:      st,
		chunked: r.ProtoAtLeast(1, 1),
		release: release,
		done:    done,
		hub:     h.app.Hub,
		owner:   h,
	}
	h.detached.Add(1)
	go ds.run(head)
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
	w := &appendWriter{b: b}
	_ = hdr.Write(w)
	return append(w.b, "\r\n"...)
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

type detachedStream struct {
	conn    net.Conn
	st      *app.Stream
	hub     *app.Hub
	chunked bool
	release func()
	done    *detachedRequest
	owner   *streamHandlers
	sent    int
}

// newWriteBuffers is the pool of write buffers of all detached streams: a
// stream holds one only while it writes.
func newWriteBuffers() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}
}

// streamWriteTimeout bounds one write to a client. A client that takes
// longer is too slow to keep: its write fails, and it reconnects and
// resumes from its cursor. Without it a stuck client would hold its
// goroutine until TCP gave up.
const streamWriteTimeout = 15 * time.Second

const maxPooledBuf = 64 << 10

func (s *detachedStream) run(head []byte) {
	sub := s.st.Sub
	// A hangup ends the subscription, so the pump waits on two channels
	// only (a select over more costs on every frame).
	bufs := s.owner.bufs
	unwatch := s.owner.hangups.watch(s.conn, func() { s.hub.Unsubscribe(sub) })
	defer s.owner.detached.Done()
	defer func() {
		unwatch()
		_ = s.conn.Close()
		// Presence must see the close; the request's context is gone.
		s.st.Close(context.Background())
		s.release()
		s.done.end(s.sent)
	}()

	bp := bufs.Get().(*[]byte)
	b := append((*bp)[:0], head...)
	body := len(b)
	b = s.beginChunk(b)
	b = append(b, retryLine...)
	for _, f := range s.st.Initial {
		b = append(b, f.Bytes...)
	}
	s.st.Initial = nil
	b = s.endChunk(b, body)
	ok := s.write(b, bp)
	s.sent -= body // the head is not the body
	if !ok {
		return
	}

	last := s.st.LastID
	frames := sub.Frames()
	for {
		select {
		case f := <-frames:
			bp := bufs.Get().(*[]byte)
			b := s.beginChunk((*bp)[:0])
			start := len(b)
			b = appendFrame(b, f, &last)
		drain:
			for {
				select {
				case f = <-frames:
					b = appendFrame(b, f, &last)
				default:
					break drain
				}
			}
			if len(b) == start {
				*bp = b
				bufs.Put(bp)
				continue // only duplicates of the backlog
			}
			if !s.write(s.endChunk(b, 0), bp) {
				return
			}
		case <-sub.Done():
			// Dropped for being slow, logged out, or shutdown (Hub.Stop
			// ends every subscription): end the response; the client
			// reconnects and resumes from its cursor (after logout, to a
			// 401). Unsubscribed: the client hung up.
			if sub.Reason() != app.CloseUnsubscribed {
				s.finish()
			}
			return
		}
	}
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

func (s *detachedStream) write(b []byte, bp *[]byte) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := s.conn.Write(b)
	s.sent += len(b)
	if cap(b) <= maxPooledBuf {
		*bp = b[:0]
		s.owner.bufs.Put(bp)
	}
	return err == nil
}

// finish ends the chunked body, so the client sees a complete response.
func (s *detachedStream) finish() {
	if s.chunked {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.conn.Write([]byte("0\r\n\r\n"))
	}
}
