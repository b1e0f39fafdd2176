package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// envelopeSink collects what a broker hands to the hub.
type envelopeSink struct {
	mu   sync.Mutex
	envs []Envelope
}

func (s *envelopeSink) handle(env Envelope) {
	s.mu.Lock()
	s.envs = append(s.envs, env)
	s.mu.Unlock()
}

func (s *envelopeSink) snapshot() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Envelope(nil), s.envs...)
}

func (s *envelopeSink) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.envs)
}

func startBroker(t *testing.T, url, prefix string, log *slog.Logger, sink *envelopeSink) *RedisBroker {
	t.Helper()
	b, err := NewRedisBroker(url, prefix, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if sink != nil {
		if err := b.Subscribe(context.Background(), sink.handle); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	return b
}

func messageEnv(origin string, id int64) Envelope {
	data, _ := json.Marshal(Message{ID: id, Room: "general", Kind: "user", Username: "ana", Message: fmt.Sprint("m", id)})
	return Envelope{Type: EventMessage, Origin: origin, Room: "general", ID: id, From: 1, Data: data}
}

// One publisher's envelopes reach another instance whole and in order,
// batches included, and nothing crosses to another prefix.
func TestRedisBrokerCarriesEnvelopesInOrder(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	log, _ := newTestLog(t)

	var got, other envelopeSink
	pub := startBroker(t, url, prefix, log, &envelopeSink{})
	startBroker(t, url, prefix, log, &got)
	startBroker(t, url, testPrefix(t, url), log, &other)

	ctx := context.Background()
	if err := pub.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	const total = 1000
	id := int64(0)
	for batch := 1; id < total; batch = batch%37 + 1 { // batches of 1 to 37
		envs := make([]Envelope, 0, batch)
		for range batch {
			if id == total {
				break
			}
			id++
			envs = append(envs, messageEnv("pub", id))
		}
		if err := pub.Publish(ctx, envs...); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	typing := Envelope{Type: EventTyping, Origin: "pub", Room: "general", User: 7, Data: json.RawMessage(`{"room":"general","username":"ana","typing":true}`)}
	if err := pub.Publish(ctx, typing); err != nil {
		t.Fatalf("publish: %v", err)
	}

	eventually(t, 10*time.Second, "every envelope arrives", func() bool { return got.len() == total+1 })
	envs := got.snapshot()
	for i, env := range envs[:total] {
		if env.ID != int64(i+1) || env.Origin != "pub" || env.Type != EventMessage {
			t.Fatalf("envelope %d: got %+v", i, env)
		}
		var m Message
		if err := json.Unmarshal(env.Data, &m); err != nil || m.Message != fmt.Sprint("m", i+1) {
			t.Fatalf("envelope %d: data %s (%v)", i, env.Data, err)
		}
	}
	if last := envs[total]; last.Type != EventTyping || last.User != 7 || string(last.Data) != string(typing.Data) {
		t.Fatalf("typing envelope: got %+v", last)
	}
	time.Sleep(100 * time.Millisecond)
	if n := other.len(); n != 0 {
		t.Fatalf("a broker with another prefix received %d envelopes", n)
	}
}

// When Redis goes away, Publish and Ping fail fast; the subscription comes
// back by itself when Redis does; the outage and the recovery are logged
// once each, however many publishes failed in between.
func TestRedisBrokerSurvivesAnOutage(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	proxy, proxied := newFlakyProxy(t, url)
	log, logs := newTestLog(t)

	var atFlaky, atSteady envelopeSink
	flaky := startBroker(t, proxied, prefix, log, &atFlaky)
	steady := startBroker(t, url, prefix, slog.New(slog.DiscardHandler), &atSteady)
	ctx := context.Background()

	proxy.cut()
	// Publish may still find the subscription live for a moment; within
	// a generous deadline it must be failing, each call quickly.
	eventually(t, 10*time.Second, "publish fails while Redis is away", func() bool {
		return flaky.Publish(ctx, messageEnv("flaky", 1)) != nil
	})
	for i := range 200 {
		start := time.Now()
		err := flaky.Publish(ctx, messageEnv("flaky", int64(i+2)))
		if err == nil {
			t.Fatal("publish succeeded while Redis is away")
		}
		if !errors.Is(err, ErrRedisDown) {
			t.Fatalf("publish error %v is not ErrRedisDown", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a publish took %v while Redis is away", d)
		}
	}
	if err := flaky.Ping(ctx); err == nil {
		t.Fatal("ping succeeded while Redis is away")
	}

	proxy.restore()
	eventually(t, 15*time.Second, "ping succeeds once Redis is back", func() bool { return flaky.Ping(ctx) == nil })

	// Both directions carry again.
	if err := flaky.Publish(ctx, messageEnv("flaky", 500)); err != nil {
		t.Fatalf("publish after the outage: %v", err)
	}
	if err := steady.Publish(ctx, messageEnv("steady", 600)); err != nil {
		t.Fatalf("publish after the outage: %v", err)
	}
	eventually(t, 10*time.Second, "the steady instance hears the flaky one", func() bool {
		for _, env := range atSteady.snapshot() {
			if env.ID == 500 {
				return true
			}
		}
		return false
	})
	eventually(t, 10*time.Second, "the flaky instance hears the steady one", func() bool {
		for _, env := range atFlaky.snapshot() {
			if env.ID == 600 {
				return true
			}
		}
		return false
	})
	if n := logs.count("redis broker: Redis unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if n := logs.count("redis broker: subscription restored"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
}

// A Redis that hangs instead of refusing costs the writer one timeout,
// not one per batch: after the first failure, publishing fails at once
// until Redis answers again, and then works without a restart.
func TestRedisBrokerFailsFastWhenRedisHangs(t *testing.T) {
	url := requireRedis(t)
	prefix := testPrefix(t, url)
	proxy, proxied := newFlakyProxy(t, url)
	log, _ := newTestLog(t)
	b := startBroker(t, proxied, prefix, log, &envelopeSink{})
	ctx := context.Background()

	proxy.hang(true)
	start := time.Now()
	if err := b.Publish(ctx, messageEnv("b", 1)); err == nil {
		t.Fatal("publish succeeded while Redis hangs")
	}
	t.Logf("the first publish failed after %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	for i := range 100 {
		if err := b.Publish(ctx, messageEnv("b", int64(i+2))); !errors.Is(err, ErrRedisDown) {
			t.Fatalf("publish %d while Redis hangs: %v, want ErrRedisDown at once", i, err)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 publishes took %v while Redis is known to hang", d)
	}

	proxy.hang(false)
	eventually(t, 20*time.Second, "publishing works once Redis answers", func() bool {
		return b.Publish(ctx, messageEnv("b", 1000)) == nil
	})
}

// Without Redis, Subscribe gives up with the reason instead of hanging.
func TestRedisBrokerSubscribeFailsWithoutRedis(t *testing.T) {
	l, err := closedAddr()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRedisBroker("redis://"+l+"/0", "papotest:", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = b.Subscribe(ctx, func(Envelope) {})
	if err == nil {
		t.Fatal("subscribe succeeded with no Redis")
	}
	if err := b.Publish(context.Background(), messageEnv("x", 1)); !errors.Is(err, ErrRedisDown) {
		t.Fatalf("publish without Redis: %v", err)
	}
}
