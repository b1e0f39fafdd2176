package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// recorder is a sink that keeps what the parser tells it.
type recorder struct {
	readies int
	readyAt int64
	recs    []receipt // live
	backlog []receipt // before ready
}

func (r *recorder) ready(at int64) { r.readies++; r.readyAt = at }
func (r *recorder) message(id, at int64, live bool) {
	if live {
		r.recs = append(r.recs, receipt{id: id, at: at})
	} else {
		r.backlog = append(r.backlog, receipt{id: id, at: at})
	}
}

// outcome is what parsing one input gave.
type outcome struct {
	readies int
	readyAt int64
	recs    []receipt
	backlog []receipt
	err     string
	inBody  bool
}

// parse feeds data in pieces ending at the offsets ends (ascending, the
// last len(data)); each piece's at is its end offset, so that a receipt
// tells which piece brought it. Every piece goes through one buffer that
// is scribbled over after each feed, as the epoll loop's shared buffer
// is, so a parser keeping a fed slice past its feed shows.
func parse(t testing.TB, data []byte, bufSize int, ends []int) outcome {
	t.Helper()
	var rec recorder
	p := newSSEParser(&rec, bufSize)
	buf := make([]byte, len(data))
	var err error
	start := 0
	for _, end := range ends {
		n := copy(buf, data[start:end])
		err = p.feed(buf[:n], int64(end))
		for i := range buf[:n] {
			buf[i] = '\n'
		}
		if len(p.line) >= bufSize || cap(p.line) > bufSize {
			t.Fatalf("the line carry outgrew bufSize %d: len %d, cap %d", bufSize, len(p.line), cap(p.line))
		}
		start = end
		if err != nil {
			break
		}
	}
	o := outcome{readies: rec.readies, readyAt: rec.readyAt, recs: rec.recs, backlog: rec.backlog, inBody: p.inBody()}
	if err != nil {
		o.err = err.Error()
	}
	return o
}

// byteEnds splits data a byte at a time.
func byteEnds(n int) []int {
	ends := make([]int, n)
	for i := range ends {
		ends[i] = i + 1
	}
	return ends
}

// remap says what a run split at ends must give, from the run fed a byte
// at a time: there, each at is the offset just past the byte that
// completed the event; split, it is the end of the piece holding that byte.
func remap(ref outcome, ends []int) outcome {
	piece := func(at int64) int64 {
		i, _ := slices.BinarySearch(ends, int(at))
		return int64(ends[i])
	}
	out := ref
	if out.readies > 0 {
		out.readyAt = piece(ref.readyAt)
	}
	at := func(recs []receipt) []receipt {
		var out []receipt
		for _, r := range recs {
			out = append(out, receipt{id: r.id, at: piece(r.at)})
		}
		return out
	}
	out.recs, out.backlog = at(ref.recs), at(ref.backlog)
	return out
}

func sameOutcome(a, b outcome) bool {
	return a.readies == b.readies && a.readyAt == b.readyAt && a.err == b.err &&
		a.inBody == b.inBody && slices.Equal(a.recs, b.recs) && slices.Equal(a.backlog, b.backlog)
}

// checkSplits parses data whole, a byte at a time, cut in two at every
// offset, and cut at random, and wants the same outcome from each.
func checkSplits(t *testing.T, data []byte, bufSize int) outcome {
	t.Helper()
	ref := parse(t, data, bufSize, byteEnds(len(data)))
	try := func(name string, ends []int) {
		t.Helper()
		if got, want := parse(t, data, bufSize, ends), remap(ref, ends); !sameOutcome(got, want) {
			t.Fatalf("%s (ends %v):\ngot  %+v\nwant %+v", name, ends, got, want)
		}
	}
	try("whole", []int{len(data)})
	for k := 1; k < len(data); k++ {
		try(fmt.Sprintf("cut at %d", k), []int{k, len(data)})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		try("random cuts", randomEnds(rng, len(data)))
	}
	return ref
}

func randomEnds(rng *rand.Rand, n int) []int {
	var ends []int
	for at := 0; at < n; {
		at = min(n, at+1+rng.IntN(40))
		ends = append(ends, at)
	}
	return ends
}

// chunk frames body as HTTP/1.1 chunks of the given sizes (the rest in a
// last chunk), the second with an extension, and ends it.
func chunk(body string, sizes ...int) string {
	var b strings.Builder
	for i := 0; len(body) > 0; i++ {
		n := len(body)
		if i < len(sizes) {
			n = min(n, sizes[i])
		}
		ext := ""
		if i == 1 {
			ext = ";name=value"
		}
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", n, ext, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

const chunkedHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n"

func msg(id int, event, text string) string {
	s := fmt.Sprintf("id: %d\n", id)
	if event != "" {
		s += "event: " + event + "\n"
	}
	return s + fmt.Sprintf(`data: {"id":%d,"room":"general","user":"load7","text":%q,"at":"2026-01-01T00:00:00Z"}`, id, text) + "\n\n"
}

// sseText is what papo sends on a fresh stream: the backlog (told apart:
// before ready), the users event, ready, then live events.
func sseText() string {
	var b strings.Builder
	b.WriteString("retry: 2000\n\n")
	for id := 101; id <= 104; id++ {
		b.WriteString(msg(id, "message", "backlog"))
	}
	b.WriteString(`event: users` + "\n" + `data: {"users":["load1","load7"]}` + "\n\n")
	b.WriteString(": ping\n\n")
	b.WriteString("event: ready\ndata: {}\n\n")
	b.WriteString(msg(201, "message", "papoload #0 xxxx"))
	b.WriteString(msg(202, "join", "not a message"))
	b.WriteString(msg(203, "", "unnamed: a message"))
	b.WriteString(": ping\n\n")
	b.WriteString("event: ready\ndata: {}\n\n") // a second ready is not a second start
	b.WriteString(msg(204, "message", "papoload #1 xxxx"))
	b.WriteString("event: message\ndata: {\"no\":\"id\"}\n\n")
	b.WriteString("id: 205\nevent: message\n\n") // no data: not dispatched
	b.WriteString(msg(206, "message", "papoload #2 xxxx"))
	return b.String()
}

func TestParser(t *testing.T) {
	live, backlog := []int64{201, 203, 204, 206}, []int64{101, 102, 103, 104}
	long := strings.Repeat("x", 200)
	tests := []struct {
		name    string
		input   string
		bufSize int
		ids     []int64 // the live receipts' ids, in order
		backlog []int64 // those before ready
		ready   bool
		err     string
		inBody  bool
	}{
		{
			name:    "chunked, papo's stream",
			input:   chunkedHead + chunk(sseText(), 7, 100, 1, 33, 250),
			bufSize: 16 << 10,
			ids:     live, backlog: backlog, ready: true, err: errEndOfBody.Error(), inBody: true,
		},
		{
			name:    "chunked, one event per chunk",
			input:   chunkedHead + chunk("event: ready\ndata: {}\n\n"+msg(1, "message", "a")+msg(2, "message", "b"), 23, len(msg(1, "message", "a"))),
			bufSize: 512,
			ids:     []int64{1, 2}, ready: true, err: errEndOfBody.Error(), inBody: true,
		},
		{
			name:    "identity body, HTTP/1.0",
			input:   "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + sseText(),
			bufSize: 16 << 10,
			ids:     live, backlog: backlog, ready: true, inBody: true,
		},
		{
			name:    "CRLF lines",
			input:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n" + chunk(strings.ReplaceAll(sseText(), "\n", "\r\n"), 50, 3),
			bufSize: 16 << 10,
			ids:     live, backlog: backlog, ready: true, err: errEndOfBody.Error(), inBody: true,
		},
		{
			name: "a line longer than the buffer is skipped",
			input: "HTTP/1.1 200 OK\r\n\r\n" + "event: ready\ndata: {}\n\n" +
				": " + long + "\n" +
				"id: 7\nevent: message\ndata: " + long + "\n\n" + // its only data line is skipped
				msg(8, "message", "short") +
				"id: 9\nevent: message\ndata: " + long + "\ndata: x\n\n",
			bufSize: 150,
			ids:     []int64{8, 9}, ready: true, inBody: true,
		},
		{
			name: "a line that just fits is kept",
			// "data: " and 57 bytes, and its '\n': 64 bytes.
			input:   "HTTP/1.1 200 OK\r\n\r\nevent: ready\ndata: {}\n\nid: 3\ndata: " + strings.Repeat("y", 57) + "\n\nid: 4\ndata: " + strings.Repeat("y", 58) + "\n\n",
			bufSize: 64,
			ids:     []int64{3}, ready: true, inBody: true,
		},
		{
			name:    "a long line across chunks",
			input:   chunkedHead + chunk("event: ready\ndata: {}\n\nid: 5\nevent: message\ndata: "+long+long+"\ndata: ok\n\n"+msg(6, "", "z"), 30, 30, 30, 30, 30, 30, 30),
			bufSize: 100,
			ids:     []int64{5, 6}, ready: true, err: errEndOfBody.Error(), inBody: true,
		},
		{
			name:    "no ready: the backlog alone",
			input:   "HTTP/1.1 200 OK\r\n\r\n" + msg(1, "message", "a") + "event: ready\n\n" + msg(2, "message", "b"),
			bufSize: 512,
			backlog: []int64{1, 2}, inBody: true,
		},
		{
			name:    "not 200",
			input:   "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"error\":\"not logged in\"}\n",
			bufSize: 512,
			err:     "HTTP 401",
		},
		{
			name:    "not HTTP",
			input:   "SSH-2.0-OpenSSH_9.6\r\n",
			bufSize: 512,
			err:     `not an HTTP answer: "SSH-2.0-OpenSSH_9.6\r\n"`,
		},
		{
			name:    "bad chunk size",
			input:   chunkedHead + "7\r\n: ping\n\r\nzz\r\n: ping\n\r\n",
			bufSize: 512,
			err:     `bad chunk size "zz"`, inBody: true,
		},
		{
			name:    "chunk size too large",
			input:   chunkedHead + "80000000\r\n: ping\n",
			bufSize: 512,
			err:     `bad chunk size "80000000"`, inBody: true,
		},
		{
			name:    "a header line too long",
			input:   "HTTP/1.1 200 OK\r\nX-Long: " + strings.Repeat("h", maxProtoLine) + "\r\n\r\n",
			bufSize: 512,
			err:     "reading headers: line too long",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSplits(t, []byte(tc.input), tc.bufSize)
			if ids := idsOf(got.recs); !slices.Equal(ids, tc.ids) {
				t.Errorf("live ids %v, want %v", ids, tc.ids)
			}
			if ids := idsOf(got.backlog); !slices.Equal(ids, tc.backlog) {
				t.Errorf("backlog ids %v, want %v", ids, tc.backlog)
			}
			if ready := got.readies > 0; ready != tc.ready || got.readies > 1 {
				t.Errorf("ready %d times, want ready %v (once)", got.readies, tc.ready)
			}
			if got.err != tc.err {
				t.Errorf("error %q, want %q", got.err, tc.err)
			}
			if got.inBody != tc.inBody {
				t.Errorf("inBody %v, want %v", got.inBody, tc.inBody)
			}
		})
	}
}

func idsOf(recs []receipt) []int64 {
	var ids []int64
	for _, r := range recs {
		ids = append(ids, r.id)
	}
	return ids
}

// TestParserReceiptTimes checks that each receipt carries the at of the
// feed that completed its event, not of the feed that began it.
func TestParserReceiptTimes(t *testing.T) {
	var rec recorder
	p := newSSEParser(&rec, 512)
	ready, m := "event: ready\ndata: {}\n\n", msg(9, "message", "t")
	feeds := []string{
		chunkedHead,
		fmt.Sprintf("%x\r\n%s\r\n", len(ready), ready),
		fmt.Sprintf("%x\r\n%s", len(m), m[:len(m)-1]), // all but the last '\n'
		"\n\r\n",
	}
	for i, f := range feeds {
		if err := p.feed([]byte(f), int64(i+1)*100); err != nil {
			t.Fatalf("feed %d: %v", i, err)
		}
	}
	if rec.readyAt != 200 {
		t.Errorf("ready at %d, want 200", rec.readyAt)
	}
	if want := []receipt{{id: 9, at: 400}}; !slices.Equal(rec.recs, want) {
		t.Errorf("receipts %v, want %v", rec.recs, want)
	}
}

func TestReadErrorWording(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"in the status line", "HTTP/1.1 2", "reading the status line: EOF"},
		{"in the headers", "HTTP/1.1 200 OK\r\nContent-Ty", "reading headers: EOF"},
		{"in the body", "HTTP/1.1 200 OK\r\n\r\nevent: re", "EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newSSEParser(&recorder{}, 512)
			if err := p.feed([]byte(tc.input), 1); err != nil {
				t.Fatal(err)
			}
			if got := p.readError(io.EOF).Error(); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParser feeds arbitrary bytes, cut arbitrarily, and wants the parser
// never to panic and every way of cutting the same bytes to agree.
func FuzzParser(f *testing.F) {
	f.Add([]byte(chunkedHead+chunk(sseText(), 7, 100, 1)), uint64(1), uint16(16<<10))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\n"+sseText()), uint64(2), uint16(40))
	f.Add([]byte(chunkedHead+"5;x\r\nabc\n\n\r\nzz\r\n"), uint64(3), uint16(8))
	f.Add([]byte("HTTP/1.1 500 Oops\r\n\r\n"), uint64(4), uint16(512))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, bufSize uint16) {
		if len(data) > 1<<16 {
			return
		}
		size := int(bufSize)%2048 + 1
		ref := parse(t, data, size, byteEnds(len(data)))
		rng := rand.New(rand.NewPCG(seed, seed>>32))
		for _, ends := range [][]int{{len(data)}, randomEnds(rng, len(data)), randomEnds(rng, len(data))} {
			if len(data) == 0 {
				ends = nil
			}
			if got, want := parse(t, data, size, ends), remap(ref, ends); !sameOutcome(got, want) {
				t.Fatalf("ends %v:\ngot  %+v\nwant %+v", ends, got, want)
			}
		}
	})
}
