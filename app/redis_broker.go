package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrRedisDown is what Publish and Ping return while the broker knows that
// Redis is gone.
var ErrRedisDown = errors.New("redis is unavailable")

const (
	// brokerIdle is how long a quiet subscription waits before it pings
	// Redis, so that a server that hangs (rather than closing the socket)
	// is noticed too; brokerPongWait is how long the answer may take.
	brokerIdle     = 5 * time.Second
	brokerPongWait = 2 * time.Second
	// The receive loop retries from brokerMinBackoff, doubling up to
	// brokerMaxBackoff: fan-out is back at most a second after Redis is.
	brokerMinBackoff = 100 * time.Millisecond
	brokerMaxBackoff = time.Second
	// brokerStartWait bounds how long Subscribe waits for the first
	// subscription; a Redis that is still starting gets that long.
	brokerStartWait = 5 * time.Second
)

// RedisBroker carries envelopes between instances over Redis pub/sub: one
// channel, <prefix>events, with one JSON envelope per message.
//
// Redis pub/sub keeps the order of one connection's publishes and may drop
// messages (a subscriber that is reconnecting misses what is published
// meanwhile), which is exactly the Broker contract: the hub orders message
// events by id and reads what it missed from the database.
type RedisBroker struct {
	client  redis.UniversalClient
	channel string
	log     *slog.Logger

	// live is true while the subscription is confirmed. While it is false
	// Publish fails at once: Redis is known to be gone, and the writer,
	// which publishes after answering POSTs, must not wait on it.
	live   atomic.Bool
	outage outage
	bad    atomic.Int64 // undecodable payloads seen
	// restored, when set, runs each time the subscription is back after
	// an outage (see OnRestored).
	restored atomic.Pointer[func()]

	mu      sync.Mutex
	started bool
	closed  bool
	ps      *redis.PubSub // the current subscription, which Close closes to end a blocked read
	cancel  context.CancelFunc
	done    chan struct{}
}

var _ Broker = (*RedisBroker)(nil)

// NewRedisBroker asks the server at url once whether it is a cluster node
// (see newRedisClient); the subscription waits for Subscribe.
func NewRedisBroker(url, prefix string, log *slog.Logger) (*RedisBroker, error) {
	client, err := newRedisClient(url, prefix, log)
	if err != nil {
		return nil, err
	}
	return &RedisBroker{client: client, channel: prefix + "events", log: log}, nil
}

// Subscribe starts the receive loop and returns once the subscription is
// confirmed. If Redis does not answer within brokerStartWait (or ctx ends)
// it returns the reason; the caller then closes the broker.
func (b *RedisBroker) Subscribe(ctx context.Context, handle func(Envelope)) error {
	b.mu.Lock()
	if b.started || b.closed {
		b.mu.Unlock()
		return errors.New("redis broker: Subscribe called twice, or after Close")
	}
	b.started = true
	loopCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.done = make(chan struct{})
	b.mu.Unlock()

	firstLive := make(chan struct{})
	go b.run(loopCtx, handle, firstLive)

	timer := time.NewTimer(brokerStartWait)
	defer timer.Stop()
	select {
	case <-firstLive:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("subscribing to Redis at %s: %w", redisAddr(b.client), ctx.Err())
	case <-timer.C:
		return fmt.Errorf("subscribing to Redis at %s: no subscription within %v: %w", redisAddr(b.client), brokerStartWait, b.downError())
	}
}

// run keeps one subscription alive until Close: when it breaks, it logs
// the outage once and retries with a short backoff until Redis is back.
func (b *RedisBroker) run(ctx context.Context, handle func(Envelope), firstLive chan struct{}) {
	defer close(b.done)
	var first sync.Once
	everLive := false
	backoff := brokerMinBackoff
	for ctx.Err() == nil {
		err := b.session(ctx, handle, func() {
			b.live.Store(true)
			backoff = brokerMinBackoff
			everLive = true
			first.Do(func() { close(firstLive) })
			if d, ok := b.outage.recover(); ok {
				b.log.Info("redis broker: subscription restored; fan-out between instances is back",
					"redis", redisAddr(b.client), "down_for", d.Round(time.Millisecond))
				if f := b.restored.Load(); f != nil {
					(*f)()
				}
			}
		})
		b.live.Store(false)
		if ctx.Err() != nil {
			return
		}
		if b.outage.fail(err) {
			if everLive {
				b.log.Warn("redis broker: Redis unavailable; retrying until it is back. Posts are still stored, "+
					"and other instances' messages reach this instance's streams from the database meanwhile",
					"redis", redisAddr(b.client), "err", err)
			} else {
				b.log.Warn("redis broker: cannot subscribe to Redis yet; retrying", "redis", redisAddr(b.client), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, brokerMaxBackoff)
	}
}

// OnRestored sets f to run each time the subscription is restored after
// an outage (or after a start that had to retry): whatever was published
// meanwhile was lost, and f may look for what it should have said. f runs
// on the receive loop: it must not block.
func (b *RedisBroker) OnRestored(f func()) { b.restored.Store(&f) }

// session subscribes once and receives until the connection fails. onLive
// runs when Redis has confirmed the subscription.
func (b *RedisBroker) session(ctx context.Context, handle func(Envelope), onLive func()) error {
	ps := b.client.Subscribe(ctx) // no channel yet: no I/O, and no error swallowed
	if !b.setPubSub(ps) {
		_ = ps.Close()
		return context.Canceled
	}
	defer func() {
		b.setPubSub(nil)
		_ = ps.Close()
	}()
	if err := ps.Subscribe(ctx, b.channel); err != nil {
		return fmt.Errorf("subscribing to %s: %w", b.channel, err)
	}
	msg, err := ps.ReceiveTimeout(ctx, redisOpTimeout)
	if err != nil {
		return fmt.Errorf("confirming the subscription to %s: %w", b.channel, err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return fmt.Errorf("confirming the subscription to %s: unexpected %T", b.channel, msg)
	}
	onLive()
	return b.receive(ctx, ps, handle)
}

func (b *RedisBroker) receive(ctx context.Context, ps *redis.PubSub, handle func(Envelope)) error {
	awaitingPong := false
	for {
		wait := brokerIdle
		if awaitingPong {
			wait = brokerPongWait
		}
		msg, err := ps.ReceiveTimeout(ctx, wait)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case isTimeout(err) && !awaitingPong:
			// A quiet channel: check that Redis is still there.
			if err := ps.Ping(ctx); err != nil {
				return fmt.Errorf("pinging: %w", err)
			}
			awaitingPong = true
			continue
		case isTimeout(err):
			return fmt.Errorf("no answer to a ping within %v: %w", brokerPongWait, err)
		default:
			return fmt.Errorf("receiving: %w", err)
		}
		awaitingPong = false
		// Redis answered: publishing works again if a failed publish had
		// stopped it (see Publish).
		b.live.Store(true)
		if m, ok := msg.(*redis.Message); ok {
			b.deliver(m.Payload, handle)
		}
	}
}

func (b *RedisBroker) deliver(payload string, handle func(Envelope)) {
	var env Envelope
	if err := json.Unmarshal([]byte(payload), &env); err != nil || env.Type == "" {
		// Another program on the channel, or another papo version: log
		// the first and every thousandth, not each one.
		if n := b.bad.Add(1); n == 1 || n%1000 == 0 {
			b.log.Warn("redis broker: ignoring a payload that is not an envelope", "channel", b.channel, "seen", n, "err", err)
		}
		return
	}
	handle(env)
}

func (b *RedisBroker) setPubSub(ps *redis.PubSub) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed && ps != nil {
		return false
	}
	b.ps = ps
	return true
}

// Publish sends envs in one pipeline, so one round trip carries a whole
// batch of the writer, in order. While the subscription is down it fails
// at once without touching the network.
func (b *RedisBroker) Publish(ctx context.Context, envs ...Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	if !b.live.Load() {
		return b.downError()
	}
	payloads := make([]string, len(envs))
	for i := range envs {
		data, err := json.Marshal(&envs[i])
		if err != nil {
			return fmt.Errorf("encoding a %s envelope: %w", envs[i].Type, err)
		}
		payloads[i] = string(data)
	}
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, data := range payloads {
			p.Publish(ctx, b.channel, data)
		}
		return nil
	})
	if err != nil {
		// Redis may hang rather than refuse: until the subscription hears
		// from it again, fail at once instead of waiting out a timeout per
		// batch. A ping asks it now; its answer (or any message) ends this,
		// and its silence ends the subscription, which then reconnects.
		b.live.Store(false)
		b.probe()
		return fmt.Errorf("publishing %d events to Redis: %w", len(envs), err)
	}
	return nil
}

// probe pings Redis on the subscription's connection; the receive loop
// reads the answer.
func (b *RedisBroker) probe() {
	b.mu.Lock()
	ps := b.ps
	b.mu.Unlock()
	if ps == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), redisOpTimeout)
		defer cancel()
		_ = ps.Ping(ctx)
	}()
}

// RedisUp reports whether the subscription is live.
func (b *RedisBroker) RedisUp() bool { return b.live.Load() }

// Ping is real: it asks Redis, and also fails while the subscription is
// not yet restored, since until then this instance hears no other.
func (b *RedisBroker) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("PING %s: %w", redisAddr(b.client), err)
	}
	if !b.live.Load() {
		return fmt.Errorf("redis at %s answers, but the subscription is not restored yet: %w", redisAddr(b.client), b.downError())
	}
	return nil
}

func (b *RedisBroker) downError() error {
	since, err := b.outage.down()
	if err == nil {
		return fmt.Errorf("%w: not subscribed yet", ErrRedisDown)
	}
	return fmt.Errorf("%w for %v: %w", ErrRedisDown, time.Since(since).Round(time.Millisecond), err)
}

// Close stops the receive loop and closes the client.
func (b *RedisBroker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	cancel, ps, done := b.cancel, b.ps, b.done
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if ps != nil {
		_ = ps.Close() // ends a read that is blocked on the socket
	}
	if done != nil {
		<-done
	}
	return b.client.Close()
}
