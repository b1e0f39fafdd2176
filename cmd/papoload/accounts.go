package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"papo/e2e/client"
)

// sessionCookie is the contract's session cookie name.
const sessionCookie = "papo_session"

// account is a load user and its session, as a Cookie header value.
type account struct {
	Name   string
	Cookie string // "papo_session=..."
}

// credsFile caches sessions per server (first URL) and username, so a run
// needs neither registration nor login, both of which cost a bcrypt.
type credsFile struct {
	Sessions map[string]map[string]string `json:"sessions"`
}

// ensureAccounts returns -users live sessions: cached ones that /me still
// accepts, else a login, else a registration.
func ensureAccounts(ctx context.Context, cfg *config) ([]account, error) {
	start := time.Now()
	key := cfg.urls[0].String()
	var cf credsFile
	if b, err := os.ReadFile(cfg.creds); err == nil {
		_ = json.Unmarshal(b, &cf)
	}
	if cf.Sessions == nil {
		cf.Sessions = map[string]map[string]string{}
	}
	cached := cf.Sessions[key]
	if cached == nil {
		cached = map[string]string{}
		cf.Sessions[key] = cached
	}
	accts := make([]account, cfg.users)
	var (
		mu                         sync.Mutex
		reused, logins, registered int
		firstErr                   error
	)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range accts {
		name := cfg.prefix + strconv.Itoa(i)
		accts[i].Name = name
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mu.Lock()
			cookie := cached[name]
			mu.Unlock()
			if cookie != "" && sessionAlive(ctx, cfg.urls[0], cookie) {
				accts[i].Cookie = cookie
				mu.Lock()
				reused++
				mu.Unlock()
				return
			}
			cookie, how, err := logIn(ctx, cfg.urls[0].String(), name, cfg.password)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("account %s: %w", name, err)
				}
				return
			}
			accts[i].Cookie = cookie
			cached[name] = cookie
			if how == "register" {
				registered++
			} else {
				logins++
			}
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if b, err := json.MarshalIndent(cf, "", " "); err == nil {
		_ = os.WriteFile(cfg.creds, b, 0o600)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fmt.Printf("accounts: %d (%d cached sessions reused, %d logins, %d registrations) in %s; sessions in %s\n",
		len(accts), reused, logins, registered, time.Since(start).Round(time.Millisecond), cfg.creds)
	return accts, nil
}

var checkClient = &http.Client{Timeout: 10 * time.Second}

// sessionAlive asks GET /me whether the cookie still names a session.
func sessionAlive(ctx context.Context, base *url.URL, cookie string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base.String()+"/me", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Cookie", cookie)
	resp, err := checkClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// logIn logs name in, registering it first if it does not exist yet.
func logIn(ctx context.Context, base, name, password string) (cookie, how string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c := client.New(base, nil)
	how = "login"
	if _, err = c.Login(ctx, name, password); err != nil {
		var ae *client.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			return "", "", err
		}
		how = "register"
		if _, err = c.Register(ctx, name, password); err != nil {
			return "", "", err
		}
	}
	u, _ := url.Parse(base)
	for _, ck := range c.HTTP.Jar.Cookies(u) {
		if ck.Name == sessionCookie {
			return sessionCookie + "=" + ck.Value, how, nil
		}
	}
	return "", "", errors.New("no session cookie in the answer")
}
