package job

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/require"
)

// redisHistory is package redis's router (the users' connections) and
// history over one Redis.
func redisHistory(t testing.TB, addr string) (*redis.Router, *redis.History) {
	t.Helper()
	r, err := redis.NewRouter(redis.Config{Addr: addr})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r, redis.NewHistory(r, redis.HistoryConfig{})
}

// TestHistoryCrashRedelivers streams pushes to users and a room through
// Kafka to a job with history on in Redis, kills the job (a subprocess,
// SIGKILL) mid-stream and lets another take over: redeliveries keep their
// stream, epoch and offset, no offset names two pushes, and the history
// in Redis holds each push once.
func TestHistoryCrashRedelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: a few seconds of Kafka group rebalancing")
	}
	k := testenv.StartKafka(t)
	rs := testenv.StartRedis(t)
	topic, group := uniqueName("hist-crash"), uniqueName("hist-crash-group")
	pub := newSaramaPublisher(t, k.Brokers, topic)
	a := startTestNode(t, "a", secret)
	users, h := redisHistory(t, rs.Addr)
	require.NoError(t, users.PutSessions(context.Background(), streamSessions("a"), time.Hour))
	const rounds = 300
	var published atomic.Int64
	pubDone := streamPushes(pub, rounds, &published)

	// 1. A job in a subprocess, killed without any shutdown.
	cmd := startCrashChild(t, strings.Join(k.Brokers, ","), topic, group, "a", a.addr, rs.Addr)
	a.waitCount(t, 400, 60*time.Second)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	t.Logf("killed after %d deliveries, %d of %d records published", len(a.messages()), published.Load(), rounds*6)

	// 2. A new job takes over (after the group drops the dead member).
	src := openKafkaSource(t, k.Brokers, group, topic)
	defer src.Close()
	startJob(t, historyConfig(src, newMemDir(a.node()), users, h))
	require.NoError(t, <-pubDone)
	all := waitRedelivered(t, a, h, rounds*5, historyStreams, rounds)
	t.Logf("%d deliveries of %d pushes", len(all), rounds*5)
}
