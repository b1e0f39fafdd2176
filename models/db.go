package models

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	sqlitedriver "github.com/glebarez/go-sqlite"
	"github.com/glebarez/sqlite"
	mysqldriver "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names the database family behind a Store.
type Dialect string

const (
	SQLite Dialect = "sqlite"
	MySQL  Dialect = "mysql"
)

// Target is a parsed DATABASE_URL.
type Target struct {
	Dialect Dialect
	DSN     string // driver DSN
	Path    string // SQLite file; empty for MySQL
}

// ParseDatabaseURL turns the contract's DATABASE_URL into a driver DSN.
// Empty means the embedded default, papo.db in the working directory.
func ParseDatabaseURL(raw string) (Target, error) {
	switch {
	case raw == "":
		return sqliteTarget("papo.db"), nil
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" {
			return Target{}, errors.New("sqlite: needs a file path, as in sqlite:/var/lib/papo/papo.db")
		}
		return sqliteTarget(path), nil
	case strings.HasPrefix(raw, "mysql://"):
		return mysqlTarget(raw)
	default:
		scheme, _, _ := strings.Cut(raw, ":")
		return Target{}, fmt.Errorf("unknown scheme %q: use sqlite:/path/to/file.db or mysql://user:pass@host:3306/dbname", scheme)
	}
}

func sqliteTarget(path string) Target {
	// busy_timeout makes a writer wait for the lock instead of failing
	// with "database is locked"; it comes first, since the pragmas run in
	// order and the ones after it take locks too (see Open for the case it
	// cannot cover). WAL lets readers run beside the writer; and
	// _txlock=immediate takes the write lock at BEGIN, so two transactions
	// can never deadlock upgrading a read lock.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// The statement journal of a multi-row INSERT stays in memory rather
	// than spilling to a temporary file (one write(2) per page).
	q.Add("_pragma", "temp_store(MEMORY)")
	q.Set("_txlock", "immediate")
	return Target{Dialect: SQLite, DSN: "file:" + path + "?" + q.Encode(), Path: path}
}

func mysqlTarget(raw string) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("not a URL: %w", err)
	}
	dbname := strings.TrimPrefix(u.Path, "/")
	if u.Host == "" || dbname == "" {
		return Target{}, errors.New("mysql:// needs a host and a database name, as in mysql://user:pass@host:3306/dbname")
	}
	cfg := mysqldriver.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	cfg.DBName = dbname
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Collation = "utf8mb4_unicode_ci"
	cfg.Timeout = 5 * time.Second
	// A database that hangs (a paused server, a partition that drops
	// packets) must fail a query in bounded time, as one that refuses
	// connections does, so that requests answer 503 rather than wait for
	// it, and a COMMIT, which the driver does not bound by its context,
	// cannot stall the writer and shutdown behind it. 15 s leaves a
	// failing request time to answer within the server's 30 s write
	// timeout. ?readTimeout= and ?writeTimeout= in the URL change them
	// (0: none, e.g. for a migration that rewrites a large table).
	cfg.ReadTimeout = 15 * time.Second
	cfg.WriteTimeout = 15 * time.Second
	// The server's own bound on a silent session. An instance cut off in
	// the middle of a commit (a partition that drops packets rather than
	// resets the connection) leaves its transaction open on the server,
	// holding the message sequence's row lock: every instance's posts fail
	// until the server gives up on that session, which by default takes
	// 8 hours. No statement of papo's leaves a session idle for seconds,
	// let alone a minute; the pool retires idle connections before the
	// server would (tunePool). ?wait_timeout= in the URL changes it.
	cfg.Params = map[string]string{"charset": "utf8mb4", "wait_timeout": "60"}
	// Arguments are escaped by the driver, so a statement is one round
	// trip rather than prepare, execute and close: the writer's statements
	// run while the sequence row is locked. ?interpolateParams=false in
	// the URL turns it off.
	cfg.InterpolateParams = true
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "interpolateParams":
			cfg.InterpolateParams = v == "true"
			continue
		case "timeout", "readTimeout", "writeTimeout":
			d, err := time.ParseDuration(v)
			if err != nil {
				return Target{}, fmt.Errorf("%s: %q is not a Go duration such as 15s", k, v)
			}
			*map[string]*time.Duration{"timeout": &cfg.Timeout, "readTimeout": &cfg.ReadTimeout, "writeTimeout": &cfg.WriteTimeout}[k] = d
			continue
		}
		cfg.Params[k] = v
	}
	return Target{Dialect: MySQL, DSN: cfg.FormatDSN()}, nil
}

// Store is papo's data layer: every query the application makes.
type Store struct {
	db      *gorm.DB
	dialect Dialect
}

// Open connects to the target, checks that it answers, and tunes the pool.
// It does not migrate; call Migrate.
func Open(ctx context.Context, t Target, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	gcfg := &gorm.Config{
		SkipDefaultTransaction: true,
		TranslateError:         true,
		PrepareStmt:            false,
		Logger:                 newQueryLogger(log),
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Millisecond) },
	}
	var dialector gorm.Dialector
	switch t.Dialect {
	case SQLite:
		dialector = sqlite.Open(t.DSN)
	case MySQL:
		dialector = mysql.New(mysql.Config{DSN: t.DSN, DefaultStringSize: 255})
	default:
		return nil, fmt.Errorf("unknown dialect %q", t.Dialect)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var db *gorm.DB
	err := retryBusy(pctx, func() (err error) {
		db, err = gorm.Open(dialector, gcfg) // its first connection asks the version
		return err
	})
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, dialect: t.Dialect}
	if err := retryBusy(pctx, func() error { return sqlDB.PingContext(pctx) }); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	if err := s.tunePool(pctx, sqlDB); err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return s, nil
}

// retryBusy runs open, which may make a new connection, again while it
// fails with SQLITE_BUSY. Instances starting at once on a new SQLite file
// race to switch it to WAL, which needs the file to itself; SQLite fails
// the loser at once rather than call the busy handler (waiting there
// could deadlock), and its connection is dropped. The next one finds the
// file in WAL already.
func retryBusy(ctx context.Context, open func() error) error {
	for {
		err := open()
		var serr *sqlitedriver.Error
		if err == nil || !errors.As(err, &serr) || serr.Code()&0xff != sqliteBusy {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// sqliteBusy is SQLITE_BUSY, the primary code of "database is locked".
const sqliteBusy = 5

func (s *Store) tunePool(ctx context.Context, sqlDB *sql.DB) error {
	switch s.dialect {
	case SQLite:
		// One writer at a time is SQLite's nature; a few connections let
		// readers run beside it under WAL.
		sqlDB.SetMaxOpenConns(8)
		sqlDB.SetMaxIdleConns(8)
		sqlDB.SetConnMaxIdleTime(0)
	case MySQL:
		var waitTimeout int64
		if err := sqlDB.QueryRowContext(ctx, "SELECT @@wait_timeout").Scan(&waitTimeout); err != nil {
			return fmt.Errorf("reading wait_timeout: %w", err)
		}
		// Keep connections well inside the server's idle cut-off, so the
		// pool never hands out one the server has already closed.
		life := 5 * time.Minute
		if half := time.Duration(waitTimeout) * time.Second / 2; half > 0 && half < life {
			life = half
		}
		sqlDB.SetMaxOpenConns(32)
		sqlDB.SetMaxIdleConns(16)
		sqlDB.SetConnMaxLifetime(life)
		sqlDB.SetConnMaxIdleTime(life)
	}
	return nil
}

// Dialect tells which database family this store talks to.
func (s *Store) Dialect() Dialect { return s.dialect }

// DB exposes the GORM handle, for tests and tools.
func (s *Store) DB() *gorm.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close releases the pool.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// newQueryLogger logs slow and failed statements, without their values:
// those are password hashes, session ids and people's messages, none of
// which belongs in a log. A statement that broke a unique key is not
// logged at all: it is how a taken username is found (CreateUser answers
// ErrUsernameTaken), not a fault.
func newQueryLogger(log *slog.Logger) logger.Interface {
	return quietQueries{logger.NewSlogLogger(log, logger.Config{
		SlowThreshold:             500 * time.Millisecond,
		LogLevel:                  logger.Warn,
		IgnoreRecordNotFoundError: true,
	})}
}

type quietQueries struct{ logger.Interface }

var _ gorm.ParamsFilter = quietQueries{}

// ParamsFilter has GORM log each statement with its placeholders, not
// its values (gorm.ParamsFilter).
func (quietQueries) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

func (q quietQueries) LogMode(level logger.LogLevel) logger.Interface {
	return quietQueries{q.Interface.LogMode(level)}
}

func (q quietQueries) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		err = nil // logged still if slow
	}
	q.Interface.Trace(ctx, begin, fc, err)
}
