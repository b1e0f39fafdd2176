package app

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"papo/models"
)

// AccountStore is the part of the store that accounts need.
type AccountStore interface {
	CreateUser(ctx context.Context, u *models.User) error
	UserByName(ctx context.Context, username string) (*models.User, error)
	UserByID(ctx context.Context, id int64) (*models.User, error)
	DeleteUser(ctx context.Context, id int64) error
}

// User is an account as clients see it.
type User struct {
	ID           int64     `json:"id"`
	Username     string    `json:"username"`
	MessageCount int64     `json:"message_count"`
	CreatedAt    time.Time `json:"created_at"`
}

// UserView converts a stored user to its client form.
func UserView(u *models.User) User {
	return User{ID: u.ID, Username: u.Username, MessageCount: u.MessageCount, CreatedAt: u.CreatedAt.UTC()}
}

// Accounts registers users and checks their passwords.
type Accounts struct {
	store         AccountStore
	cost          int
	dummyHash     []byte
	loginFailures FailureCounter // per username
	addrFailures  FailureCounter // per client address
	registrations RateLimiter    // per client address
}

// NewAccounts builds the service. cost is the bcrypt cost.
func NewAccounts(store AccountStore, cost int, loginFailures, addrFailures FailureCounter, registrations RateLimiter) (*Accounts, error) {
	a := &Accounts{store: store, cost: cost, loginFailures: loginFailures, addrFailures: addrFailures, registrations: registrations}
	// Logins of unknown users check against this hash, so they take as
	// long as a wrong password and do not reveal which names exist.
	dummy, err := bcrypt.GenerateFromPassword(prehash("papo-dummy-password"), cost)
	if err != nil {
		return nil, err
	}
	a.dummyHash = dummy
	return a, nil
}

// prehash lets passwords of up to 256 characters (up to 1 KiB of UTF-8)
// through bcrypt, which reads at most 72 bytes: every byte of the password
// counts.
func prehash(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum[:])
	return out
}

// Register creates an account. addr is the client's address, for the
// registration limit.
func (a *Accounts) Register(ctx context.Context, username, password, addr string) (*models.User, error) {
	if err := checkUsername(username); err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	ok, after, err := a.registrations.Allow(ctx, "register:"+addr)
	if err != nil {
		return nil, unavailable(err)
	}
	if !ok {
		return nil, rateLimited("too_many_registrations", "Too many registrations from your address; try again later.", after)
	}
	hash, err := bcrypt.GenerateFromPassword(prehash(password), a.cost)
	if err != nil {
		return nil, err
	}
	u := &models.User{Username: username, PasswordHash: string(hash), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if err := a.store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, models.ErrUsernameTaken) {
			return nil, &Error{Kind: KindConflict, Code: "username_taken", Message: "That username is taken; choose another."}
		}
		return nil, unavailable(err)
	}
	return u, nil
}

// Login checks a password. Failures are counted per username and per
// address; past the limit, Login refuses without checking.
func (a *Accounts) Login(ctx context.Context, username, password, addr string) (*models.User, error) {
	if username == "" {
		return nil, invalid("invalid_username", "username is required.")
	}
	if password == "" {
		return nil, invalid("invalid_password", "password is required.")
	}
	userKey := "login:" + models.UsernameKey(username)
	addrKey := "login-addr:" + addr
	for _, check := range []struct {
		c   FailureCounter
		key string
	}{{a.loginFailures, userKey}, {a.addrFailures, addrKey}} {
		blocked, after, err := check.c.Blocked(ctx, check.key)
		if err != nil {
			return nil, unavailable(err)
		}
		if blocked {
			return nil, rateLimited("too_many_login_failures", "Too many failed logins; try again later.", after)
		}
	}
	u, err := a.store.UserByName(ctx, username)
	switch {
	case errors.Is(err, models.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(a.dummyHash, prehash(password))
	case err != nil:
		return nil, unavailable(err)
	case bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), prehash(password)) == nil:
		_ = a.loginFailures.Reset(ctx, userKey)
		return u, nil
	}
	if err := a.loginFailures.Fail(ctx, userKey); err != nil {
		return nil, unavailable(err)
	}
	if err := a.addrFailures.Fail(ctx, addrKey); err != nil {
		return nil, unavailable(err)
	}
	return nil, &Error{Kind: KindUnauthorized, Code: "invalid_credentials", Message: "Wrong username or password."}
}

// Unregister deletes an account that Register has just created, when
// what had to follow it (its session) failed: the client was told nothing
// was stored, and a retry must not find the name taken.
func (a *Accounts) Unregister(ctx context.Context, id int64) error {
	if err := a.store.DeleteUser(ctx, id); err != nil {
		return fmt.Errorf("unregistering user %d: %w", id, err)
	}
	return nil
}

// User returns the account behind a session.
func (a *Accounts) User(ctx context.Context, id int64) (*models.User, error) {
	u, err := a.store.UserByID(ctx, id)
	if errors.Is(err, models.ErrNotFound) {
		return nil, ErrUnauthorized
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return u, nil
}
