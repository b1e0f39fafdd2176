package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestInstancesRideOutARedisSentinelFailover: the master dies and the
// Sentinels promote its replica; the instances, given the Sentinels, find
// the new master by themselves (see rideOutFailover).
func TestInstancesRideOutARedisSentinelFailover(t *testing.T) {
	r := startRedisSentinels(t)
	rideOutFailover(t, r.url(), "papotest:", r.master.stop, func() bool { return r.masterPort(t) == r.replica.port })
	role, err := plainClient(t, r.replica).Do(context.Background(), "ROLE").Slice()
	if err != nil || role[0] != "master" {
		t.Fatalf("the replica's role after the failover: %v, %v", role, err)
	}
}
