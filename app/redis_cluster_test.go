package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"papo/models"
	"papo/models/modelstest"
)

// redisCluster is a private Redis Cluster of three masters, each a
// redis-server of the test's own, and, when asked for, a replica of each.
type redisCluster struct {
	masters  []*redisServer
	replicas []*redisServer
}

// clusterSlots is the range of slots master i holds.
func clusterSlots(i int) (first, last int64) {
	return int64(i * 16384 / 3), int64((i+1)*16384/3 - 1)
}

// startRedisCluster starts three cluster-enabled masters (and a replica
// of each, with replicas), gives each master a third of the slots, and
// waits until every node says the cluster is ok.
func startRedisCluster(t *testing.T, replicas bool) *redisCluster {
	t.Helper()
	requireRedis(t) // says whether Redis is installed at all, strictly or not
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("no redis-server binary: %v", err)
	}
	c := &redisCluster{}
	buses := map[*redisServer]string{}
	node := func() *redisServer {
		port, bus := freePort(t), freePort(t)
		s := &redisServer{url: "redis://127.0.0.1:" + port, port: port}
		s.cmd = exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--cluster-enabled", "yes", "--cluster-port", bus, "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000")
		s.cmd.Dir = t.TempDir()
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
		t.Cleanup(s.stop)
		buses[s] = bus
		return s
	}
	for range 3 {
		c.masters = append(c.masters, node())
		if replicas {
			c.replicas = append(c.replicas, node())
		}
	}
	ctx := context.Background()
	all := append(slices.Clone(c.masters), c.replicas...)
	first := plainClient(t, all[0])
	for _, s := range all {
		client := plainClient(t, s)
		eventually(t, 10*time.Second, "redis-server answers", func() bool { return client.Ping(ctx).Err() == nil })
		if s != all[0] {
			// The bus port too: it is not the default, port + 10000.
			must(t, first.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", s.port, buses[s]).Err())
		}
	}
	for i, s := range c.masters {
		first, last := clusterSlots(i)
		must(t, plainClient(t, s).Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err())
	}
	for i, s := range c.replicas {
		id, err := plainClient(t, c.masters[i]).Do(ctx, "CLUSTER", "MYID").Text()
		must(t, err)
		replica := plainClient(t, s)
		eventually(t, 10*time.Second, "the replica knows its master", func() bool {
			return replica.Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
		})
	}
	for _, s := range c.replicas {
		// A replica that has not synced yet would not stand for election.
		replica := plainClient(t, s)
		eventually(t, 20*time.Second, "the replica has synced", func() bool {
			info, err := replica.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(info, "master_link_status:up")
		})
	}
	eventually(t, 20*time.Second, "the cluster is ok on every node", func() bool {
		for _, s := range all {
			info, err := plainClient(t, s).ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(all))) {
				return false
			}
		}
		return true
	})
	return c
}

// plainClient is a client of s alone, which follows no redirect.
func plainClient(t *testing.T, s *redisServer) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(s.url)
	must(t, err)
	client := redis.NewClient(opt)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// holder returns the index of the master that holds key's slot.
func (c *redisCluster) holder(t *testing.T, key string) int {
	t.Helper()
	slot, err := plainClient(t, c.masters[0]).ClusterKeySlot(context.Background(), key).Result()
	must(t, err)
	for i := range c.masters {
		if first, last := clusterSlots(i); first <= slot && slot <= last {
			return i
		}
	}
	t.Fatalf("no master holds slot %d", slot)
	return -1
}

// seedAwayFrom returns the URL of a master that does not hold key's
// slot, so that papo, given it, must find the cluster's layout to reach
// its keys.
func (c *redisCluster) seedAwayFrom(t *testing.T, key string) string {
	t.Helper()
	return c.masters[(c.holder(t, key)+1)%len(c.masters)].url
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestRedisClusterNeedsAHashTag: on a cluster, a prefix whose keys would
// scatter over slots is refused at start, with the reason, rather than
// failing on every script call later.
func TestRedisClusterNeedsAHashTag(t *testing.T) {
	c := startRedisCluster(t, false)
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		url, prefix string
		cluster     bool   // a cluster client
		refused     string // part of the error, if refused
	}{
		{c.masters[0].url, "papo:", false, "must hold a hash tag"},
		{c.masters[0].url, "{}papo:", false, "must hold a hash tag"},
		{c.masters[0].url, "papo{:", false, "must hold a hash tag"},
		{c.masters[0].url + "/2", "{papo}:", false, "database 0 alone"},
		{c.masters[1].url, "{papo}:", true, ""},
		{c.masters[2].url + "/0", "chat:{papo}:", true, ""},
	}
	for _, tc := range cases {
		client, err := newRedisClient(tc.url, tc.prefix, log)
		if tc.refused != "" {
			if err == nil || !strings.Contains(err.Error(), tc.refused) {
				t.Errorf("%s with prefix %q: err %v, want one saying %q", tc.url, tc.prefix, err, tc.refused)
			}
			if client != nil {
				_ = client.Close()
			}
			continue
		}
		must(t, err)
		if _, ok := client.(*redis.ClusterClient); ok != tc.cluster {
			t.Errorf("%s: a cluster client %v, want %v", tc.url, ok, tc.cluster)
		}
		_ = client.Close()
	}
	// A plain Redis stays a plain client, whatever the prefix.
	plain, err := newRedisClient(requireRedis(t), "papo:", log)
	must(t, err)
	defer plain.Close()
	if _, ok := plain.(*redis.Client); !ok {
		t.Fatalf("a plain Redis got a %T", plain)
	}
}

// TestTwoInstancesOnARedisCluster: two instances given a node of a Redis
// Cluster that does not hold their keys' slot act as one server, as they
// do on a plain Redis: a message posted on one reaches a stream on the
// other, a user joins once, the online list and the stream caps are the
// cluster's, and the rate limit is shared.
func TestTwoInstancesOnARedisCluster(t *testing.T) {
	c := startRedisCluster(t, false)
	prefix := "{papotest}:"
	store := modelstest.Open(t, models.SQLite)
	ctx := context.Background()
	ana, bia := namedUser(t, store, "ana"), namedUser(t, store, "bia")
	cfg := redisConfig(t, c.seedAwayFrom(t, prefix+"presence:instances"), prefix)
	cfg.Limits.Enabled = true
	cfg.Limits.StreamsPerUser = 2
	cfg.Limits.MessageRate = 0.001
	cfg.Limits.MessageBurst = 3
	insts := startInstances(t, cfg, store, 2)
	a, b := insts[0], insts[1]
	if _, ok := a.Presence.(*RedisPresence).client.(*redis.ClusterClient); !ok {
		t.Fatalf("the instance talks to the cluster through a %T", a.Presence.(*RedisPresence).client)
	}
	open := func(inst *App, u UserRef) *Stream {
		t.Helper()
		release, err := inst.Streams.Acquire(ctx, u.ID, "127.0.0.1")
		must(t, err)
		t.Cleanup(release)
		return openStream(t, inst, store, u)
	}
	onA := open(a, ana)
	onB := open(b, bia)
	open(b, ana) // ana's second stream, on the other instance

	// The stream cap counts ana's streams on both instances.
	if _, err := a.Streams.Acquire(ctx, ana.ID, "127.0.0.1"); err == nil {
		t.Fatal("a third stream of ana's was let in: the cap is per instance, not the cluster's")
	}
	for name, inst := range map[string]*App{"a": a, "b": b} {
		if got, _ := inst.Presence.Online(ctx, "general"); !slices.Equal(got, []string{"ana", "bia"}) {
			t.Fatalf("online on %s: %v", name, got)
		}
	}

	res, err := a.Chat.Post(ctx, ana, "general", "hello across the cluster")
	must(t, err)
	waitForMessage(t, onB, res.Message.ID, "hello across the cluster")
	waitForMessage(t, onA, res.Message.ID, "hello across the cluster")

	// Three posts in a burst, from either instance, use ana's burst up.
	_, err = b.Chat.Post(ctx, ana, "general", "two")
	must(t, err)
	_, err = a.Chat.Post(ctx, ana, "general", "three")
	must(t, err)
	var limited *Error
	if _, err := b.Chat.Post(ctx, ana, "general", "four"); !errors.As(err, &limited) || limited.Kind != KindRateLimited {
		t.Fatalf("a fourth post in the burst: %v, want 429 from the shared limit", err)
	}

	joins := 0
	msgs, err := store.MessagesAfter(ctx, 0, 100)
	must(t, err)
	for _, m := range msgs {
		if m.Kind == models.KindSystem && m.Event == models.EventJoin && m.UserID == ana.ID {
			joins++
		}
	}
	if joins != 1 {
		t.Fatalf("ana, on two instances, joined %d times", joins)
	}
}

// TestInstancesRideOutARedisClusterFailover: the master that holds papo's
// slot dies. Once its replica has taken over, the instances find it by
// themselves (see rideOutFailover).
func TestInstancesRideOutARedisClusterFailover(t *testing.T) {
	c := startRedisCluster(t, true)
	prefix := "{papotest}:"
	holder := c.holder(t, prefix+"presence:instances")
	replica := plainClient(t, c.replicas[holder])
	rideOutFailover(t, c.seedAwayFrom(t, prefix+"presence:instances"), prefix, c.masters[holder].stop, func() bool {
		role, err := replica.Do(context.Background(), "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
}
