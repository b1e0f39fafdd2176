package app

import (
	"encoding/json"
	"strconv"
	"time"

	"papo/models"
)

// UserRef names the user behind a request or a stream.
type UserRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Message is a stored message as clients see it.
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

// MessageView converts a stored row to its client form.
func MessageView(m *models.Message) Message {
	to := ""
	if m.Kind == models.KindPrivate {
		to = m.ToUsername
	}
	return Message{
		ID: m.ID, Room: m.Room, Kind: m.Kind, Username: m.Username,
		To: to, Event: m.Event, Message: m.Body, CreatedAt: m.CreatedAt.UTC(),
	}
}

// Event types carried by an Envelope. The first four are the SSE events of
// the contract; sessionEnd is internal.
const (
	EventMessage    = "message"
	EventUsers      = "users"
	EventTyping     = "typing"
	EventReply      = "reply"
	EventReady      = "ready"
	eventSessionEnd = "session_end"
)

// Envelope is one event on its way from the instance that made it to every
// instance's hub. Data is the event's JSON exactly as clients receive it;
// the other fields only route it.
type Envelope struct {
	Type    string          `json:"t"`
	Origin  string          `json:"o,omitempty"`  // the instance that published it
	Room    string          `json:"r,omitempty"`  // message, users, typing, reply
	ID      int64           `json:"id,omitempty"` // message: its sequence number
	Private bool            `json:"p,omitempty"`  // message: routed by From and To instead of Room
	From    int64           `json:"f,omitempty"`  // message: the sender's id
	To      int64           `json:"to,omitempty"` // message: the private recipient's id
	User    int64           `json:"u,omitempty"`  // reply: the target; typing: the typist (excluded); session_end: the owner
	Session string          `json:"s,omitempty"`  // session_end: the session whose streams close
	Stamp   int64           `json:"st,omitempty"` // users: when the list was read, in presence's order (see Hub.newerUsers)
	Data    json.RawMessage `json:"d,omitempty"`
}

func messageEnvelope(m *models.Message) Envelope {
	data, _ := json.Marshal(MessageView(m)) // a struct of plain fields cannot fail
	env := Envelope{Type: EventMessage, Room: m.Room, ID: m.ID, From: m.UserID, Data: data}
	if m.Kind == models.KindPrivate && m.ToUserID != nil {
		env.Private = true
		env.To = *m.ToUserID
	}
	return env
}

// Frame is one encoded SSE event, shared read-only by every subscriber it
// goes to: an event is encoded once per instance, however many streams
// receive it.
type Frame struct {
	ID    int64  // the message id (the last one's, if several), 0 for events outside the sequence
	Bytes []byte // the whole frame, blank line included
	// Parts locates each message of a frame that carries several (the
	// hub coalesces a busy room's messages), in id order; nil for one.
	Parts []FramePart
}

// FramePart is one message inside a frame that carries several.
type FramePart struct {
	ID  int64
	Off int // where its event starts in Bytes
}

// Since returns what a stream whose cursor is last has yet to send of f,
// and its new cursor: all of an event outside the sequence, nothing of
// messages at or below the cursor (the backlog sent them).
func (f *Frame) Since(last int64) ([]byte, int64) {
	if f.ID == 0 {
		return f.Bytes, last
	}
	if f.ID <= last {
		return nil, last
	}
	for _, p := range f.Parts {
		if p.ID > last {
			return f.Bytes[p.Off:], f.ID
		}
	}
	return f.Bytes, f.ID
}

// joinFrames makes one frame of several message frames, in id order.
func joinFrames(frames []*Frame) *Frame {
	if len(frames) == 1 {
		return frames[0]
	}
	n := 0
	for _, f := range frames {
		n += len(f.Bytes)
	}
	j := &Frame{ID: frames[len(frames)-1].ID, Bytes: make([]byte, 0, n), Parts: make([]FramePart, len(frames))}
	for i, f := range frames {
		j.Parts[i] = FramePart{ID: f.ID, Off: len(j.Bytes)}
		j.Bytes = append(j.Bytes, f.Bytes...)
	}
	return j
}

// EncodeFrame writes an SSE event. data must be one line (JSON from
// encoding/json never holds a raw newline).
func EncodeFrame(id int64, event string, data []byte) *Frame {
	b := make([]byte, 0, len(data)+len(event)+32)
	if id > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	return &Frame{ID: id, Bytes: b}
}

func encodeJSONFrame(event string, v any) *Frame {
	data, err := json.Marshal(v)
	if err != nil {
		panic("papo: encoding " + event + ": " + err.Error()) // only plain structs reach here
	}
	return EncodeFrame(0, event, data)
}

// pingFrame is the heartbeat comment.
var pingFrame = &Frame{Bytes: []byte(": ping\n\n")}
