package routes

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"maps"
	"net/http"
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

	// Decoding is most of what loading a cached session costs (the cookie's
	// HMAC and gob, the values' gob), so both results are kept: cookie
	// value -> session id (the signature never stops being valid; the
	// session's expiry is the database's, checked by app.Sessions), and
	// session id -> values decoded from which data. app.Sessions hands out
	// the same data slice while it caches a session, so a changed session
	// is decoded afresh.
	mu      sync.Mutex
	ids     map[string]string
	decoded map[string]decodedSession
}

type decodedSession struct {
	data   *byte // identity of the data slice the values came from
	values map[any]any
}

// decodeCacheMax bounds each decode cache; past it, it is emptied.
const decodeCacheMax = 100_000

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
		isTLS:   isTLS,
		ids:     map[string]string{},
		decoded: map[string]decodedSession{},
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
	if len(s.ids) >= decodeCacheMax {
		clear(s.ids)
	}
	s.ids[value] = id
	s.mu.Unlock()
	return id, true
}

// values decodes a session's data into a map the caller owns.
func (s *dbSessionStore) values(id string, data []byte) (map[any]any, error) {
	var key *byte
	if len(data) > 0 {
		key = &data[0]
	}
	s.mu.Lock()
	d, ok := s.decoded[id]
	s.mu.Unlock()
	if ok && key != nil && d.data == key {
		return maps.Clone(d.values), nil
	}
	values := map[any]any{}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&values); err != nil {
		return nil, err
	}
	if key != nil {
		s.mu.Lock()
		if len(s.decoded) >= decodeCacheMax {
			clear(s.decoded)
		}
		s.decoded[id] = decodedSession{data: key, values: maps.Clone(values)}
		s.mu.Unlock()
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
	cookie, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	id, ok := s.cookieID(name, cookie.Value)
	if !ok {
		return sess, nil // forged, or signed with another secret: a fresh session
	}
	data, _, err := s.sessions.Load(r.Context(), id)
	if errors.Is(err, app.ErrNoSession) {
		return sess, nil
	}
	if err != nil {
		return sess, err
	}
	values, err := s.values(id, data)
	if err != nil {
		return sess, nil // unreadable data: start afresh
	}
	sess.Values = values
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
