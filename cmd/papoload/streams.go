package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
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

// stream is one SSE connection, read by one goroutine with one buffer. It
// does not parse JSON: it takes the id: of each message event, notices the
// ready event, and skips everything else.
type stream struct {
	idx     int
	startAt int64 // dial began
	readyAt int64 // the ready event arrived; 0 until then
	recs    []receipt
	err     error
	conn    net.Conn // guarded by streamSet.connMu
}

// streamSet is every stream of a run.
type streamSet struct {
	cfg     *config
	streams []*stream

	readyWG     sync.WaitGroup // one per stream, done at ready or failure
	doneWG      sync.WaitGroup // one per stream, done when its reader ends
	ready       atomic.Int64
	failed      atomic.Int64
	received    atomic.Int64 // message events received after ready
	disconnects atomic.Int64 // streams ended by the server after ready
	record      atomic.Bool  // keep receipts (the measured phase)
	closing     atomic.Bool
	connMu      sync.Mutex // guards stream.conn
	capHint     int        // receipts to preallocate per stream
}

// streamTarget says where stream i goes.
type streamTarget func(i int) (u *url.URL, room, cursor string, acct account)

// openStreams connects cfg.streams streams, at most cfg.concurrency at a
// time (the server's listen backlog would drop more), and waits until every
// one is ready or has failed, or ctx ends.
func openStreams(ctx context.Context, cfg *config, target streamTarget, capHint int) (*streamSet, time.Duration) {
	set := &streamSet{cfg: cfg, streams: make([]*stream, cfg.streams), capHint: capHint}
	sem := make(chan struct{}, cfg.concurrency)
	start := time.Now()
	set.readyWG.Add(cfg.streams)
	set.doneWG.Add(cfg.streams)
	for i := range set.streams {
		st := &stream{idx: i}
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
		go set.run(ctx, st, u, room, cursor, acct, src, sem)
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

func (set *streamSet) run(ctx context.Context, st *stream, u *url.URL, room, cursor string, acct account, src net.IP, sem chan struct{}) {
	defer set.doneWG.Done()
	readyDone := false
	release := func(ok bool) {
		if readyDone {
			return
		}
		readyDone = true
		<-sem
		if ok {
			set.ready.Add(1)
		} else {
			set.failed.Add(1)
		}
		set.readyWG.Done()
	}
	defer release(false)
	st.startAt = now()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}, Control: bindNoPort}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		st.err = err
		return
	}
	set.connMu.Lock()
	st.conn = conn
	closing := set.closing.Load()
	set.connMu.Unlock()
	if closing {
		conn.Close()
		return
	}
	path := "/rooms/" + room + "/events"
	if cursor != "" {
		path += "?last_event_id=" + cursor
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nAccept: text/event-stream\r\nCookie: " + acct.Cookie + "\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		st.err = err
		return
	}
	br := bufio.NewReaderSize(conn, 4096)
	chunked, err := readHead(br)
	if err != nil {
		st.err = err
		return
	}
	r := &sseReader{br: br, chunked: chunked, buf: make([]byte, set.cfg.bufSize)}
	if set.capHint > 0 {
		st.recs = make([]receipt, 0, set.capHint)
	}
	var (
		isReady bool
		event   byte // 'm' message (or none named), 'r' ready, 'o' other
		id      int64
		hasData bool
	)
	for {
		line, at, err := r.line()
		if err != nil {
			if isReady && !set.closing.Load() {
				set.disconnects.Add(1)
				st.err = err
			} else if !isReady {
				st.err = fmt.Errorf("stream ended before ready: %w", err)
			}
			return
		}
		switch {
		case len(line) == 0:
			if hasData {
				switch event {
				case 'r':
					if !isReady {
						isReady = true
						st.readyAt = at
						_ = conn.SetDeadline(time.Time{})
						release(true)
					}
				case 'm':
					if isReady && id > 0 {
						set.received.Add(1)
						if set.record.Load() {
							st.recs = append(st.recs, receipt{id: id, at: at})
						}
					}
				}
			}
			event, id, hasData = 'm', 0, false
		case line[0] == ':':
			// a comment: the heartbeat
		case bytes.HasPrefix(line, []byte("data:")):
			hasData = true
		case bytes.HasPrefix(line, []byte("id:")):
			id = parseID(line[3:])
		case bytes.HasPrefix(line, []byte("event:")):
			v := bytes.TrimPrefix(line[6:], []byte(" "))
			switch {
			case bytes.Equal(v, []byte("message")):
				event = 'm'
			case bytes.Equal(v, []byte("ready")):
				event = 'r'
			default:
				event = 'o'
			}
		}
	}
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2+): binding
// to a source address then leaves the port to connect(), which may reuse
// ports in TIME_WAIT from earlier runs and needs only the whole 4-tuple to
// be unique. Without it, bind() searches the ephemeral range for a port
// free on every destination, which grows slow with tens of thousands of
// sockets in TIME_WAIT.
const ipBindAddressNoPort = 24

func bindNoPort(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}

func parseID(b []byte) int64 {
	b = bytes.TrimPrefix(b, []byte(" "))
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// readHead reads the status line and headers; it wants 200 and tells
// whether the body is chunked.
func readHead(br *bufio.Reader) (chunked bool, err error) {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("reading the status line: %w", err)
	}
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) {
		return false, fmt.Errorf("not an HTTP answer: %q", status)
	}
	code := string(status[9:12])
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false, fmt.Errorf("reading headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) && bytes.Contains(bytes.ToLower(v), []byte("chunked")) {
			chunked = true
		}
	}
	if code != "200" {
		return chunked, fmt.Errorf("HTTP %s", code)
	}
	return chunked, nil
}

// sseReader yields the lines of a (possibly chunked) event stream body.
type sseReader struct {
	br       *bufio.Reader
	chunked  bool
	left     int  // bytes left in the current chunk
	crlf     bool // a chunk's trailing CRLF is still to be read
	buf      []byte
	start    int
	end      int
	at       int64 // when the last read returned
	skipping bool  // inside a line longer than buf: dropped
}

var errEndOfBody = errors.New("end of stream body")

// line returns the next line without its terminator (LF or CRLF), and when
// the read that completed it returned. The slice is valid until the next call.
func (r *sseReader) line() ([]byte, int64, error) {
	for {
		if i := bytes.IndexByte(r.buf[r.start:r.end], '\n'); i >= 0 {
			l := r.buf[r.start : r.start+i]
			r.start += i + 1
			if r.skipping {
				r.skipping = false
				continue
			}
			if n := len(l); n > 0 && l[n-1] == '\r' {
				l = l[:n-1]
			}
			return l, r.at, nil
		}
		if r.start > 0 {
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		}
		if r.end == len(r.buf) {
			// A line longer than the buffer (a large data: line): its
			// content is not needed, so drop it up to its end.
			r.skipping = true
			r.end = 0
		}
		n, err := r.read(r.buf[r.end:])
		r.end += n
		r.at = now()
		if err != nil && n == 0 {
			return nil, r.at, err
		}
	}
}

func (r *sseReader) read(p []byte) (int, error) {
	if !r.chunked {
		return r.br.Read(p)
	}
	for r.left == 0 {
		if r.crlf {
			if _, err := r.br.ReadSlice('\n'); err != nil {
				return 0, err
			}
			r.crlf = false
		}
		head, err := r.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		head = bytes.TrimRight(head, "\r\n")
		if i := bytes.IndexByte(head, ';'); i >= 0 {
			head = head[:i]
		}
		size, err := strconv.ParseUint(string(head), 16, 31)
		if err != nil {
			return 0, fmt.Errorf("bad chunk size %q", head)
		}
		if size == 0 {
			return 0, errEndOfBody
		}
		r.left = int(size)
		r.crlf = true
	}
	if len(p) > r.left {
		p = p[:r.left]
	}
	n, err := r.br.Read(p)
	r.left -= n
	return n, err
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
