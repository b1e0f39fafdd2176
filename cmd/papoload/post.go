package main

import (
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
	id       int64
	status   int
	sent     int64
	answered int64
	err      bool
}

// poster sends messages over a keep-alive pool, form-encoded, reading only
// the id out of the answer.
type poster struct {
	cfg  *config
	hc   *http.Client
	pad  string
	bufs sync.Pool
}

func newPoster(cfg *config) *poster {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: cfg.posters + 4,
		MaxConnsPerHost:     cfg.posters + 4,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	p := &poster{cfg: cfg, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	p.bufs.New = func() any { return new(bytes.Buffer) }
	return p
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

// post sends one message to room on u as acct and returns what happened.
func (p *poster) post(ctx context.Context, u *url.URL, room string, acct account, body string) postRec {
	r := postRec{sent: now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String()+"/rooms/"+room+"/messages", strings.NewReader(body))
	if err != nil {
		r.err = true
		return r
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", acct.Cookie)
	resp, err := p.hc.Do(req)
	if err != nil {
		r.answered, r.err = now(), true
		return r
	}
	buf := p.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err = io.Copy(buf, resp.Body)
	resp.Body.Close()
	r.answered = now()
	r.status = resp.StatusCode
	if err != nil || resp.StatusCode != http.StatusCreated {
		r.err = true
	} else if i := bytes.Index(buf.Bytes(), idKey); i >= 0 {
		r.id = parseLeadingInt(buf.Bytes()[i+len(idKey):])
	}
	p.bufs.Put(buf)
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
			for i := range jobs {
				u, room, acct := target(i)
				recs[i] = p.post(ctx, u, room, acct, p.body(i))
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
