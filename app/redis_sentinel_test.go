package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"papo/models"
	"papo/models/modelstest"
)

// redisSentinels is a private master, its replica, and three Sentinels
// that watch them under the name "papotest".
type redisSentinels struct {
	master, replica *redisServer
	sentinels       []*redisServer
}

const sentinelMaster = "papotest"

func startRedisSentinels(t *testing.T) *redisSentinels {
	t.Helper()
	requireRedis(t)
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("no redis-server binary: %v", err)
	}
	start := func(args ...string) *redisServer {
		port := freePort(t)
		s := &redisServer{url: "redis://127.0.0.1:" + port, port: port}
		dir := t.TempDir()
		if len(args) > 0 && args[0] == "--sentinel" {
			// A Sentinel rewrites its configuration file as it learns.
			conf := filepath.Join(dir, "sentinel.conf")
			must(t, os.WriteFile(conf, []byte(strings.Join(args[1:], "\n")+"\n"), 0o600))
			args = []string{conf, "--sentinel"}
		}
		args = append(args, "--port", port, "--bind", "127.0.0.1")
		s.cmd = exec.Command(path, args...)
		s.cmd.Dir = dir
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
		t.Cleanup(s.stop)
		client := plainClient(t, s)
		eventually(t, 10*time.Second, "redis-server answers", func() bool { return client.Ping(context.Background()).Err() == nil })
		return s
	}
	r := &redisSentinels{}
	r.master = start("--save", "", "--appendonly", "no")
	r.replica = start("--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", r.master.port)
	for range 3 {
		r.sentinels = append(r.sentinels, start("--sentinel",
			"sentinel monitor "+sentinelMaster+" 127.0.0.1 "+r.master.port+" 2",
			"sentinel down-after-milliseconds "+sentinelMaster+" 1000",
			"sentinel failover-timeout "+sentinelMaster+" 5000"))
	}
	ctx := context.Background()
	replica := plainClient(t, r.replica)
	eventually(t, 20*time.Second, "the replica has synced", func() bool {
		info, err := replica.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	for _, s := range r.sentinels {
		sentinel := plainClient(t, s)
		eventually(t, 30*time.Second, "each Sentinel knows the replica and the other Sentinels", func() bool {
			replicas, err1 := sentinel.Do(ctx, "SENTINEL", "REPLICAS", sentinelMaster).Slice()
			others, err2 := sentinel.Do(ctx, "SENTINEL", "SENTINELS", sentinelMaster).Slice()
			return err1 == nil && err2 == nil && len(replicas) == 1 && len(others) == 2
		})
	}
	return r
}

// url is what papo is given: the Sentinels, and the master's name.
func (r *redisSentinels) url() string {
	u := fmt.Sprintf("redis://127.0.0.1:%s/0?master_name=%s", r.sentinels[0].port, sentinelMaster)
	for _, s := range r.sentinels[1:] {
		u += "&addr=127.0.0.1:" + s.port
	}
	return u
}

// masterPort is the master's port as the first live Sentinel reports it.
func (r *redisSentinels) masterPort(t *testing.T) string {
	t.Helper()
	addr, err := plainClient(t, r.sentinels[1]).Do(context.Background(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinelMaster).StringSlice()
	if err != nil || len(addr) != 2 {
		return ""
	}
	return addr[1]
}

func TestRedisSentinelURLs(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		url     string
		refused string
	}{
		{"redis://127.0.0.1:26379/0?master_name=", "master_name is empty"},
		{"redis://127.0.0.1:26379/0?master_name=m&addr=nohost", "addr"},
		{"redis://127.0.0.1:26379/0?master_name=m&colour=blue", "unexpected option"},
	} {
		if c, err := newRedisClient(tc.url, "papo:", log); err == nil || !strings.Contains(err.Error(), tc.refused) {
			if c != nil {
				_ = c.Close()
			}
			t.Errorf("%s: err %v, want one saying %q", tc.url, err, tc.refused)
		}
	}
	c, err := newRedisClient("redis://127.0.0.1:26379/2?master_name=m&addr=127.0.0.2:26379", "papo:", log)
	must(t, err)
	defer c.Close()
	if got := redisAddr(c); got != "sentinel m via 127.0.0.1:26379,127.0.0.2:26379" {
		t.Fatalf("named in logs as %q", got)
	}
	if db := c.(*sentinelClient).Options().DB; db != 2 {
		t.Fatalf("database %d, want 2", db)
	}
}

// TestInstancesRideOutARedisSentinelFailover: two instances given the
// Sentinels of a master and its replica act as one server; when the
// master dies and the Sentinels promote the replica, the instances find
// the new master by themselves: presence is shared again, and the events
// only Redis carries between instances (typing) cross again.
func TestInstancesRideOutARedisSentinelFailover(t *testing.T) {
	r := startRedisSentinels(t)
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	user := func(name string) UserRef {
		u := &models.User{Username: name, PasswordHash: "x", CreatedAt: time.Now().UTC()}
		must(t, store.CreateUser(ctx, u))
		return UserRef{ID: u.ID, Name: name}
	}
	ana, bia, cy := user("ana"), user("bia"), user("cy")

	cfg, err := LoadConfig(func(string) string { return "" })
	must(t, err)
	cfg.RedisURL = r.url()
	cfg.RedisPrefix = "papotest:"
	cfg.LeaveGrace = 200 * time.Millisecond
	cfg.Limits.Enabled = false
	start := func() *App {
		a, err := New(ctx, cfg, store, slog.New(slog.DiscardHandler), Options{BcryptCost: 4})
		must(t, err)
		t.Cleanup(a.Close)
		if _, ok := a.Presence.(*RedisPresence).client.(*sentinelClient); !ok {
			t.Fatalf("the instance talks to Redis through a %T", a.Presence.(*RedisPresence).client)
		}
		return a
	}
	a, b := start(), start()
	open := func(inst *App, u UserRef) *Stream {
		st, err := inst.Chat.OpenStream(ctx, u, sweepSession(t, store, u, time.Now().Add(time.Hour)), "general", "")
		must(t, err)
		t.Cleanup(func() { st.Close(ctx) })
		return st
	}
	anaOnA := open(a, ana)
	open(b, bia)
	for name, inst := range map[string]*App{"a": a, "b": b} {
		if got, _ := inst.Presence.Online(ctx, "general"); !slices.Equal(got, []string{"ana", "bia"}) {
			t.Fatalf("online on %s: %v", name, got)
		}
	}
	res, err := b.Chat.Post(ctx, bia, "general", "hello through the master")
	must(t, err)
	waitForMessage(t, anaOnA, res.Message.ID, "hello through the master")

	typingCrosses := func() bool {
		must(t, b.Chat.SetTyping(ctx, bia, "general", true))
		defer func() { must(t, b.Chat.SetTyping(ctx, bia, "general", false)) }()
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			f := frameWithin(anaOnA.Sub, time.Until(deadline))
			if f == nil {
				return false
			}
			if strings.Contains(string(f.Bytes), "event: typing") && strings.Contains(string(f.Bytes), `"typing":true`) {
				return true
			}
		}
	}
	if !typingCrosses() {
		t.Fatal("typing does not cross before the failover")
	}

	r.master.stop()
	killed := time.Now()
	eventually(t, 30*time.Second, "the Sentinels promote the replica", func() bool { return r.masterPort(t) == r.replica.port })
	promoted := time.Since(killed)
	eventually(t, 30*time.Second, "typing crosses again", typingCrosses)
	crossing := time.Since(killed)
	open(b, cy)
	eventually(t, 30*time.Second, "a sees who joined on b", func() bool {
		got, err := a.Presence.Online(ctx, "general")
		return err == nil && slices.Equal(got, []string{"ana", "bia", "cy"}) && a.Presence.(*RedisPresence).usable()
	})
	t.Logf("replica promoted %v after the master died; typing crossed again after %v; presence shared again after %v",
		promoted.Round(10*time.Millisecond), crossing.Round(10*time.Millisecond), time.Since(killed).Round(10*time.Millisecond))
	if role, err := plainClient(t, r.replica).Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("the replica's role after the failover: %v, %v", role, err)
	}
}
