package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// postRec is one POST: when it was sent and answered, and the id it got.
type postRec struct {
	seq      int // its index among the posts of runRate (which room it went to)
	id       int64
	status   int
	sent     int64
	answered int64
	err      bool
}

// poster sends messages, form-encoded, reading only the id out of the
// answer. Each sending goroutine owns its connections (postConns): a
// request is written as bytes and its answer read with http.ReadResponse,
// which costs a fraction of what http.Client does per request (its
// Transport runs two goroutines per connection and hands every request
// and answer between them), and the tool shares its cores with the server.
type poster struct {
	cfg *config
	hc  *http.Client // for the odd GET
	pad string
}

func newPoster(cfg *config) *poster {
	return &poster{cfg: cfg, hc: &http.Client{Timeout: 30 * time.Second}}
}

// body is the form for message seq: "papoload #SEQ xxxx…", -size long.
func (p *poster) body(seq int) string {
	text := "papoload #" + strconv.Itoa(seq) + " "
	if n := p.cfg.size - len(text); n > 0 {
		if len(p.pad) < n {
			p.pad = strings.Repeat("x", p.cfg.size)
		}
		text += p.pad[:n]
	}
	return "message=" + url.QueryEscape(text)
}

var idKey = []byte(`"id":`)

// postConns are one sending goroutine's keep-alive connections, one per
// instance; not safe for concurrent use.
type postConns struct {
	byHost map[string]*postConn
	req    []byte
	answer []byte
}

type postConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newPostConns() *postConns { return &postConns{byHost: map[string]*postConn{}} }

// close closes every connection.
func (pc *postConns) close() {
	for host, c := range pc.byHost {
		c.c.Close()
		delete(pc.byHost, host)
	}
}

// postTimeout bounds one request and its answer.
const postTimeout = 30 * time.Second

// do sends req to host and returns the answer's status and body. A
// connection that fails or that the server closes is dropped; the next
// request dials again. A request on a kept connection that fails before
// any answer is retried once on a new one, as http.Client does (the
// server may have closed it idle).
func (pc *postConns) do(ctx context.Context, host string, req []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		c, reused, err := pc.conn(ctx, host)
		if err != nil {
			return 0, nil, err
		}
		deadline := time.Now().Add(postTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d // the run's -timeout
		}
		status, body, keep, err := pc.roundTrip(c, req, deadline)
		if !keep || err != nil {
			c.c.Close()
			delete(pc.byHost, host)
		}
		if err != nil && status == 0 && reused && attempt == 0 {
			continue
		}
		return status, body, err
	}
}

func (pc *postConns) conn(ctx context.Context, host string) (*postConn, bool, error) {
	if c := pc.byHost[host]; c != nil {
		return c, true, nil
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	c := &postConn{c: nc, br: bufio.NewReaderSize(nc, 4096)}
	pc.byHost[host] = c
	return c, false, nil
}

func (pc *postConns) roundTrip(c *postConn, req []byte, deadline time.Time) (status int, body []byte, keep bool, err error) {
	_ = c.c.SetDeadline(deadline)
	if _, err := c.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, err
	}
	pc.answer = pc.answer[:0]
	buf := bytes.NewBuffer(pc.answer)
	_, err = io.Copy(buf, resp.Body)
	resp.Body.Close()
	pc.answer = buf.Bytes()
	return resp.StatusCode, pc.answer, err == nil && !resp.Close, err
}

// request is the HTTP/1.1 POST of body to room on u as acct.
func (pc *postConns) request(u *url.URL, room string, acct account, body string) []byte {
	b := pc.req[:0]
	b = append(b, "POST "...)
	b = append(b, u.Path...)
	b = append(b, "/rooms/"...)
	b = append(b, room...)
	b = append(b, "/messages HTTP/1.1\r\nHost: "...)
	b = append(b, u.Host...)
	b = append(b, "\r\nContent-Type: application/x-www-form-urlencoded\r\nCookie: "...)
	b = append(b, acct.Cookie...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	pc.req = b
	return b
}

// post sends one message to room on u as acct over conns and returns
// what happened.
func (p *poster) post(ctx context.Context, conns *postConns, u *url.URL, room string, acct account, body string) postRec {
	r := postRec{sent: now()}
	status, answer, err := conns.do(ctx, u.Host, conns.request(u, room, acct, body))
	r.answered, r.status = now(), status
	if err != nil || status != http.StatusCreated {
		r.err = true
	} else if i := bytes.Index(answer, idKey); i >= 0 {
		r.id = parseLeadingInt(answer[i+len(idKey):])
	}
	return r
}

func parseLeadingInt(b []byte) int64 {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// postTarget says where post i goes.
type postTarget func(i int) (u *url.URL, room string, acct account)

// runRate posts at rate for duration, open loop: post i is due at
// start + i/rate, whatever the answers to earlier posts are doing, with
// cfg.posters connections. It returns one record per post that was sent.
func (p *poster) runRate(ctx context.Context, rate float64, duration time.Duration, target postTarget) (recs []postRec, late int) {
	total := int(rate * duration.Seconds())
	recs = make([]postRec, total)
	sent := make([]bool, total)
	jobs := make(chan int, p.cfg.posters*4)
	var wg sync.WaitGroup
	for range p.cfg.posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := newPostConns()
			defer conns.close()
			for i := range jobs {
				u, room, acct := target(i)
				recs[i] = p.post(ctx, conns, u, room, acct, p.body(i))
				recs[i].seq = i
				sent[i] = true
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				break loop
			}
		}
		if time.Since(due) > 10*time.Millisecond {
			late++
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	out := recs[:0]
	for i := range recs {
		if sent[i] {
			out = append(out, recs[i])
		}
	}
	return out, late
}

// summarizePosts prints POST latency and outcomes.
func summarizePosts(recs []postRec) {
	lat := make([]int64, 0, len(recs))
	statuses := map[string]int{}
	for _, r := range recs {
		if r.err {
			statuses[fmt.Sprint(r.status)]++
			continue
		}
		lat = append(lat, r.answered-r.sent)
	}
	fmt.Printf("POST: %d sent, %d answered 201; latency %s\n", len(recs), len(lat), dist(lat))
	if len(statuses) > 0 {
		fmt.Printf("POST failures by status (0: no answer): %v\n", statuses)
	}
}

// getJSON reads a JSON answer with the session cookie.
func getJSON(ctx context.Context, hc *http.Client, u, cookie string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", cookie)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
