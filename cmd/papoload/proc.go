package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux that Go supports.
const clockTicks = 100

// listenerPid finds the process listening on the TCP port, through
// /proc/net/tcp{,6} (the socket's inode) and /proc/*/fd (who holds it).
func listenerPid(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err == nil && inodes[link] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds the listener on port %d", port)
}

// rssKiB reads VmRSS of the pids, summed.
func rssKiB(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return 0, err
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				fs := strings.Fields(rest)
				n, err := strconv.ParseInt(fs[0], 10, 64)
				if err != nil {
					return 0, err
				}
				sum += n
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("pid %d: no VmRSS", pid)
		}
	}
	return sum, nil
}

// cpuTime reads utime+stime of the pids, summed.
func cpuTime(pids []int) (time.Duration, error) {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// The command name (field 2) may hold spaces; fields count from
		// the closing parenthesis.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, errors.New("unreadable /proc stat")
		}
		fs := strings.Fields(s[i+1:])
		// After ")": state is field 3, so utime (14) and stime (15) are
		// at indexes 11 and 12.
		if len(fs) < 13 {
			return 0, errors.New("short /proc stat")
		}
		u, err1 := strconv.ParseInt(fs[11], 10, 64)
		st, err2 := strconv.ParseInt(fs[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, errors.New("unreadable utime/stime")
		}
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// schedTimes sums, over every thread of the pids, the time spent on a
// CPU and the time spent ready to run but waiting for one, from
// /proc/PID/task/TID/schedstat. These count nanoseconds where utime and
// stime count 10 ms ticks: fine enough for one message's share. A thread
// that has ended takes its time with it; Go's rarely end.
func schedTimes(pids []int) (onCPU, waiting time.Duration, err error) {
	for _, pid := range pids {
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		if len(files) == 0 {
			return 0, 0, fmt.Errorf("pid %d: no /proc schedstat", pid)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread ended meanwhile
			}
			run, wait, err := parseSchedstat(string(b))
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", f, err)
			}
			onCPU += run
			waiting += wait
		}
	}
	return onCPU, waiting, nil
}

// parseSchedstat reads a schedstat line: nanoseconds on a CPU,
// nanoseconds waiting on a run queue, and the count of time slices.
func parseSchedstat(line string) (run, wait time.Duration, err error) {
	fs := strings.Fields(line)
	if len(fs) < 2 {
		return 0, 0, errors.New("short schedstat")
	}
	r, err1 := strconv.ParseInt(fs[0], 10, 64)
	w, err2 := strconv.ParseInt(fs[1], 10, 64)
	if err1 != nil || err2 != nil || r < 0 || w < 0 {
		return 0, 0, fmt.Errorf("unreadable schedstat %q", line)
	}
	return time.Duration(r), time.Duration(w), nil
}

// serverSample is what the server's process and /metrics say at one moment.
type serverSample struct {
	at      time.Time
	cpu     time.Duration
	rss     int64
	sent    float64 // papo_events_sent_total, summed over instances
	stored  float64 // papo_messages_stored_total
	dropped float64 // papo_events_dropped_total
	open    float64 // papo_streams_open
	ok      bool    // cpu and rss are known
}

func sampleServer(ctx context.Context, cfg *config) serverSample {
	s := serverSample{at: time.Now()}
	if len(cfg.pids) > 0 {
		cpu, err1 := cpuTime(cfg.pids)
		rss, err2 := rssKiB(cfg.pids)
		s.cpu, s.rss, s.ok = cpu, rss, err1 == nil && err2 == nil
	}
	for _, u := range cfg.urls {
		m, err := scrapeMetrics(ctx, u.String()+"/metrics")
		if err != nil {
			continue
		}
		s.sent += m["papo_events_sent_total"]
		s.stored += m["papo_messages_stored_total"]
		s.dropped += m["papo_events_dropped_total"]
		s.open += m["papo_streams_open"]
	}
	return s
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// scrapeMetrics reads the unlabelled samples of a Prometheus text page.
func scrapeMetrics(ctx context.Context, u string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "papo_") || strings.ContainsRune(line, '{') {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out, sc.Err()
}

// profiler takes the server's CPU profile over the measured phase and a
// heap profile at its end, from the opt-in pprof listener.
type profiler struct {
	cfg   *config
	done  chan error
	start time.Time
}

func startProfile(ctx context.Context, cfg *config, seconds int) *profiler {
	if cfg.pprof == "" || cfg.cpuprofile == "" {
		return nil
	}
	p := &profiler{cfg: cfg, done: make(chan error, 1), start: time.Now()}
	go func() {
		p.done <- fetch(ctx, "http://"+cfg.pprof+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds),
			filepath.Join(cfg.cpuprofile, "cpu.pprof"), time.Duration(seconds+30)*time.Second)
	}()
	return p
}

func (p *profiler) finish(ctx context.Context) {
	if p == nil {
		return
	}
	if err := fetch(ctx, "http://"+p.cfg.pprof+"/debug/pprof/heap", filepath.Join(p.cfg.cpuprofile, "heap.pprof"), 30*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "papoload: heap profile:", err)
	}
	if err := <-p.done; err != nil {
		fmt.Fprintln(os.Stderr, "papoload: cpu profile:", err)
	}
	fmt.Printf("profiles: %s/cpu.pprof, %s/heap.pprof\n", p.cfg.cpuprofile, p.cfg.cpuprofile)
}

func fetch(ctx context.Context, u, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
