// Command papoload is papo's load tool. It reaches papo only through its
// public routes (register, login, /me, history, POST messages, the SSE
// stream), and measures what BENCHMARKS.md reports: connect time, server
// memory per idle stream, fan-out latency, sustained deliveries, the store
// path, and server CPU per delivery.
//
// Usage:
//
//	papoload [flags] users     register or log in the accounts, cache their sessions
//	papoload [flags] connect   open N streams, time them to "ready", memory per idle stream
//	papoload [flags] fanout    open N streams, post M single messages, latency to all N
//	papoload [flags] sustain   open N streams, post at -rate for -duration
//	papoload [flags] store     open N streams (in other rooms), post as fast as -rate asks
//	papoload [flags] reconnect open N streams, post at -rate; drop them all and resume each from its last id
//
// Every loop is bounded in count and in time (-timeout ends the whole run),
// and only loopback addresses are accepted as targets and sources.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	// For tests: how long a stream may take to be ready (default 30 s),
	// and which reader reads the streams (default the platform's own).
	readyTimeout time.Duration
	newReader    func(*streamSet) streamReader

	urls        []*url.URL
	pids        []int
	users       int
	prefix      string
	password    string
	creds       string
	room        string
	rooms       int
	streams     int
	concurrency int
	sources     []net.IP
	resume      bool
	bufSize     int
	readNap     time.Duration
	settle      time.Duration
	hold        time.Duration
	messages    int
	gap         time.Duration
	wait        time.Duration
	rate        float64
	duration    time.Duration
	posters     int
	size        int
	timeout     time.Duration
	pprof       string
	cpuprofile  string
	selfProfile string
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage: papoload [flags] users|connect|fanout|sustain|store|reconnect

Scenarios:
  users    register (first time) or log in the -users accounts and cache their sessions in -creds
  connect  open -streams streams and time them to "ready"; server RSS per open idle stream
  fanout   open -streams streams; post -messages single messages, -gap apart; latency to every stream
  sustain  open -streams streams; post -rate messages/s for -duration; deliveries/s, latencies, server CPU
  store    open -streams streams spread over -rooms rooms; post -rate messages/s over them with
           -posters concurrent posters; stored messages/s and POST latency
  reconnect  open -streams streams; post -rate messages/s for -duration; a third of the way in,
           drop every stream at once and reopen each from the last id it received (on the next
           -url); time until all are back, messages lost, repeated or out of order, their latency

Flags:
`)
	flag.PrintDefaults()
}

func main() {
	var (
		cfg                 config
		urls, pids, sources string
		findPid             bool
	)
	flag.StringVar(&urls, "url", "http://127.0.0.1:3000", "papo instance(s), comma-separated; streams and posts go round-robin over them")
	flag.StringVar(&pids, "pid", "", "server pid(s), comma-separated in -url order, for RSS and CPU (default: found from the listening port when -find-pid)")
	flag.BoolVar(&findPid, "find-pid", true, "find each server's pid from the process listening on its port (needs /proc access)")
	flag.IntVar(&cfg.users, "users", 100, "accounts to spread the streams and posts over")
	flag.StringVar(&cfg.prefix, "prefix", "load", "username prefix: the accounts are PREFIX0, PREFIX1, ...")
	flag.StringVar(&cfg.password, "password", "papoload-password", "password of every load account")
	flag.StringVar(&cfg.creds, "creds", os.TempDir()+"/papoload-sessions.json", "file caching the accounts' session cookies, so a run needs no bcrypt")
	flag.StringVar(&cfg.room, "room", "general", "the room (connect, fanout, sustain); store uses ROOM-0 ... ROOM-(rooms-1)")
	flag.IntVar(&cfg.rooms, "rooms", 0, "store: rooms to spread streams and posts over (default 1000 for store, 1 otherwise)")
	flag.IntVar(&cfg.streams, "streams", 1000, "SSE streams to open")
	flag.IntVar(&cfg.concurrency, "concurrency", 256, "streams connecting at once (bounded by the server's listen backlog)")
	flag.StringVar(&sources, "src", "", "source addresses for the streams, e.g. 127.0.0.2-127.0.0.9 or a comma list (default: enough of 127.0.0.2... for 8,000 streams each)")
	flag.BoolVar(&cfg.resume, "resume", false, "open streams with ?last_event_id= the room's newest message, so no backlog is replayed")
	flag.IntVar(&cfg.bufSize, "buf", 16<<10, "read buffer per stream, bytes")
	flag.DurationVar(&cfg.readNap, "read-nap", 250*time.Microsecond, "Linux: after a look that found events, wait this long for more before reading again (0: read at once)")
	flag.DurationVar(&cfg.settle, "settle", 3*time.Second, "connect: wait after all are ready before reading RSS again")
	flag.DurationVar(&cfg.hold, "hold", 0, "connect: keep the streams open this long after measuring")
	flag.IntVar(&cfg.messages, "messages", 20, "fanout: messages to post, one at a time")
	flag.DurationVar(&cfg.gap, "gap", 250*time.Millisecond, "fanout: pause between messages")
	flag.DurationVar(&cfg.wait, "wait", 5*time.Second, "fanout: how long one message may take to reach every stream")
	flag.Float64Var(&cfg.rate, "rate", 20, "sustain, store, reconnect: messages per second offered")
	flag.DurationVar(&cfg.duration, "duration", 15*time.Second, "sustain, store, reconnect: how long to post (reconnect drops the streams a third of the way in)")
	flag.IntVar(&cfg.posters, "posters", 0, "concurrent posting connections (default: max(4, rate/100))")
	flag.IntVar(&cfg.size, "size", 60, "message length in characters")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "the whole run ends after this, whatever it is doing")
	flag.StringVar(&cfg.pprof, "pprof", "", "server pprof address (PAPO_PPROF_ADDR); profiles the server during the measured phase into DIR given by -profile-dir")
	flag.StringVar(&cfg.cpuprofile, "profile-dir", "", "with -pprof: directory for the server's cpu.pprof and heap.pprof taken during the measured phase")
	flag.StringVar(&cfg.selfProfile, "self-profile", "", "write the load tool's own CPU profile to this file")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() != 1 {
		usage()
		os.Exit(2)
	}
	scenario := flag.Arg(0)
	if err := parseConfig(&cfg, urls, pids, sources, findPid, scenario); err != nil {
		fmt.Fprintln(os.Stderr, "papoload:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.selfProfile != "" {
		f, err := os.Create(cfg.selfProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "papoload:", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "papoload:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	var err error
	switch scenario {
	case "users":
		_, err = ensureAccounts(ctx, &cfg)
	case "connect":
		err = runConnect(ctx, &cfg)
	case "fanout":
		err = runFanout(ctx, &cfg)
	case "sustain":
		err = runSustain(ctx, &cfg)
	case "store":
		err = runStore(ctx, &cfg)
	case "reconnect":
		err = runReconnect(ctx, &cfg)
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "papoload:", err)
		os.Exit(1)
	}
}

func parseConfig(cfg *config, urls, pids, sources string, findPid bool, scenario string) error {
	for _, raw := range strings.Split(urls, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(strings.TrimSuffix(raw, "/"))
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("-url %q: want http://127.0.0.1:PORT (plain HTTP on loopback)", raw)
		}
		if err := mustBeLoopback(u.Hostname()); err != nil {
			return fmt.Errorf("-url %q: %w", raw, err)
		}
		if u.Port() == "" {
			u.Host += ":80"
		}
		cfg.urls = append(cfg.urls, u)
	}
	if len(cfg.urls) == 0 {
		return errors.New("-url: none given")
	}
	if pids != "" {
		for _, p := range strings.Split(pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n <= 0 {
				return fmt.Errorf("-pid %q: not a pid", p)
			}
			cfg.pids = append(cfg.pids, n)
		}
		if len(cfg.pids) != len(cfg.urls) {
			return fmt.Errorf("-pid: %d pids for %d urls", len(cfg.pids), len(cfg.urls))
		}
	} else if findPid {
		for _, u := range cfg.urls {
			port, _ := strconv.Atoi(u.Port())
			pid, err := listenerPid(port)
			if err != nil {
				fmt.Fprintf(os.Stderr, "papoload: no server pid for %s (%v): RSS and CPU figures are left out\n", u, err)
				cfg.pids = nil
				break
			}
			cfg.pids = append(cfg.pids, pid)
		}
	}
	var err error
	if cfg.sources, err = parseSources(sources, cfg.streams); err != nil {
		return err
	}
	if cfg.users <= 0 || cfg.users > 100000 {
		return errors.New("-users: 1 to 100,000")
	}
	if cfg.streams < 0 || cfg.streams > 200000 {
		return errors.New("-streams: 0 to 200,000")
	}
	if cfg.concurrency <= 0 {
		cfg.concurrency = 1
	}
	if cfg.rooms <= 0 {
		cfg.rooms = 1
		if scenario == "store" {
			cfg.rooms = 1000
		}
	}
	if cfg.rate <= 0 || cfg.rate > 100000 {
		return errors.New("-rate: above 0, at most 100,000")
	}
	if cfg.duration <= 0 || cfg.duration > time.Hour {
		return errors.New("-duration: above 0, at most 1h")
	}
	if cfg.messages <= 0 || cfg.messages > 100000 {
		return errors.New("-messages: 1 to 100,000")
	}
	if cfg.posters <= 0 {
		cfg.posters = max(4, int(cfg.rate/100))
	}
	cfg.posters = min(cfg.posters, 512)
	if cfg.size < 1 || cfg.size > 2000 {
		return errors.New("-size: 1 to 2,000")
	}
	if cfg.bufSize < 512 {
		cfg.bufSize = 512
	}
	if cfg.pprof != "" {
		host, _, err := net.SplitHostPort(cfg.pprof)
		if err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
		if err := mustBeLoopback(host); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	return nil
}

// mustBeLoopback refuses every target that is not this machine's loopback.
func mustBeLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: papoload targets only 127.0.0.0/8 or ::1", host)
	}
	return nil
}

// parseSources reads "127.0.0.2-127.0.0.9" or "a,b,c"; by default it takes
// one address of 127.0.0.2 onwards per 8,000 streams, well inside the
// ephemeral port range of each.
func parseSources(s string, streams int) ([]net.IP, error) {
	var out []net.IP
	if s == "" {
		n := max(1, (streams+7999)/8000)
		for i := range n {
			out = append(out, net.IPv4(127, 0, 0, byte(2+i)))
		}
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a := net.ParseIP(lo).To4()
		if a == nil || !a.IsLoopback() {
			return nil, fmt.Errorf("-src %q: not a loopback IPv4 address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(hi).To4()
		if b == nil || !b.IsLoopback() || b[0] != a[0] || b[1] != a[1] || b[2] != a[2] || b[3] < a[3] {
			return nil, fmt.Errorf("-src %q: want a range like 127.0.0.2-127.0.0.9", part)
		}
		for x := int(a[3]); x <= int(b[3]); x++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)))
		}
	}
	if len(out) > 256 {
		return nil, errors.New("-src: at most 256 addresses")
	}
	return out, nil
}

// visitSet calls f with the name of every flag given on the command line.
func visitSet(f func(name string)) { flag.Visit(func(fl *flag.Flag) { f(fl.Name) }) }
