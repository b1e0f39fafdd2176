package e2e

import (
	"context"
	"errors"
	"io"
	"net/url"
	"testing"
	"time"

	"papo/e2e/client"
	"papo/models"
	"papo/models/modelstest"
)

// TestLogoutEndsTheSessionOnEveryInstance: two instances share MariaDB and
// Redis. A session logged out on one is dead on the other at once: its
// open stream there closes, and its cookie no longer opens anything.
func TestLogoutEndsTheSessionOnEveryInstance(t *testing.T) {
	redisURL, prefix := sharedRedis(t)
	db := modelstest.URL(t, models.MySQL)
	servers := startCluster(t, 2, db, redisURL, prefix)
	a, b := servers[0], servers[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	onA := client.New(a.URL, nil)
	if _, err := onA.Register(ctx, "ana", "correct horse"); err != nil {
		t.Fatal(err)
	}
	// The same browser (cookies ignore the port) reaches instance B.
	onB := &client.Client{Base: b.URL, HTTP: onA.HTTP}
	stream, err := onB.Open(ctx, "general", "")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Next(); err != nil {
				ended <- err
				return
			}
		}
	}()
	// Another session of the same user on B must survive.
	other := client.New(b.URL, nil)
	if _, err := other.Login(ctx, "ana", "correct horse"); err != nil {
		t.Fatal(err)
	}

	aURL, _ := url.Parse(a.URL)
	planted := onA.HTTP.Jar.Cookies(aURL)

	if err := onA.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("stream on B ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the logged-out session's stream on the other instance stayed open")
	}
	// The old cookie, replayed on B, opens nothing.
	replay := client.New(b.URL, nil)
	bURL, _ := url.Parse(b.URL)
	replay.HTTP.Jar.SetCookies(bURL, planted)
	if _, err := replay.Me(ctx); !isStatus(err, 401) {
		t.Fatalf("/me on B with the logged-out cookie: %v, want 401", err)
	}
	if _, err := replay.Open(ctx, "general", ""); !isStatus(err, 401) {
		t.Fatalf("a stream on B with the logged-out cookie: %v, want 401", err)
	}
	if _, err := other.Me(ctx); err != nil {
		t.Fatalf("the user's other session: %v", err)
	}
}

func isStatus(err error, status int) bool {
	var e *client.APIError
	return errors.As(err, &e) && e.Status == status
}
