package job

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/stretchr/testify/require"
)

const childEnv = "IMCLOUD_JOB_CRASH_CHILD"

// TestCrashChildProcess is the job process that TestCrashRedelivers and
// TestHistoryCrashRedelivers start and kill; it does nothing in a normal
// run.
func TestCrashChildProcess(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("only runs as the child of a crash test")
	}
	// brokers|topic|group|node id|link addr[|redis addr: history on]
	f := strings.Split(spec, "|")
	require.True(t, len(f) == 5 || len(f) == 6, "spec %q", spec)
	src, err := kafka.NewSource(kafka.SourceConfig{Brokers: strings.Split(f[0], ","), Topic: f[1], GroupID: f[2],
		CommitInterval: 50 * time.Millisecond, SessionTimeout: 6 * time.Second})
	require.NoError(t, err)
	cfg := fastConfig(src, newMemDir(imcloud.Node{ID: f[3], LinkAddr: f[4]}))
	if len(f) == 6 {
		cfg.Users, cfg.History = redisHistory(t, f[5])
	}
	j, err := New(cfg)
	require.NoError(t, err)
	_ = j.Run(context.Background()) // until killed
}

// startCrashChild starts TestCrashChildProcess in a subprocess with spec.
func startCrashChild(t *testing.T, spec ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChildProcess$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(spec, "|"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	return cmd
}

// TestCrashRedelivers streams 10,000 numbered pushes through Kafka to a
// client on a real gateway while the job is stopped cleanly once and
// killed (a subprocess, SIGKILL) once, and checks that every push reached
// the client.
func TestCrashRedelivers(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: a few seconds of Kafka group rebalancing")
	}
	k := testenv.StartKafka(t)
	topic, group := uniqueName("crash"), uniqueName("crash-group")
	node := startCloudNode(t, "node-crash", 1<<15)
	c := dialClient(t, node.tcpAddr, "k1", "", 1<<15)
	pub := newSaramaPublisher(t, k.Brokers, topic)
	dir := newMemDir(node.node())

	const total = 10000
	var published atomic.Int64
	pubDone := make(chan error, 1)
	go func() {
		for i := 0; i < total; i += 50 {
			var batch []*imcloud.Message
			for k := i; k < i+50; k++ {
				batch = append(batch, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000,
					Node: node.node().ID, Keys: []string{"k1"}, Body: []byte(strconv.Itoa(k))})
			}
			if err := pub.Publish(context.Background(), batch); err != nil {
				pubDone <- err
				return
			}
			published.Add(50)
			time.Sleep(2 * time.Millisecond) // a stream, not one burst
		}
		pubDone <- nil
	}()
	distinct := func(b []string) int {
		seen := map[string]bool{}
		for _, s := range b {
			seen[s] = true
		}
		return len(seen)
	}
	atLeast := func(n int) func([]string) bool { return func(b []string) bool { return distinct(b) >= n } }

	// 1. An in-process job, stopped cleanly mid-stream.
	src := openKafkaSource(t, k.Brokers, group, topic)
	j, err := New(fastConfig(src, dir))
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- j.Run(context.Background()) }()
	c.waitFor(t, atLeast(1500), 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	require.NoError(t, j.Shutdown(ctx))
	cancel()
	require.NoError(t, <-runErr)
	require.NoError(t, src.Close())
	stopped := distinct(c.bodies())

	// 2. A job in a subprocess, killed without any shutdown.
	cmd := startCrashChild(t, strings.Join(k.Brokers, ","), topic, group, node.node().ID, node.linkAddr)
	c.waitFor(t, atLeast(stopped+2000), 60*time.Second)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	killedAt := distinct(c.bodies())
	t.Logf("stopped cleanly at %d distinct, killed at %d, published %d", stopped, killedAt, published.Load())

	// 3. A new job takes over (after the group drops the dead member).
	src2 := openKafkaSource(t, k.Brokers, group, topic)
	defer src2.Close()
	startJob(t, fastConfig(src2, dir))
	require.NoError(t, <-pubDone)
	got := c.waitFor(t, atLeast(total), 90*time.Second)
	seen := map[string]bool{}
	for _, s := range got {
		seen[s] = true
	}
	for i := 0; i < total; i++ {
		require.True(t, seen[strconv.Itoa(i)], "push %d reached the client", i)
	}
	require.Zero(t, c.c.Dropped(), "the client's buffer held everything")
	t.Log(fmt.Sprintf("client received %d pushes for %d published (redeliveries the gateway did not drop: %d)",
		len(got), total, len(got)-total))
}
