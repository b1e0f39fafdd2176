package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// epoch is the load tool's clock origin. Every time it records is
// time.Since(epoch): monotonic, and on the same machine as the server, so
// a POST's answer and a stream's receipt compare directly.
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// receipt is one message event received by one stream.
type receipt struct {
	id int64 // the message id (the event's id: line)
	at int64 // when the read that brought it returned
}

// stream is one SSE connection. It does not parse JSON: its parser takes
// the id: of each message event, notices the ready event, and skips
// everything else.
type stream struct {
	idx     int
	startAt int64 // dial began
	readyAt int64 // the ready event arrived; 0 until then
	recs    []receipt
	err     error
	conn    net.Conn // guarded by streamSet.connMu

	set      *streamSet
	sem      chan struct{} // the connect slot it holds until ready or failed
	released bool          // its slot and readyWG count are given back
	readyBy  int64         // when a stream not yet ready is given up
	p        sseParser

	fd   int // the socket an epoll loop reads (until the reader stops); else -1
	slot int // its index in that loop's live streams; -1 when not live

	// A stream that an epoll loop connected itself has no conn.
	remote  *net.TCPAddr
	pending string // the part of its request not yet sent
}

// streamSet is every stream of a run.
type streamSet struct {
	cfg     *config
	streams []*stream
	reader  streamReader

	readyWG     sync.WaitGroup // one per stream, done at ready or failure
	doneWG      sync.WaitGroup // one per stream, done when its reading ends
	ready       atomic.Int64
	failed      atomic.Int64
	received    atomic.Int64 // message events received after ready
	replayed    atomic.Int64 // message events of the backlogs, before ready
	disconnects atomic.Int64 // streams ended by the server after ready
	record      atomic.Bool  // keep receipts (the measured phase), the backlog's too
	lateSends   atomic.Int64 // requests an epoll loop sent once connect had finished
	closing     atomic.Bool
	connMu      sync.Mutex // guards stream.conn
	capHint     int        // receipts to preallocate per stream
}

// streamReader reads the streams once their requests are written.
type streamReader interface {
	// take hands over a stream whose request is written; from then on
	// the reader owns it and finishes it exactly once.
	take(st *stream)
	// stop returns once no read of any stream is in progress or can
	// start, and the sockets it took over are closed, so that the conns
	// can be closed; closing is set already.
	stop()
}

// streamOpener is a reader that can also connect the streams it reads,
// cheaper than a goroutine and Go's dialer per stream can (Linux: see
// streams_linux.go).
type streamOpener interface {
	// open connects st from src to dst, sends req, and takes the stream
	// over, as take does. It reports false, having done nothing, when it
	// cannot connect these addresses: the stream is then dialed as usual.
	open(st *stream, src net.IP, dst *net.TCPAddr, req string) bool
}

// destinations resolves each instance's host:port once per run.
type destinations map[string]*net.TCPAddr

// resolve returns nil when host does not resolve; the usual dial then
// reports why.
func (d destinations) resolve(host string) *net.TCPAddr {
	addr, seen := d[host]
	if !seen {
		addr, _ = net.ResolveTCPAddr("tcp", host)
		d[host] = addr
	}
	return addr
}

// defaultReadyTimeout is how long a stream may take from its request to
// ready, unless the config says otherwise (tests do).
const defaultReadyTimeout = 30 * time.Second

// streamTarget says where stream i goes.
type streamTarget func(i int) (u *url.URL, room, cursor string, acct account)

// openStreams connects cfg.streams streams, at most cfg.concurrency at a
// time (the server's listen backlog would drop more), and waits until every
// one is ready or has failed, or ctx ends. With record set, the streams
// keep their receipts from the first, backlog included.
func openStreams(ctx context.Context, cfg *config, target streamTarget, capHint int, record bool) (*streamSet, time.Duration) {
	set := &streamSet{cfg: cfg, streams: make([]*stream, cfg.streams), capHint: capHint}
	set.record.Store(record)
	if cfg.readyTimeout == 0 {
		cfg.readyTimeout = defaultReadyTimeout
	}
	newReader := cfg.newReader
	if newReader == nil {
		newReader = newStreamReader // the platform's own
	}
	set.reader = newReader(set)
	opener, _ := set.reader.(streamOpener)
	dests := destinations{}
	sem := make(chan struct{}, cfg.concurrency)
	start := time.Now()
	set.readyWG.Add(cfg.streams)
	set.doneWG.Add(cfg.streams)
	for i := range set.streams {
		st := &stream{idx: i, set: set, sem: sem, fd: -1, slot: -1}
		st.p = newSSEParser(st, cfg.bufSize)
		set.streams[i] = st
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// Count the ones never started as failed, so waits end.
			for j := i; j < cfg.streams; j++ {
				set.failed.Add(1)
				set.readyWG.Done()
				set.doneWG.Done()
			}
			set.streams = set.streams[:i]
			return set, time.Since(start)
		}
		u, room, cursor, acct := target(i)
		src := cfg.sources[i%len(cfg.sources)]
		req := streamRequest(u, room, cursor, acct)
		if opener != nil {
			if dst := dests.resolve(u.Host); dst != nil && opener.open(st, src, dst, req) {
				continue
			}
		}
		go set.run(ctx, st, u, req, src)
	}
	waited := make(chan struct{})
	go func() { set.readyWG.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	return set, time.Since(start)
}

// closeAll ends every stream and waits (bounded) for the readers.
func (set *streamSet) closeAll() {
	set.closing.Store(true)
	// The reader stops first: an epoll loop must not read a socket number
	// that was closed here and reused by another socket.
	set.reader.stop()
	set.connMu.Lock()
	for _, st := range set.streams {
		if c := st.conn; c != nil {
			// Reset rather than close: the load tool's sockets would
			// otherwise sit in TIME_WAIT, and tens of thousands of those
			// make the next run's connect() slow to find a port.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	}
	set.connMu.Unlock()
	done := make(chan struct{})
	go func() { set.doneWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Println("papoload: some stream readers did not end within 10 s")
	}
}

// streamRequest is the HTTP request that opens a stream.
func streamRequest(u *url.URL, room, cursor string, acct account) string {
	path := "/rooms/" + room + "/events"
	if cursor != "" {
		path += "?last_event_id=" + cursor
	}
	return "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAccept: text/event-stream\r\nCookie: " + acct.Cookie + "\r\n\r\n"
}

// begin marks the start of st's connect.
func (st *stream) begin() {
	st.startAt = now()
	st.readyBy = st.startAt + int64(st.set.cfg.readyTimeout)
	if st.set.capHint > 0 {
		st.recs = make([]receipt, 0, st.set.capHint)
	}
}

// run dials stream st and writes its request, then hands it to the reader.
func (set *streamSet) run(ctx context.Context, st *stream, u *url.URL, req string, src net.IP) {
	st.begin()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}, Control: dialControl}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		st.finish(err)
		return
	}
	set.connMu.Lock()
	st.conn = conn
	closing := set.closing.Load()
	set.connMu.Unlock()
	if closing {
		conn.Close()
		st.finish(nil)
		return
	}
	// The deadline covers the write, and (as the readers keep it) the
	// reading up to ready.
	_ = conn.SetDeadline(time.Now().Add(set.cfg.readyTimeout))
	if _, err := io.WriteString(conn, req); err != nil {
		st.finish(err)
		return
	}
	set.reader.take(st)
}

// ready is the parser telling that the ready event arrived.
func (st *stream) ready(at int64) {
	st.readyAt = at
	st.release(true)
}

// message is the parser telling of a delivery, received at at. Only live
// ones count as received; the backlog is kept too while recording.
func (st *stream) message(id, at int64, live bool) {
	if live {
		st.set.received.Add(1)
	} else {
		st.set.replayed.Add(1)
	}
	if st.set.record.Load() {
		st.recs = append(st.recs, receipt{id: id, at: at})
	}
}

// release gives back the connect slot, once: at ready, or at failure.
func (st *stream) release(ok bool) {
	if st.released {
		return
	}
	st.released = true
	<-st.sem
	if ok {
		st.set.ready.Add(1)
	} else {
		st.set.failed.Add(1)
	}
	st.set.readyWG.Done()
}

// finish ends stream st, which err ended (nil: the run was closing before
// its request went out). Whoever owns the stream calls it exactly once.
func (st *stream) finish(err error) {
	set := st.set
	switch {
	case !st.p.inBody():
		// Failing to connect or to get a 200 is told as it is.
		st.err = err
	case st.p.isReady:
		if !set.closing.Load() {
			set.disconnects.Add(1)
			st.err = err
		}
	default:
		st.err = fmt.Errorf("stream ended before ready: %w", err)
	}
	st.release(false)
	set.doneWG.Done()
}

// goroutineReader reads each stream with a goroutine of its own (the one
// that dialed it).
type goroutineReader struct{}

func (goroutineReader) take(st *stream) { st.readConn() }

// stop has nothing to do: closing the sockets ends the reads.
func (goroutineReader) stop() {}

// readConn reads st until it ends. The buffer need not hold a line: the
// parser carries partial lines itself.
func (st *stream) readConn() {
	buf := make([]byte, 4096)
	cleared := false
	for {
		n, err := st.conn.Read(buf)
		at := now()
		if n > 0 {
			if perr := st.p.feed(buf[:n], at); perr != nil {
				st.finish(perr)
				return
			}
			if st.p.isReady && !cleared {
				_ = st.conn.SetDeadline(time.Time{})
				cleared = true
			}
		}
		if err != nil {
			st.finish(st.p.readError(err))
			return
		}
	}
}

// alive counts the streams that are ready and have not been dropped.
func (set *streamSet) alive() int64 {
	return set.ready.Load() - set.disconnects.Load()
}

// readyTimes returns each ready stream's dial-to-ready time and the last
// ready moment relative to t0.
func (set *streamSet) readyTimes(t0 int64) (perStream []int64, last int64) {
	for _, st := range set.streams {
		if st.readyAt == 0 {
			continue
		}
		perStream = append(perStream, st.readyAt-st.startAt)
		last = max(last, st.readyAt-t0)
	}
	return perStream, last
}

// firstErrors lists a few distinct stream errors.
func (set *streamSet) firstErrors(n int) []string {
	seen := map[string]int{}
	var order []string
	for _, st := range set.streams {
		if st.err == nil {
			continue
		}
		msg := st.err.Error()
		if seen[msg] == 0 {
			order = append(order, msg)
		}
		seen[msg]++
	}
	var out []string
	for _, m := range order {
		if len(out) == n {
			break
		}
		out = append(out, fmt.Sprintf("%dx %s", seen[m], m))
	}
	return out
}
