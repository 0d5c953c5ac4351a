package redis_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/require"
)

// BenchmarkRedisShardCost measures what a push costs the redis-servers of
// a router over 1, 2 and 3 of them: 10,000 users, one connection each, on
// 4 nodes; then the lookups logic makes for a push (NodesByMids of one
// mid, of 100 mids, NodesByKeys of one key), a node's renewal of 512 of
// its sessions (PutSessions) and of its registration (PutNode), and job's
// history appends (History.Append of 64 pushes to 10,000 user streams),
// one call at a time. It reports, per push (session, renewal, append), in
// total and per shard (s0, s1, s2): the calls the router sent (redis-calls: script
// calls, MGET, PING), the commands Redis executed (redis-ops: INFO
// commandstats, which counts those a script runs too, the benchmark's own
// INFO left out) and the redis-servers' CPU time (utime+stime in /proc):
// what a Redis spends, not how many calls per second the machine running
// every process makes. One call at a time is one push's own cost:
// concurrent lookups share round trips and cost less. cluster=3 is the
// router over a 3-master Redis Cluster (16 hash-tag shards; s0, s1, s2
// are the masters).
func BenchmarkRedisShardCost(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			srvs := make([]*testenv.Redis, n)
			addrs := make([]string, n)
			for i := range srvs {
				srvs[i] = testenv.StartRedis(b)
				addrs[i] = srvs[i].Addr
			}
			benchShardCost(b, srvs, redis.Config{Addrs: addrs})
		})
	}
	b.Run("cluster=3", func(b *testing.B) {
		c := testenv.StartRedisCluster(b, 3)
		benchShardCost(b, c.Nodes, redis.Config{Addrs: c.Addrs, Cluster: true})
	})
}

// benchShardCost measures the router of cfg over the redis-servers srvs.
func benchShardCost(b *testing.B, srvs []*testenv.Redis, cfg redis.Config) {
	const users, nodes, batch = 10_000, 4, 512
	conns := make([]redigo.Conn, len(srvs))
	for i := range srvs {
		c, err := redigo.Dial("tcp", srvs[i].Addr)
		require.NoError(b, err)
		b.Cleanup(func() { _ = c.Close() })
		conns[i] = c
	}
	r := newRedisRouter(b, cfg)
	ctx := context.Background()
	for n := range nodes {
		require.NoError(b, r.PutNode(ctx, imcloud.Node{ID: fmt.Sprintf("node-%d", n)}, time.Hour))
	}
	sessions := make([]imcloud.Session, users)
	mids := make([]int64, users)
	keys := make([]string, users)
	for i := range sessions {
		mids[i], keys[i] = int64(i+1), fmt.Sprintf("key-%d", i)
		sessions[i] = imcloud.Session{Mid: mids[i], Key: keys[i], Node: fmt.Sprintf("node-%d", i%nodes),
			Gen: uint64(i + 1), Accepts: []int32{1000}, Since: time.Now()}
	}
	for at := 0; at < users; at += batch {
		require.NoError(b, r.PutSessions(ctx, sessions[at:min(at+batch, users)], time.Hour))
	}
	lookup := func(want int, got map[string]string, err error) error {
		if err == nil && len(got) != want {
			err = fmt.Errorf("%d routes, want %d", len(got), want)
		}
		return err
	}

	b.Run("mids=1", func(b *testing.B) {
		measureShards(b, srvs, conns, 1, "push", func(i int) error {
			got, err := r.NodesByMids(ctx, mids[i%users:i%users+1])
			return lookup(1, got, err)
		})
	})
	b.Run("mids=100", func(b *testing.B) {
		measureShards(b, srvs, conns, 1, "push", func(i int) error {
			at := (i * 100) % users
			got, err := r.NodesByMids(ctx, mids[at:at+100])
			return lookup(100, got, err)
		})
	})
	b.Run("keys=1", func(b *testing.B) {
		measureShards(b, srvs, conns, 1, "push", func(i int) error {
			got, err := r.NodesByKeys(ctx, keys[i%users:i%users+1])
			return lookup(1, got, err)
		})
	})
	b.Run("put=512", func(b *testing.B) {
		measureShards(b, srvs, conns, batch, "session", func(i int) error {
			at := (i * batch) % (users - batch)
			return r.PutSessions(ctx, sessions[at:at+batch], time.Hour)
		})
	})
	b.Run("node", func(b *testing.B) {
		measureShards(b, srvs, conns, 1, "renewal", func(i int) error {
			return r.PutNode(ctx, imcloud.Node{ID: fmt.Sprintf("node-%d", i%nodes)}, time.Hour)
		})
	})
	h := redis.NewHistory(r, redis.HistoryConfig{})
	items := make([]imcloud.HistoryAppend, 64)
	body := make([]byte, 100)
	off := int64(0) // across the runs of the sub-benchmark: every append is a new push
	b.Run("history=64", func(b *testing.B) {
		measureShards(b, srvs, conns, len(items), "append", func(int) error {
			for j := range items {
				items[j] = imcloud.HistoryAppend{Stream: imcloud.UserStream(1 + off%users), Entry: imcloud.HistoryEntry{
					Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: body, Accepted: time.Now()}}
				off++
			}
			return h.Append(ctx, items)
		})
	})
}

// measureShards runs op b.N times, each op being per units of what unit
// names, and reports the commands and CPU time of the servers per unit.
func measureShards(b *testing.B, srvs []*testenv.Redis, conns []redigo.Conn, per int, unit string, op func(i int) error) {
	before := make([]shardCost, len(srvs))
	for i := range srvs {
		before[i] = readShardCost(b, srvs[i], conns[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	units := float64(b.N * per)
	var total shardCost
	byName := map[string]int64{}
	for i := range srvs {
		after := readShardCost(b, srvs[i], conns[i])
		d := after.since(before[i])
		total.calls, total.ops, total.cpu = total.calls+d.calls, total.ops+d.ops, total.cpu+d.cpu
		for name, n := range after.byName {
			byName[name] += n - before[i].byName[name]
		}
		if len(srvs) > 1 {
			d.report(b, units, fmt.Sprintf("s%d-", i), unit)
		}
	}
	total.report(b, units, "redis-", unit)
	names := make([]string, 0, len(byName))
	for name, calls := range byName {
		if calls > 0 {
			names = append(names, fmt.Sprintf("%s=%d", name, calls))
		}
	}
	slices.Sort(names)
	b.Logf("%d ops: commands %s", b.N, strings.Join(names, " "))
}

// shardCost is one redis-server's counters at a moment, or their
// growth over a run: calls per command (INFO commandstats, which counts
// the commands a script runs too), calls sent by a client, commands
// executed, and the process's CPU time.
type shardCost struct {
	byName     map[string]int64
	calls, ops int64
	cpu        time.Duration
}

// since is the growth of the counters from before to c.
func (c shardCost) since(before shardCost) shardCost {
	return shardCost{calls: c.calls - before.calls, ops: c.ops - before.ops, cpu: c.cpu - before.cpu}
}

// report reports the counters (a growth) per unit of what unit names.
func (c shardCost) report(b *testing.B, units float64, prefix, unit string) {
	b.ReportMetric(float64(c.calls)/units, prefix+"calls/"+unit)
	b.ReportMetric(float64(c.ops)/units, prefix+"ops/"+unit)
	b.ReportMetric(float64(c.cpu.Microseconds())/units, prefix+"cpu-us/"+unit)
}

// clientCall reports whether command name (as commandstats names it) is
// one the router sends itself rather than one its scripts run: a script
// call or load, MGET (the lookups of keys) or PING. The scripts call
// neither of these.
func clientCall(name string) bool {
	return strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "script|") || name == "mget" || name == "ping"
}

func readShardCost(b *testing.B, srv *testenv.Redis, c redigo.Conn) shardCost {
	b.Helper()
	info, err := redigo.String(c.Do("INFO", "commandstats"))
	require.NoError(b, err)
	cost := shardCost{byName: map[string]int64{}}
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for kv := range strings.SplitSeq(stats, ",") {
			v, ok := strings.CutPrefix(kv, "calls=")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(b, err, line)
			cost.byName[name] = n
			if name == "info" { // the benchmark's own
				continue
			}
			cost.ops += n
			if clientCall(name) {
				cost.calls += n
			}
		}
	}
	cost.cpu, err = processCPU(srv.Pid())
	require.NoError(b, err)
	return cost
}

// userHZ is the unit of /proc's CPU times: Linux's USER_HZ, 100 on every
// architecture Go runs these tests on.
const userHZ = 100

// processCPU is the user plus system CPU time of process pid so far, from
// /proc/<pid>/stat (fields 14 and 15, after the command name in
// parentheses).
func processCPU(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the name", pid, len(fields))
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime: fields 14 and 15 of the line
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
