package main

import (
	"bytes"
	"errors"
	"fmt"
)

// sseSink is told what a stream's parser finds. The parser decides what
// counts (ready once; a message is live after it, the backlog before);
// the sink only keeps score.
type sseSink interface {
	ready(at int64)
	message(id, at int64, live bool)
}

// Where the parser is in the HTTP response.
const (
	inStatus    = iota // the status line
	inHeaders          // header lines, up to the empty one
	inChunkSize        // a chunk-size line
	inChunkData        // chunk data, p.left bytes of it still to come
	inChunkEnd         // the CRLF after chunk data
	inIdentity         // a body that runs to the end of the connection
)

// maxProtoLine bounds the status, header and chunk-size lines: they are
// short, and a peer sending endless ones is broken.
const maxProtoLine = 4096

var (
	errEndOfBody    = errors.New("end of stream body")
	errProtoTooLong = errors.New("line too long")
)

// sseParser reads one SSE response as its bytes arrive, in whatever pieces
// the reads return, so that a reader can hand it each read as it comes and
// keep no goroutine or buffer per stream waiting for the rest of a line.
//
// Lines wholly inside a fed slice are parsed where they lie; only the
// partial line at the end of a slice is copied, into proto (the HTTP
// framing) or line (the event stream), which are kept apart because a
// chunk-size line can fall in the middle of an event-stream line.
type sseParser struct {
	sink    sseSink
	bufSize int // the longest event-stream line kept, its '\n' included

	state   int
	chunked bool
	code    [3]byte // the status code, checked when the head ends
	left    int     // bytes of the current chunk still to come
	proto   []byte  // partial status, header or chunk-size line
	line    []byte  // partial event-stream line
	skip    bool    // inside an event-stream line longer than bufSize
	err     error   // once set, the parser takes no more bytes

	isReady bool
	event   byte // 'm' message (or none named), 'r' ready, 'o' other
	id      int64
	hasData bool
}

func newSSEParser(sink sseSink, bufSize int) sseParser {
	return sseParser{sink: sink, bufSize: bufSize, event: 'm'}
}

// inBody tells whether the head was read and accepted, so that an error
// from here on is the stream ending rather than it failing to start.
func (p *sseParser) inBody() bool { return p.state > inHeaders }

// readError words an error from reading the connection: during the head
// it says which part was being read, since a stream failing there never
// started, which is worth telling apart from one that ended.
func (p *sseParser) readError(err error) error {
	switch p.state {
	case inStatus:
		return fmt.Errorf("reading the status line: %w", err)
	case inHeaders:
		return fmt.Errorf("reading headers: %w", err)
	}
	return err
}

// feed takes the bytes of one read, which returned at at. It returns an
// error when the response is not one to read on (not 200, broken framing,
// the body's end); after that, feed does nothing but return it again.
func (p *sseParser) feed(b []byte, at int64) error {
	for len(b) > 0 && p.err == nil {
		switch p.state {
		case inChunkData:
			n := min(p.left, len(b))
			p.events(b[:n], at)
			p.left -= n
			b = b[n:]
			if p.left == 0 {
				p.state = inChunkEnd
			}
		case inIdentity:
			p.events(b, at)
			b = nil
		case inChunkEnd:
			// Whatever stands before the '\n' is skipped rather than
			// exactly CRLF insisted on: nothing of use can be there.
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil
			}
			b = b[i+1:]
			p.state = inChunkSize
		default:
			var l []byte
			if l, b = p.protoLine(b); l == nil {
				return p.err
			}
			p.protoLineDone(l)
		}
	}
	return p.err
}

// protoLine returns the next whole status, header or chunk-size line with
// its '\n', and what follows it; or nil when b ends first, keeping the
// partial line for the next feed.
func (p *sseParser) protoLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(p.proto)+len(b) > maxProtoLine {
			p.protoTooLong()
		} else {
			p.proto = append(p.proto, b...)
		}
		return nil, nil
	}
	line, rest = b[:i+1], b[i+1:]
	if len(p.proto) > 0 {
		line = append(p.proto, line...)
		// Emptied now, the backing array still holding line: nothing is
		// appended to it before line has been acted on.
		p.proto = line[:0]
	}
	if len(line) > maxProtoLine {
		p.protoTooLong()
		return nil, nil
	}
	return line, rest
}

func (p *sseParser) protoTooLong() {
	p.proto = nil
	if p.state == inChunkSize {
		p.err = fmt.Errorf("chunk size %w", errProtoTooLong)
		return
	}
	p.err = p.readError(errProtoTooLong)
}

// protoLineDone acts on a whole status, header or chunk-size line (with
// its terminator).
func (p *sseParser) protoLineDone(line []byte) {
	switch p.state {
	case inStatus:
		// Checked and quoted with its terminator: the error then shows
		// the line as it came.
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
			p.err = fmt.Errorf("not an HTTP answer: %q", line)
			return
		}
		copy(p.code[:], line[9:12])
		p.state = inHeaders
	case inHeaders:
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			k, v, _ := bytes.Cut(line, []byte(":"))
			if bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) && bytes.Contains(bytes.ToLower(v), []byte("chunked")) {
				p.chunked = true
			}
			return
		}
		if string(p.code[:]) != "200" {
			p.err = fmt.Errorf("HTTP %s", p.code[:])
			return
		}
		p.state = inIdentity
		if p.chunked {
			p.state = inChunkSize
		}
		p.proto = nil // a stream's head is read once
	case inChunkSize:
		head := bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(head, ';'); i >= 0 {
			head = head[:i]
		}
		size, ok := parseHex31(head)
		switch {
		case !ok:
			p.err = fmt.Errorf("bad chunk size %q", head)
		case size == 0:
			p.err = errEndOfBody
		default:
			p.left = size
			p.state = inChunkData
		}
	}
}

// parseHex31 reads a chunk size: hex digits only, below 1<<31 (what
// strconv.ParseUint(s, 16, 31) accepts, without making a string of it).
func parseHex31(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(d)
		if n >= 1<<31 {
			return 0, false
		}
	}
	return int(n), true
}

// events takes body bytes and acts on each event-stream line they finish.
func (p *sseParser) events(b []byte, at int64) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.keepPartial(b)
			return
		}
		l := b[:i]
		b = b[i+1:]
		if p.skip {
			p.skip = false
			continue
		}
		// A line is kept when it and its '\n' fit in bufSize, however the
		// reads split it, so that the result never depends on the split.
		if len(p.line)+len(l)+1 > p.bufSize {
			p.line = p.line[:0]
			continue
		}
		if len(p.line) > 0 {
			p.growLine(len(p.line) + len(l))
			l = append(p.line, l...)
			p.line = l[:0]
		}
		if n := len(l); n > 0 && l[n-1] == '\r' {
			l = l[:n-1]
		}
		p.eventLine(l, at)
	}
}

// keepPartial keeps the start of a line for the next feed; a line that
// cannot fit in bufSize any more is dropped up to its end, its content
// not being needed (a large data: line).
func (p *sseParser) keepPartial(b []byte) {
	if p.skip {
		return
	}
	n := len(p.line) + len(b)
	if n >= p.bufSize {
		p.skip = true
		p.line = p.line[:0]
		return
	}
	p.growLine(n)
	p.line = append(p.line, b...)
}

// growLine makes room for n bytes of partial line. The carry is grown here
// rather than by append so that it never outgrows bufSize; most streams
// never need it at all.
func (p *sseParser) growLine(n int) {
	if n <= cap(p.line) {
		return
	}
	grown := make([]byte, len(p.line), min(p.bufSize, max(n, 2*cap(p.line), 256)))
	copy(grown, p.line)
	p.line = grown
}

// eventLine acts on one event-stream line (without its terminator). An
// empty line ends an event: ready marks the stream ready once; a message
// with data and an id is a delivery: live once ready, the backlog before.
func (p *sseParser) eventLine(l []byte, at int64) {
	switch {
	case len(l) == 0:
		if p.hasData {
			switch p.event {
			case 'r':
				if !p.isReady {
					p.isReady = true
					p.sink.ready(at)
				}
			case 'm':
				if p.id > 0 {
					p.sink.message(p.id, at, p.isReady)
				}
			}
		}
		p.event, p.id, p.hasData = 'm', 0, false
	case l[0] == ':':
		// a comment: the heartbeat
	case bytes.HasPrefix(l, []byte("data:")):
		p.hasData = true
	case bytes.HasPrefix(l, []byte("id:")):
		p.id = parseID(l[3:])
	case bytes.HasPrefix(l, []byte("event:")):
		v := bytes.TrimPrefix(l[6:], []byte(" "))
		switch {
		case bytes.Equal(v, []byte("message")):
			p.event = 'm'
		case bytes.Equal(v, []byte("ready")):
			p.event = 'r'
		default:
			p.event = 'o'
		}
	}
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
