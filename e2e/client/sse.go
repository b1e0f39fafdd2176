// Package client is a Go client of papo's public HTTP API: accounts,
// posting, and the event stream read by a spec-true Server-Sent Events
// parser. The tests, the end-to-end suites and the load tool use it; it
// reaches papo only through its routes, as any other client would.
package client

import (
	"bufio"
	"io"
	"strings"
)

// Event is one Server-Sent Event as the HTML standard's parser yields it.
type Event struct {
	ID    string // the last event ID in force when it was dispatched
	Type  string // "message" when the stream named none
	Data  string
	Retry int // the reconnection time set by a retry: field, 0 if none
}

// Parser reads events from a stream following the HTML standard's
// "event stream interpretation": lines end in CRLF, LF or CR; a line
// starting with a colon is a comment; "field: value" loses one leading
// space from the value; data lines join with LF; a blank line dispatches.
type Parser struct {
	r        *bufio.Reader
	lastID   string
	retry    int
	Comments int // comment lines seen (heartbeats)
	// OnComment, when set, is called for each comment line.
	OnComment func(text string)
	started   bool
}

// NewParser reads from r.
func NewParser(r io.Reader) *Parser { return &Parser{r: bufio.NewReaderSize(r, 64<<10)} }

// LastID is the stream's last event ID (what EventSource sends back as
// Last-Event-ID).
func (p *Parser) LastID() string { return p.lastID }

// readLine returns one line without its terminator (CRLF, LF or CR).
func (p *Parser) readLine() (string, error) {
	var b strings.Builder
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			if b.Len() > 0 && err == io.EOF {
				// An unterminated last line is discarded by the standard.
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			if next, err := p.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = p.r.ReadByte()
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}

// Next returns the next dispatched event.
func (p *Parser) Next() (Event, error) {
	var data strings.Builder
	hasData := false
	eventType := ""
	for {
		line, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if !p.started {
			p.started = true
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" {
			if !hasData {
				eventType = ""
				continue
			}
			ev := Event{ID: p.lastID, Type: eventType, Data: strings.TrimSuffix(data.String(), "\n"), Retry: p.retry}
			if ev.Type == "" {
				ev.Type = "message"
			}
			return ev, nil
		}
		if line[0] == ':' {
			p.Comments++
			if p.OnComment != nil {
				p.OnComment(line[1:])
			}
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			eventType = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				p.lastID = value
			}
		case "retry":
			if n, ok := digits(value); ok {
				p.retry = n
			}
		}
	}
}

func digits(s string) (int, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
