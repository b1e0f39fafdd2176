package app

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"papo/models"
)

// HistoryStore is the part of the store that reading history needs.
// VisibleAfter and VisibleBefore each read one moment of the history: a
// page never shows a message and misses an older one committed before it.
type HistoryStore interface {
	LastMessageID(ctx context.Context) (int64, error)
	VisibleAfter(ctx context.Context, v models.Visibility, after int64, limit int) ([]models.Message, error)
	VisibleBefore(ctx context.Context, v models.Visibility, before int64, limit int) ([]models.Message, error)
	RoomNewest(ctx context.Context, room string, upTo int64, limit int) ([]models.Message, error)
	PrivateNewest(ctx context.Context, userID int64, upTo int64, limit int) ([]models.Message, error)
}

// Backlog and paging bounds.
const (
	BacklogSize      = 50
	DefaultPageSize  = 50
	MaxPageSize      = 200
	ReplayPageSize   = 500 // a resume that missed more reads the database this many at a time
	maxCursorDigits  = 19
	resumeNew        = "new"
	resumeOK         = "ok"
	resumeInvalid    = "invalid"
	commandPrefix    = "/"
	escapedSlashText = "//"
)

// Chat is the service behind the room routes: posting, commands, typing,
// history and streams.
type Chat struct {
	history  HistoryStore
	writer   *Writer
	hub      *Hub
	presence PresenceManager
	typing   *Typing
	commands *Commands
	accounts *Accounts
	messages RateLimiter
	typists  RateLimiter
	log      *slog.Logger

	usersFrames usersFrames

	replies publishOutage // logs failed reply publishes once per outage
}

// usersFrames keeps each room's latest users event, encoded: every stream
// that opens in a room sends the same list until someone joins or leaves.
type usersFrames struct {
	mu    sync.Mutex
	rooms map[string]usersFrame
}

type usersFrame struct {
	users []string
	frame *Frame
}

// usersFramesMax bounds the rooms kept; past it, the cache starts over.
const usersFramesMax = 10_000

// frame returns the users event of room listing users.
func (u *usersFrames) frame(room string, users []string) *Frame {
	u.mu.Lock()
	kept, ok := u.rooms[room]
	u.mu.Unlock()
	if ok && slices.Equal(kept.users, users) {
		return kept.frame
	}
	f := encodeJSONFrame(EventUsers, UsersEvent{Room: room, Users: users})
	u.mu.Lock()
	if u.rooms == nil || len(u.rooms) >= usersFramesMax {
		u.rooms = map[string]usersFrame{}
	}
	u.rooms[room] = usersFrame{users: users, frame: f}
	u.mu.Unlock()
	return f
}

// PostResult is what a POST to a room answers: a stored message, or a
// command's reply (with the message it posted, if any).
type PostResult struct {
	Message *Message
	Reply   *Reply
	// MessageJSON is Message encoded, byte for byte as streams receive it;
	// set when a plain message was stored.
	MessageJSON []byte
}

// Post validates text and stores it in room, or runs it as a command.
func (c *Chat) Post(ctx context.Context, user UserRef, room, text string) (PostResult, error) {
	if err := CheckRoom(room); err != nil {
		return PostResult{}, err
	}
	if !utf8.ValidString(text) {
		return PostResult{}, invalid("invalid_message", "message must be valid UTF-8.")
	}
	trimmed := strings.TrimSpace(text)
	// A command is judged by its own rules: its TEXT, if it has one, is
	// checked by the command, which answers ok:false rather than 400.
	isCommand := strings.HasPrefix(trimmed, commandPrefix) && !strings.HasPrefix(trimmed, escapedSlashText)
	if !isCommand {
		// "//text" posts "/text", so a message can start with a slash.
		// The rules, length included, apply to what is stored.
		if strings.HasPrefix(trimmed, escapedSlashText) {
			text = strings.TrimPrefix(trimmed, commandPrefix)
		}
		var err error
		if text, err = NormalizeMessage(text); err != nil {
			return PostResult{}, err
		}
	}
	ok, after, err := c.messages.Allow(ctx, "messages:"+strconv.FormatInt(user.ID, 10))
	if err != nil {
		return PostResult{}, unavailable(err)
	}
	if !ok {
		return PostResult{}, rateLimited("too_many_messages", "You are sending messages too fast; wait a moment.", after)
	}
	if isCommand {
		name, args := ParseCommand(trimmed)
		call := &Call{Chat: c, User: user, Room: room, Name: name, Args: args}
		reply, err := c.commands.Run(ctx, call)
		if err != nil {
			return PostResult{}, err
		}
		c.publishReply(ctx, user, room, reply)
		return PostResult{Reply: &reply, Message: call.Posted}, nil
	}
	m := &models.Message{Room: room, Kind: models.KindUser, UserID: user.ID, Username: user.Name, Body: text}
	data, err := c.store(ctx, m)
	if err != nil {
		return PostResult{}, err
	}
	v := MessageView(m)
	return PostResult{Message: &v, MessageJSON: data}, nil
}

// store commits m and returns its JSON as streams receive it.
func (c *Chat) store(ctx context.Context, m *models.Message) ([]byte, error) {
	m.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	data, err := c.writer.Store(ctx, m)
	if err != nil {
		return nil, err
	}
	// Posting ends typing, as people expect.
	c.typing.Set(ctx, m.Room, UserRef{ID: m.UserID, Name: m.Username}, false)
	return data, nil
}

func (c *Chat) publishReply(ctx context.Context, user UserRef, room string, reply Reply) {
	env := Envelope{Type: EventReply, Room: room, User: user.ID}
	c.replies.note(c.log, "chat: replies", c.hub.PublishEvent(ctx, env, reply))
}

// SetTyping records that user started or stopped typing.
func (c *Chat) SetTyping(ctx context.Context, user UserRef, room string, typing bool) error {
	if err := CheckRoom(room); err != nil {
		return err
	}
	ok, after, err := c.typists.Allow(ctx, "typing:"+strconv.FormatInt(user.ID, 10))
	if err != nil {
		return unavailable(err)
	}
	if !ok {
		return rateLimited("too_many_typing_updates", "Typing updates are coming too fast; one every few seconds is enough.", after)
	}
	c.typing.Set(ctx, room, user, typing)
	return nil
}

// History returns a page of the messages user may see in room: the limit
// newest with id below before (0: the newest), oldest first.
func (c *Chat) History(ctx context.Context, user UserRef, room string, before int64, limit int) ([]Message, error) {
	if err := CheckRoom(room); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := c.history.VisibleBefore(ctx, models.Visibility{Room: room, UserID: user.ID}, before, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	return views(rows), nil
}

// Online lists the users online in room.
// Rooms lists the rooms with someone online, the busiest first.
func (c *Chat) Rooms(ctx context.Context) ([]RoomCount, error) {
	rooms, err := c.presence.Rooms(ctx)
	if err != nil {
		return nil, unavailable(err)
	}
	return rooms, nil
}

// Online lists who is online in room, sorted.
func (c *Chat) Online(ctx context.Context, room string) ([]string, error) {
	if err := CheckRoom(room); err != nil {
		return nil, err
	}
	users, err := c.presence.Online(ctx, room)
	if err != nil {
		return nil, unavailable(err)
	}
	return users, nil
}

// Commands returns the command table.
func (c *Chat) Commands() []*Command { return c.commands.List() }

func views(rows []models.Message) []Message {
	out := make([]Message, len(rows))
	for i := range rows {
		out[i] = MessageView(&rows[i])
	}
	return out
}

// ReadyEvent is the data of the ready event. Resume says how the cursor
// was taken: "new" (none given: the newest messages were replayed), "ok"
// (everything after it was replayed, however much that was) or "invalid"
// (malformed, or from the future: treated as none). Replayed counts the
// messages sent before ready.
type ReadyEvent struct {
	Room     string `json:"room"`
	Resume   string `json:"resume"`
	Replayed int    `json:"replayed"`
}

// Stream is an open event stream: what to send first, then the live queue.
//
// Its opening is Initial, then whatever Next returns until it returns nil;
// after that the stream is live and its frames come from Sub. The opening
// holds the backlog, the users event and ready, in order, and, after a long
// replay, the live events that came meanwhile. The caller writes each
// message frame of it and of the live queue through Frame.Since, starting
// from LastID: that skips live frames that the backlog already sent.
type Stream struct {
	Sub *Subscriber
	// Initial is the start of the opening: all of it, unless the client
	// missed more than ReplayPageSize messages that the hub's recent
	// ring does not hold; then the first page of them.
	Initial []*Frame
	// LastID is the cursor before the opening: the client's Last-Event-ID
	// on a resume, else 0. Message frames at or below it are not sent.
	LastID int64

	chat   *Chat
	replay *replay // nil once Next has nothing more to give
}

// replay is the rest of a long resume, read from the database a page at
// a time while the stream's live queue collects.
type replay struct {
	vis   models.Visibility
	after int64 // the last id read
	// until is the last id committed when the stream had subscribed:
	// every message above it was committed later, so reaches the live
	// queue, and the database need not be read past it. Everything
	// committed before the client connected is replayed before ready.
	until    int64
	done     bool // the backlog is complete; users, ready and held follow
	users    *Frame
	replayed int
	// held are the frames taken from the live queue while the backlog is
	// being sent, so that a long replay never fills the queue (the hub
	// drops a stream whose queue is full). They go out after ready.
	held []*Frame
}

// replayHeldMax bounds the live frames a replay holds back. A stream
// that gets more while its backlog is still going out is too slow to keep:
// it is dropped, as the hub drops a stream whose queue fills, and resumes
// from its cursor.
const replayHeldMax = 8192

// ErrStreamEnded is Next's answer when the subscription ended before the
// opening was complete (dropped for holding too much, logged out, hung
// up, shutdown). The caller must end the stream without sending anything
// more: frames still queued may be newer than held ones that were let go,
// and sending them would move the client's cursor past messages it never
// got. It resumes from what it has.
var ErrStreamEnded = errors.New("the stream ended during its opening")

// Next returns the next part of the stream's opening after Initial: a
// page of the backlog, read from the database; then the users and ready
// events and the live events that came while the backlog went out. It
// returns nil once the opening is complete. ErrStreamEnded says the
// subscription has ended; any other error is the database's. Either way
// the caller ends the stream, and the client resumes from its cursor.
//
// Only the caller reads Sub's queue until Next returns nil.
func (s *Stream) Next(ctx context.Context) ([]*Frame, error) {
	r := s.replay
	if r == nil {
		return nil, nil
	}
	if !s.hold() {
		s.replay = nil
		return nil, ErrStreamEnded
	}
	if !r.done {
		rows, err := s.chat.history.VisibleAfter(ctx, r.vis, r.after, ReplayPageSize)
		if err != nil {
			s.replay = nil
			return nil, unavailable(err)
		}
		r.done = len(rows) < ReplayPageSize
		if len(rows) > 0 {
			r.after = rows[len(rows)-1].ID
			r.done = r.done || r.after >= r.until
			r.replayed += len(rows)
			frames := make([]*Frame, len(rows))
			for i := range rows {
				frames[i] = messageFrame(&rows[i])
			}
			s.dropHeld()
			return frames, nil
		}
	}
	// The backlog is complete. Whatever is queued now goes out after
	// ready, before the rest of the queue.
	if !s.hold() {
		s.replay = nil
		return nil, ErrStreamEnded
	}
	s.dropHeld()
	out := make([]*Frame, 0, len(r.held)+2)
	out = append(out, r.users, encodeJSONFrame(EventReady, ReadyEvent{Room: s.Sub.Room, Resume: resumeOK, Replayed: r.replayed}))
	out = append(out, r.held...)
	s.replay = nil
	return out, nil
}

// hold moves what the live queue holds to the replay's held frames. It
// reports false when the subscription has ended, or has just been dropped
// for holding too much.
func (s *Stream) hold() bool {
	r := s.replay
	var scratch [16]*Frame
	for _, f := range s.Sub.Take(scratch[:0]) {
		if f == pingFrame || (f.ID != 0 && f.ID <= r.after) {
			continue // a heartbeat (the replay is traffic), or sent
		}
		r.held = append(r.held, f)
		if len(r.held) > replayHeldMax {
			s.chat.hub.dropAll([]*Subscriber{s.Sub})
			r.held = nil
			return false
		}
	}
	return !s.Sub.Ended()
}

// dropHeld forgets held message frames that the replay has now read from
// the database.
func (s *Stream) dropHeld() {
	r := s.replay
	r.held = slices.DeleteFunc(r.held, func(f *Frame) bool { return f.ID != 0 && f.ID <= r.after })
}

// Close ends the stream's subscription and presence. The caller must call
// it exactly once.
func (s *Stream) Close(ctx context.Context) {
	s.chat.hub.Unsubscribe(s.Sub)
	s.chat.presence.Disconnect(ctx, s.Sub.Room, s.Sub.User)
}

// ParseCursor reads a Last-Event-ID: a positive decimal id.
func ParseCursor(raw string) (id int64, ok bool) {
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > maxCursorDigits {
		return 0, false
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < 0 || raw[0] == '+' {
		return 0, false
	}
	return n, true
}

// OpenStream subscribes user to room and prepares the backlog. The order
// matters: the subscriber is registered first, so every message committed
// from then on is queued to it; the backlog read after that covers all
// that came before. The two may overlap; the stream's cursor dedupes the
// seam (see Stream).
//
// A resume replays everything the client missed. The hub's recent ring
// answers most, from memory; the database answers the rest, one page here
// and the others from Stream.Next, so that memory stays bounded however
// long the client was away.
func (c *Chat) OpenStream(ctx context.Context, user UserRef, session, room, cursor string) (*Stream, error) {
	if err := CheckRoom(room); err != nil {
		return nil, err
	}
	sub, err := c.hub.Subscribe(room, user, session)
	if err != nil {
		return nil, err
	}
	st := &Stream{Sub: sub, chat: c}
	users, err := c.connect(ctx, room, user)
	if err != nil {
		c.hub.Unsubscribe(sub)
		return nil, unavailable(err)
	}
	vis := models.Visibility{Room: room, UserID: user.ID}
	// The hub's recent messages answer most backlogs, with frames already
	// encoded; the database answers the rest.
	frames, lastID, resume, ok := c.hub.RecentBacklog(vis, strings.TrimSpace(cursor), BacklogSize)
	var until int64 // > 0: the replay goes on, up to this id
	if !ok {
		frames, lastID, resume, until, err = c.backlog(ctx, vis, cursor)
	}
	if err == nil {
		usersFrame := c.usersFrames.frame(room, users)
		if until > 0 {
			st.Initial = frames
			st.replay = &replay{vis: vis, after: lastID, until: until, users: usersFrame, replayed: len(frames)}
		} else {
			st.Initial = append(frames, usersFrame,
				encodeJSONFrame(EventReady, ReadyEvent{Room: room, Resume: resume, Replayed: len(frames)}))
		}
	}
	if err != nil {
		st.Close(ctx)
		return nil, unavailable(err)
	}
	if cursorID, ok := ParseCursor(cursor); ok && resume == resumeOK {
		st.LastID = cursorID
	}
	return st, nil
}

// onlineConnector is a presence that reads who is online in a room as it
// counts a stream there, in one go (RedisPresence: one round trip to
// Redis, not two). On error the stream is not counted.
type onlineConnector interface {
	ConnectOnline(ctx context.Context, room string, user UserRef) ([]string, error)
}

// connect counts a stream of user in room and returns who is online there
// then, user included. On error the stream is not counted.
func (c *Chat) connect(ctx context.Context, room string, user UserRef) ([]string, error) {
	if oc, ok := c.presence.(onlineConnector); ok {
		return oc.ConnectOnline(ctx, room, user)
	}
	if err := c.presence.Connect(ctx, room, user); err != nil {
		return nil, err
	}
	users, err := c.presence.Online(ctx, room)
	if err != nil {
		c.presence.Disconnect(ctx, room, user)
		return nil, err
	}
	return users, nil
}

func messageFrame(m *models.Message) *Frame {
	env := messageEnvelope(m)
	return EncodeFrame(env.ID, EventMessage, env.Data)
}

// backlog is a stream's backlog when the ring cannot answer it. The newest
// BacklogSize messages, and a resume that missed fewer than the tails
// hold, come from the tails (see backlogTails). A longer resume reads the
// database: its first page here, and until set when that page is not all
// of it: the replay goes on (Stream.Next) up to until, the last id
// committed when the stream had subscribed; every message after it
// reaches the stream's live queue.
func (c *Chat) backlog(ctx context.Context, v models.Visibility, cursor string) (frames []*Frame, last int64, resume string, until int64, err error) {
	id, valid := ParseCursor(cursor)
	if strings.TrimSpace(cursor) == "" {
		resume = resumeNew
	} else if !valid {
		resume = resumeInvalid
	}
	s, err := c.tailsFor(ctx, v)
	if err != nil {
		return nil, 0, "", 0, err
	}
	if !valid {
		frames, last = s.newest(BacklogSize)
		return frames, last, resume, 0, nil
	}
	if id <= s.asOf {
		if frames, last, ok := s.after(id, BacklogSize); ok {
			return frames, last, resumeOK, 0, nil
		}
	}
	committed, err := c.history.LastMessageID(ctx)
	if err != nil {
		return nil, 0, "", 0, err
	}
	if id > committed {
		// A cursor from the future is from another database.
		frames, last = s.newest(BacklogSize)
		return frames, last, resumeInvalid, 0, nil
	}
	rows, err := c.history.VisibleAfter(ctx, v, id, ReplayPageSize)
	if err != nil {
		return nil, 0, "", 0, err
	}
	if len(rows) == ReplayPageSize && rows[len(rows)-1].ID < committed {
		until = committed
	}
	frames = make([]*Frame, len(rows), len(rows)+2)
	for i := range rows {
		frames[i] = messageFrame(&rows[i])
		last = rows[i].ID
	}
	return frames, last, resumeOK, until, nil
}
