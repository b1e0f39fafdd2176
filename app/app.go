package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"papo/models"
)

// Store is everything the application needs from the data layer;
// *models.Store provides it.
type Store interface {
	AccountStore
	SessionStore
	HistoryStore
	MessageStore
	MessageSource
	PresenceSnapshots
	Ping(ctx context.Context) error
}

// addressFailureFactor widens the login-failure limit of a client address
// over that of one username: an address may be a shared NAT.
const addressFailureFactor = 10

// Options are the parts of App that tests and tools set apart from Config.
type Options struct {
	BcryptCost  int           // default 11
	TypingLapse time.Duration // default TypingLapse
	Hub         HubOptions
	// Broker and Presence replace the ones Config implies (for tests).
	Broker      Broker
	NewPresence func(notify func(PresenceChange)) PresenceManager
}

// App is papo's application: the services the routes call, wired.
type App struct {
	Config    Config
	Origin    string
	Accounts  *Accounts
	Sessions  *Sessions
	Chat      *Chat
	Hub       *Hub
	Broker    Broker
	Presence  PresenceManager
	Log       *slog.Logger
	Streams   StreamSlots
	store     Store
	writer    *Writer
	announcer *Announcer
	typing    *Typing
	cancel    context.CancelFunc
	closeOnce sync.Once
	// limitsRedis is the connection of the cluster-wide limits, if any.
	limitsRedis interface{ Close() error }
}

// New wires and starts the application on an open, migrated store.
func New(ctx context.Context, cfg Config, store Store, log *slog.Logger, opts Options) (*App, error) {
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 11
	}
	if opts.Hub.Heartbeat == 0 {
		opts.Hub.Heartbeat = cfg.Heartbeat
	}
	if opts.Hub.Coalesce == 0 {
		opts.Hub.Coalesce = cfg.Coalesce // PAPO_COALESCE; 0 leaves it off
	}
	origin := newOrigin()
	broker := opts.Broker
	if broker == nil {
		var err error
		if broker, err = newBroker(ctx, cfg, origin, log); err != nil {
			return nil, err
		}
	}
	a := &App{Config: cfg, Origin: origin, Broker: broker, Log: log, store: store}
	a.Hub = NewHub(origin, broker, store, log, opts.Hub)
	if err := a.Hub.Start(ctx); err != nil {
		_ = broker.Close()
		if errors.Is(err, ErrBrokerUnavailable) && cfg.RedisURL != "" {
			return nil, &ConfigError{"REDIS_URL", err}
		}
		return nil, fmt.Errorf("starting the hub: %w", err)
	}
	a.writer = NewWriter(store, a.Hub, log)
	a.announcer = NewAnnouncer(a.writer, a.Hub, func() PresenceManager { return a.Presence }, log)
	switch {
	case opts.NewPresence != nil:
		a.Presence = opts.NewPresence(a.announcer.Notify)
	case cfg.RedisURL != "":
		presence, err := NewRedisPresence(ctx, RedisPresenceOptions{
			URL: cfg.RedisURL, Prefix: cfg.RedisPrefix, Origin: origin, Grace: cfg.LeaveGrace,
		}, a.announcer.Notify, log)
		if err != nil {
			a.Close()
			return nil, &ConfigError{"REDIS_URL", err}
		}
		a.Presence = presence
	default:
		presence := NewMemoryPresence(cfg.LeaveGrace, a.announcer.Notify)
		if n, err := restorePresence(ctx, store, presence, time.Now()); err != nil {
			log.Warn("presence: what was online at the last stop could not be read; those users will be announced as joining again", "err", err)
		} else if n > 0 {
			log.Info("presence: carried over the last stop; users not back within the leave grace will be announced as leaving", "users", n, "grace", cfg.LeaveGrace)
		}
		a.Presence = presence
	}
	a.typing = NewTyping(a.Hub, opts.TypingLapse, log)

	lim := cfg.Limits
	var (
		streams       StreamSlots    = NewStreamLimits(lim)
		messages      RateLimiter    = Unlimited{}
		typists       RateLimiter    = Unlimited{}
		registrations RateLimiter    = Unlimited{}
		loginFailures FailureCounter = Unlimited{}
		addrFailures  FailureCounter = Unlimited{}
	)
	switch {
	case !lim.Enabled:
	case cfg.RedisURL != "":
		rdb, err := newRedisClient(cfg.RedisURL, cfg.RedisPrefix, log)
		if err != nil {
			a.Close()
			return nil, &ConfigError{"REDIS_URL", err}
		}
		a.limitsRedis = rdb
		p := cfg.RedisPrefix
		messages = NewRedisRateLimiter(rdb, p, lim.MessageRate, lim.MessageBurst, log)
		typists = NewRedisRateLimiter(rdb, p, lim.TypingRate, 5, log)
		registrations = NewRedisRateLimiter(rdb, p, float64(lim.Registrations)/lim.RegisterWindow.Seconds(), lim.Registrations, log)
		loginFailures = NewRedisFailureCounter(rdb, p, lim.LoginFailures, lim.LoginWindow, log)
		addrFailures = NewRedisFailureCounter(rdb, p, lim.LoginFailures*addressFailureFactor, lim.LoginWindow, log)
		streams = NewRedisStreamLimits(rdb, p, origin, lim, log)
	default:
		messages = NewMemoryRateLimiter(lim.MessageRate, lim.MessageBurst)
		typists = NewMemoryRateLimiter(lim.TypingRate, 5)
		registrations = NewMemoryRateLimiter(float64(lim.Registrations)/lim.RegisterWindow.Seconds(), lim.Registrations)
		loginFailures = NewMemoryFailureCounter(lim.LoginFailures, lim.LoginWindow)
		addrFailures = NewMemoryFailureCounter(lim.LoginFailures*addressFailureFactor, lim.LoginWindow)
	}
	a.Streams = streams
	accounts, err := NewAccounts(store, opts.BcryptCost, loginFailures, addrFailures, registrations)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.Accounts = accounts
	a.Sessions = NewSessions(store, a.Hub)
	a.Chat = &Chat{
		history: store, writer: a.writer, hub: a.Hub, presence: a.Presence, typing: a.typing,
		commands: NewCommands(), accounts: accounts, messages: messages, typists: typists, log: log,
	}
	bg, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.Sessions.Sweep(bg, time.Hour)
	go a.Sessions.WatchStreams(bg, StreamSessionCheck)
	return a, nil
}

func newOrigin() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Ready reports whether the database answers and takes writes, and
// whether the broker answers.
func (a *App) Ready(ctx context.Context) error {
	if err := a.store.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := a.writer.Writable(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := a.Broker.Ping(ctx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// redisHealth is a part of the application that talks to Redis and knows,
// without asking it, whether it works now.
type redisHealth interface{ RedisUp() bool }

// RedisUp reports whether Redis serves this instance now: the broker's
// subscription is live and presence records in Redis (not this
// instance's streams alone). It asks Redis nothing, for a gauge that is
// read often. configured is false without REDIS_URL.
func (a *App) RedisUp() (up, configured bool) {
	up = true
	for _, part := range []any{a.Broker, a.Presence} {
		if h, ok := part.(redisHealth); ok {
			configured = true
			up = up && h.RedisUp()
		}
	}
	return up && configured, configured
}

// StopStreams ends every open stream and refuses new ones: the first step
// of a graceful shutdown, since streams never end by themselves.
func (a *App) StopStreams() { a.Hub.Stop() }

// Close finishes the stores in flight and releases everything. Call it
// after the HTTP server has stopped, so nothing submits any more.
func (a *App) Close() { a.closeOnce.Do(a.close) }

func (a *App) close() {
	if a.cancel != nil {
		a.cancel()
	}
	if s, ok := a.Streams.(interface{ Close() }); ok {
		s.Close()
	}
	if a.limitsRedis != nil {
		_ = a.limitsRedis.Close()
	}
	a.Hub.Stop()
	if a.typing != nil {
		a.typing.Close()
	}
	if mp, ok := a.Presence.(*MemoryPresence); ok && a.store != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := savePresence(ctx, a.store, mp, time.Now()); err != nil {
			a.Log.Warn("presence: could not store who is online; after the restart they will be announced as joining again", "err", err)
		}
		cancel()
	}
	if a.Presence != nil {
		_ = a.Presence.Close()
	}
	if a.announcer != nil {
		a.announcer.Close()
	}
	if a.writer != nil {
		a.writer.Close()
	}
	_ = a.Broker.Close()
}

// newBroker picks the broker the configuration implies: Redis pub/sub when
// REDIS_URL is set, else none (one instance).
func newBroker(_ context.Context, cfg Config, _ string, log *slog.Logger) (Broker, error) {
	if cfg.RedisURL == "" {
		return LocalBroker{}, nil
	}
	b, err := NewRedisBroker(cfg.RedisURL, cfg.RedisPrefix, log)
	if err != nil {
		return nil, &ConfigError{"REDIS_URL", err}
	}
	return b, nil
}

// Store returns the data layer, for tests and tools.
func (a *App) StoreForTests() Store { return a.store }

var _ Store = (*models.Store)(nil)

// ObserveStores sets hooks that count stored messages and batch sizes.
func (a *App) ObserveStores(stored, batch func(n int)) { a.writer.Observe(stored, batch) }
