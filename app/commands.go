package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"papo/models"
)

// Reply is a command's answer.
type Reply struct {
	Command string `json:"command"`
	OK      bool   `json:"ok"`
	Output  string `json:"output"`
}

// Command is one entry of the command table. Adding a command is adding an
// entry; /help is generated from the table.
type Command struct {
	Name    string
	Aliases []string
	Usage   string
	Summary string
	Run     func(ctx context.Context, call *Call) (Reply, error)
}

// Call is one command being run.
type Call struct {
	Chat *Chat
	User UserRef
	Room string
	Name string // as typed, lower-cased
	Args string // everything after the name, leading space removed
	// Posted is set by a command that stored a message.
	Posted *Message
}

func (c *Call) ok(format string, args ...any) (Reply, error) {
	return Reply{Command: c.Name, OK: true, Output: fmt.Sprintf(format, args...)}, nil
}

func (c *Call) fail(format string, args ...any) (Reply, error) {
	return Reply{Command: c.Name, OK: false, Output: fmt.Sprintf(format, args...)}, nil
}

// Commands is the command table.
type Commands struct {
	list   []*Command
	byName map[string]*Command
}

// NewCommands builds papo's command table.
func NewCommands() *Commands {
	c := &Commands{byName: map[string]*Command{}}
	c.add(&Command{Name: "help", Usage: "/help", Summary: "lists the commands", Run: c.help})
	c.add(&Command{Name: "who", Usage: "/who", Summary: "who is online in this room", Run: runWho})
	c.add(&Command{Name: "msg", Aliases: []string{"w"}, Usage: "/msg USER TEXT", Summary: "a private message to USER", Run: runMsg})
	c.add(&Command{Name: "me", Usage: "/me TEXT", Summary: "an action: * you TEXT", Run: runMe})
	c.add(&Command{Name: "stats", Usage: "/stats [USER]", Summary: "a user's message count (yours by default)", Run: runStats})
	c.add(&Command{Name: "rooms", Usage: "/rooms", Summary: "the rooms with someone online, and how many", Run: runRooms})
	return c
}

func (c *Commands) add(cmd *Command) {
	c.list = append(c.list, cmd)
	c.byName[cmd.Name] = cmd
	for _, a := range cmd.Aliases {
		c.byName[a] = cmd
	}
}

// List returns the table, in order.
func (c *Commands) List() []*Command { return c.list }

// ParseCommand splits "/name args": the name runs to the first whitespace
// and is matched without regard to case; args is the rest, with inner
// spacing kept.
func ParseCommand(text string) (name, args string) {
	body := strings.TrimPrefix(text, "/")
	i := strings.IndexFunc(body, unicode.IsSpace)
	if i < 0 {
		return strings.ToLower(body), ""
	}
	return strings.ToLower(body[:i]), strings.TrimLeftFunc(body[i:], unicode.IsSpace)
}

// splitWord takes the first word of s and the rest, inner spacing kept.
func splitWord(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeftFunc(s[i:], unicode.IsSpace)
}

// Run runs one command.
func (c *Commands) Run(ctx context.Context, call *Call) (Reply, error) {
	cmd := c.byName[call.Name]
	if cmd == nil {
		if call.Name == "" {
			return call.fail("Type a command after the slash; /help lists them.")
		}
		return call.fail("Unknown command /%s; /help lists the commands.", call.Name)
	}
	call.Name = cmd.Name
	return cmd.Run(ctx, call)
}

func (c *Commands) help(_ context.Context, call *Call) (Reply, error) {
	var b strings.Builder
	for i, cmd := range c.list {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(cmd.Usage)
		if len(cmd.Aliases) > 0 {
			b.WriteString(" (/" + strings.Join(cmd.Aliases, ", /") + ")")
		}
		b.WriteString(" — " + cmd.Summary)
	}
	return call.ok("%s", b.String())
}

func runWho(ctx context.Context, call *Call) (Reply, error) {
	users, err := call.Chat.presence.Online(ctx, call.Room)
	if err != nil {
		return Reply{}, unavailable(err)
	}
	if len(users) == 0 {
		return call.ok("No one is online in %s.", call.Room)
	}
	return call.ok("%s", strings.Join(users, ", "))
}

func runMsg(ctx context.Context, call *Call) (Reply, error) {
	to, text := splitWord(call.Args)
	if to == "" || text == "" {
		return call.fail("Usage: /msg USER TEXT, for example /msg bia see you at 5.")
	}
	text, err := NormalizeMessage(text)
	if err != nil {
		return call.fail("%s", AsError(err).Message)
	}
	target, err := call.Chat.accounts.store.UserByName(ctx, to)
	if errors.Is(err, models.ErrNotFound) {
		return call.fail("No user named %s; /who lists who is here.", to)
	}
	if err != nil {
		return Reply{}, unavailable(err)
	}
	if target.ID == call.User.ID {
		return call.fail("You cannot send a private message to yourself; name someone else.")
	}
	m := &models.Message{Room: call.Room, Kind: models.KindPrivate, UserID: call.User.ID, Username: call.User.Name,
		ToUserID: &target.ID, ToUsername: target.Username, Body: text}
	if _, err := call.Chat.store(ctx, m); err != nil {
		return Reply{}, err
	}
	v := MessageView(m)
	call.Posted = &v
	return call.ok("To %s: %s", target.Username, text)
}

func runMe(ctx context.Context, call *Call) (Reply, error) {
	if strings.TrimSpace(call.Args) == "" {
		return call.fail("Usage: /me TEXT, for example /me waves.")
	}
	text, err := NormalizeMessage(call.Args)
	if err != nil {
		return call.fail("%s", AsError(err).Message)
	}
	m := &models.Message{Room: call.Room, Kind: models.KindAction, UserID: call.User.ID, Username: call.User.Name, Body: text}
	if _, err := call.Chat.store(ctx, m); err != nil {
		return Reply{}, err
	}
	v := MessageView(m)
	call.Posted = &v
	return call.ok("* %s %s", call.User.Name, text)
}

func runStats(ctx context.Context, call *Call) (Reply, error) {
	name, extra := splitWord(call.Args)
	if extra != "" {
		return call.fail("Usage: /stats [USER], with one name at most.")
	}
	var u *models.User
	var err error
	if name == "" {
		u, err = call.Chat.accounts.store.UserByID(ctx, call.User.ID)
	} else {
		u, err = call.Chat.accounts.store.UserByName(ctx, name)
	}
	if errors.Is(err, models.ErrNotFound) {
		return call.fail("No user named %s; /who lists who is here.", name)
	}
	if err != nil {
		return Reply{}, unavailable(err)
	}
	noun := "messages"
	if u.MessageCount == 1 {
		noun = "message"
	}
	return call.ok("%s has posted %d %s.", u.Username, u.MessageCount, noun)
}

func runRooms(ctx context.Context, call *Call) (Reply, error) {
	rooms, err := call.Chat.Rooms(ctx)
	if err != nil {
		return Reply{}, err
	}
	if len(rooms) == 0 {
		return call.ok("No one is online in any room.")
	}
	parts := make([]string, len(rooms))
	for i, r := range rooms {
		parts[i] = fmt.Sprintf("%s (%d)", r.Room, r.Users)
	}
	return call.ok("%s", strings.Join(parts, ", "))
}
