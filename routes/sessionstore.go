package routes

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"maps"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"

	ginsessions "github.com/gin-contrib/sessions"
	"github.com/gorilla/securecookie"
	gsessions "github.com/gorilla/sessions"

	"papo/app"
)

const (
	sessionCookie = "papo_session"
	sessionMaxAge = 30 * 24 * 60 * 60 // 30 days
	keyUserID     = "uid"
	keyUsername   = "name"
)

// dbSessionStore is a gin-contrib/sessions store on papo's sessions table.
// The cookie carries only the session id, signed with the secret; the
// values live in the database, so every instance sees the same session and
// deleting its row ends it everywhere.
type dbSessionStore struct {
	sessions *app.Sessions
	codecs   []securecookie.Codec
	options  gsessions.Options
	isTLS    func(*http.Request) bool

	// The cookie's HMAC check is most of what loading a cached session
	// costs, so its answer is kept: cookie value -> session id (the
	// signature never stops being valid; the session's expiry is the
	// database's, checked by app.Sessions, which also keeps the decoded
	// values).
	mu  sync.Mutex
	ids map[string]string
}

// cookieCacheMax bounds the cookie cache; past it, it is emptied.
const cookieCacheMax = 100_000

var _ ginsessions.Store = (*dbSessionStore)(nil)

func newDBSessionStore(sessions *app.Sessions, secret []byte, isTLS func(*http.Request) bool) *dbSessionStore {
	codec := securecookie.New(secret, nil)
	codec.MaxAge(sessionMaxAge)
	return &dbSessionStore{
		sessions: sessions,
		codecs:   []securecookie.Codec{codec},
		options: gsessions.Options{
			Path: "/", MaxAge: sessionMaxAge, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		},
		isTLS: isTLS,
		ids:   map[string]string{},
	}
}

// cookieID decodes a cookie value to its session id, remembering the answer.
func (s *dbSessionStore) cookieID(name, value string) (string, bool) {
	s.mu.Lock()
	id, ok := s.ids[value]
	s.mu.Unlock()
	if ok {
		return id, true
	}
	if err := securecookie.DecodeMulti(name, value, &id, s.codecs...); err != nil {
		return "", false
	}
	s.mu.Lock()
	if len(s.ids) >= cookieCacheMax {
		clear(s.ids)
	}
	s.ids[value] = id
	s.mu.Unlock()
	return id, true
}

// cookieValue is r.Cookie(name).Value, the first valid cookie of that
// name, found without parsing every cookie into a Cookie of its own (on a
// connect storm, net/http's parse was 6 % of the server's CPU).
func cookieValue(h http.Header, name string) (string, bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			k, v, _ := strings.Cut(part, "=")
			if textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// validCookieValue is net/http's test of a cookie value's bytes.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// decodeValues reads a session's stored data, gob-encoded values.
func decodeValues(data []byte) (any, error) {
	values := map[any]any{}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&values); err != nil {
		return nil, err
	}
	return values, nil
}

func (s *dbSessionStore) Options(o ginsessions.Options) { s.options = *o.ToGorillaOptions() }

func (s *dbSessionStore) Get(r *http.Request, name string) (*gsessions.Session, error) {
	return gsessions.GetRegistry(r).Get(s, name)
}

// New loads the session named by the request's cookie, or starts an empty
// one. A storage failure is returned (and cached for the request by the
// registry), so the auth middleware can answer 503 rather than 401.
func (s *dbSessionStore) New(r *http.Request, name string) (*gsessions.Session, error) {
	sess := gsessions.NewSession(s, name)
	opts := s.options
	sess.Options = &opts
	sess.IsNew = true
	value, ok := cookieValue(r.Header, name)
	if !ok {
		return sess, nil
	}
	id, ok := s.cookieID(name, value)
	if !ok {
		return sess, nil // forged, or signed with another secret: a fresh session
	}
	values, _, err := s.sessions.Load(r.Context(), id, decodeValues)
	if errors.Is(err, app.ErrNoSession) {
		return sess, nil // gone, or unreadable: a fresh session
	}
	if err != nil {
		return sess, err
	}
	// A copy: the request may change its session, the cached values not.
	sess.Values = maps.Clone(values.(map[any]any))
	sess.ID = id
	sess.IsNew = false
	return sess, nil
}

// Save writes the session row and the cookie; MaxAge < 0 deletes both.
func (s *dbSessionStore) Save(r *http.Request, w http.ResponseWriter, sess *gsessions.Session) error {
	opts := *sess.Options
	opts.Secure = s.isTLS(r)
	if opts.MaxAge < 0 {
		if sess.ID != "" {
			uid, _ := sess.Values[keyUserID].(int64)
			if err := s.sessions.Delete(r.Context(), sess.ID, uid); err != nil {
				return err
			}
		}
		http.SetCookie(w, gsessions.NewCookie(sess.Name(), "", &opts))
		return nil
	}
	if sess.ID == "" {
		sess.ID = app.NewSessionID()
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(sess.Values); err != nil {
		return err
	}
	uid, _ := sess.Values[keyUserID].(int64)
	expires := time.Now().Add(time.Duration(opts.MaxAge) * time.Second)
	if err := s.sessions.Save(r.Context(), sess.ID, uid, buf.Bytes(), expires); err != nil {
		return err
	}
	encoded, err := securecookie.EncodeMulti(sess.Name(), sess.ID, s.codecs...)
	if err != nil {
		return err
	}
	http.SetCookie(w, gsessions.NewCookie(sess.Name(), encoded, &opts))
	return nil
}

// rotate gives the session a new id, deleting the old row, so an id known
// before login is worthless after it (no session fixation).
func (s *dbSessionStore) rotate(ctx context.Context, sess *gsessions.Session) error {
	if sess.ID != "" {
		uid, _ := sess.Values[keyUserID].(int64)
		if err := s.sessions.Delete(ctx, sess.ID, uid); err != nil {
			return err
		}
	}
	sess.ID = ""
	sess.IsNew = true
	return nil
}

// gorillaSession reaches the gorilla session under gin-contrib's wrapper.
func gorillaSession(s ginsessions.Session) *gsessions.Session {
	return s.(interface{ Session() *gsessions.Session }).Session()
}
