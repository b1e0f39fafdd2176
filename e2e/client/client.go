package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"time"
)

// User is the contract's User.
type User struct {
	ID           int64     `json:"id"`
	Username     string    `json:"username"`
	MessageCount int64     `json:"message_count"`
	CreatedAt    time.Time `json:"created_at"`
}

// Message is the contract's Message.
type Message struct {
	ID        int64     `json:"id"`
	Room      string    `json:"room"`
	Kind      string    `json:"kind"`
	Username  string    `json:"username"`
	To        string    `json:"to,omitempty"`
	Event     string    `json:"event,omitempty"`
	Message   string    `json:"message"`
	CreatedAt time.Time `json:"created_at"`
}

// Reply is the contract's Reply.
type Reply struct {
	Command string `json:"command"`
	OK      bool   `json:"ok"`
	Output  string `json:"output"`
}

// APIError is an answer other than the one hoped for.
type APIError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Client is one user agent: a cookie jar and a base URL.
type Client struct {
	Base string
	HTTP *http.Client
}

// New makes a client for the server at base (http://host:port). local,
// when set, is the source address for its connections (the load tool
// spreads connections over 127.0.0.x to avoid running out of ports).
func New(base string, local net.IP) *Client {
	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if local != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: local}
	}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Client{Base: base, HTTP: &http.Client{Jar: jar, Transport: tr}}
}

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to ignore). A status outside 2xx is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return resp.StatusCode, &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, RetryAfter: resp.Header.Get("Retry-After")}
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decoding %s %s: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// Register creates an account and logs in.
func (c *Client) Register(ctx context.Context, username, password string) (User, error) {
	var out struct{ User User }
	_, err := c.Do(ctx, http.MethodPost, "/register", map[string]string{"username": username, "password": password}, &out)
	return out.User, err
}

// Login logs in.
func (c *Client) Login(ctx context.Context, username, password string) (User, error) {
	var out struct{ User User }
	_, err := c.Do(ctx, http.MethodPost, "/login", map[string]string{"username": username, "password": password}, &out)
	return out.User, err
}

// Logout ends the session.
func (c *Client) Logout(ctx context.Context) error {
	_, err := c.Do(ctx, http.MethodPost, "/logout", nil, nil)
	return err
}

// Me returns the logged-in user.
func (c *Client) Me(ctx context.Context) (User, error) {
	var out struct{ User User }
	_, err := c.Do(ctx, http.MethodGet, "/me", nil, &out)
	return out.User, err
}

// PostResult is the answer to a post: a message, a reply, or both.
type PostResult struct {
	Status  int
	Message *Message `json:"message"`
	Reply   *Reply   `json:"reply"`
}

// Post sends text to room.
func (c *Client) Post(ctx context.Context, room, text string) (PostResult, error) {
	var out PostResult
	status, err := c.Do(ctx, http.MethodPost, "/rooms/"+room+"/messages", map[string]string{"message": text}, &out)
	out.Status = status
	return out, err
}

// Typing says the user started or stopped typing.
func (c *Client) Typing(ctx context.Context, room string, typing bool) error {
	_, err := c.Do(ctx, http.MethodPost, "/rooms/"+room+"/typing", map[string]bool{"typing": typing}, nil)
	return err
}

// History reads a page of room's history.
func (c *Client) History(ctx context.Context, room string, before int64, limit int) ([]Message, error) {
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct{ Messages []Message }
	_, err := c.Do(ctx, http.MethodGet, "/rooms/"+room+"/messages?"+q.Encode(), nil, &out)
	return out.Messages, err
}

// RoomCount is a room and how many are online in it (GET /rooms, beyond
// the contract).
type RoomCount struct {
	Room  string `json:"room"`
	Users int    `json:"users"`
}

// Rooms lists the rooms with someone online, the busiest first.
func (c *Client) Rooms(ctx context.Context) ([]RoomCount, error) {
	var out struct {
		Rooms []RoomCount `json:"rooms"`
	}
	_, err := c.Do(ctx, http.MethodGet, "/rooms", nil, &out)
	return out.Rooms, err
}

// Users lists who is online in room.
func (c *Client) Users(ctx context.Context, room string) ([]string, error) {
	var out struct{ Users []string }
	_, err := c.Do(ctx, http.MethodGet, "/rooms/"+room+"/users", nil, &out)
	return out.Users, err
}

// Stream is an open event stream.
type Stream struct {
	*Parser
	Resp *http.Response
}

// Close ends the stream.
func (s *Stream) Close() error { return s.Resp.Body.Close() }

// Open opens room's event stream, resuming after lastEventID when it is
// not empty (sent as the Last-Event-ID header, as EventSource does).
func (c *Client) Open(ctx context.Context, room, lastEventID string) (*Stream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/rooms/"+room+"/events", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return nil, &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message, RetryAfter: resp.Header.Get("Retry-After")}
	}
	p := NewParser(resp.Body)
	p.lastID = lastEventID
	return &Stream{Parser: p, Resp: resp}, nil
}

// DecodeMessage reads a message event's data.
func DecodeMessage(ev Event) (Message, error) {
	var m Message
	err := json.Unmarshal([]byte(ev.Data), &m)
	return m, err
}

// Backlog reads the stream up to its ready event and returns the messages
// before it: the backlog, or what a resume replayed.
func (s *Stream) Backlog() ([]Message, error) {
	var msgs []Message
	for {
		ev, err := s.Next()
		if err != nil {
			return msgs, err
		}
		switch ev.Type {
		case "ready":
			return msgs, nil
		case "message":
			m, err := DecodeMessage(ev)
			if err != nil {
				return msgs, err
			}
			msgs = append(msgs, m)
		}
	}
}

// AllHistory pages back through everything the user may see in room and
// returns it oldest first.
func (c *Client) AllHistory(ctx context.Context, room string) ([]Message, error) {
	var all []Message
	var before int64
	for {
		page, err := c.History(ctx, room, before, 200)
		if err != nil || len(page) == 0 {
			return all, err
		}
		all = append(page, all...)
		before = page[0].ID
	}
}
