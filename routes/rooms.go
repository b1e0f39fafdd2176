package routes

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"papo/app"
)

type roomHandlers struct {
	app *app.App
}

// room validates the :room parameter.
func room(c *gin.Context) (string, bool) {
	name := c.Param("room")
	if err := app.CheckRoom(name); err != nil {
		abortWith(c, err)
		return "", false
	}
	return name, true
}

func (h *roomHandlers) post(c *gin.Context) {
	name, ok := room(c)
	if !ok {
		return
	}
	f, err := readFields(c)
	if err != nil {
		abortRequest(c, err)
		return
	}
	text, err := f.str("message")
	if err != nil {
		abortRequest(c, err)
		return
	}
	res, err := h.app.Chat.Post(c.Request.Context(), userOf(c), name, text)
	if err != nil {
		abortWith(c, err)
		return
	}
	if res.Reply != nil {
		body := gin.H{"reply": res.Reply}
		if res.Message != nil {
			body["message"] = res.Message
		}
		c.JSON(http.StatusOK, body)
		return
	}
	if res.MessageJSON != nil {
		// The message as the writer encoded it, once, for every stream.
		body := make([]byte, 0, len(`{"message":}`)+len(res.MessageJSON))
		body = append(append(append(body, `{"message":`...), res.MessageJSON...), '}')
		c.Data(http.StatusCreated, "application/json; charset=utf-8", body)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"message": res.Message})
}

func (h *roomHandlers) typing(c *gin.Context) {
	name, ok := room(c)
	if !ok {
		return
	}
	f, err := readFields(c)
	if err != nil {
		abortRequest(c, err)
		return
	}
	typing, present, err := f.boolean("typing")
	if err != nil {
		abortRequest(c, err)
		return
	}
	if !present {
		badRequest(c, "invalid_typing", "typing is required: true or false.")
		return
	}
	if err := h.app.Chat.SetTyping(c.Request.Context(), userOf(c), name, typing); err != nil {
		abortWith(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *roomHandlers) history(c *gin.Context) {
	name, ok := room(c)
	if !ok {
		return
	}
	before, ok := positiveQuery(c, "before")
	if !ok {
		return
	}
	limit, ok := positiveQuery(c, "limit")
	if !ok {
		return
	}
	msgs, err := h.app.Chat.History(c.Request.Context(), userOf(c), name, before, int(min(limit, app.MaxPageSize)))
	if err != nil {
		abortWith(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"messages": msgs})
}

// positiveQuery reads an optional positive whole number; 0 means absent.
func positiveQuery(c *gin.Context, name string) (int64, bool) {
	raw, present := c.GetQuery(name)
	if !present {
		return 0, true
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n <= 0 {
		if len(raw) > 0 && err != nil && isDigits(raw) {
			n = 1<<63 - 1 // a huge number: still a positive number
			return n, true
		}
		badRequest(c, "invalid_"+name, name+" must be a positive whole number.")
		return 0, false
	}
	return n, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0 && s != "0"
}

// list serves GET /rooms, beyond the contract: the rooms with someone
// online and how many, the busiest first, for the page's room switcher
// (the /rooms command answers the same in words).
func (h *roomHandlers) list(c *gin.Context) {
	rooms, err := h.app.Chat.Rooms(c.Request.Context())
	if err != nil {
		abortWith(c, err)
		return
	}
	if rooms == nil {
		rooms = []app.RoomCount{}
	}
	c.JSON(http.StatusOK, gin.H{"rooms": rooms})
}

func (h *roomHandlers) users(c *gin.Context) {
	name, ok := room(c)
	if !ok {
		return
	}
	users, err := h.app.Chat.Online(c.Request.Context(), name)
	if err != nil {
		abortWith(c, err)
		return
	}
	c.JSON(http.StatusOK, app.UsersEvent{Room: name, Users: users})
}
