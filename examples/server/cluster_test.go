package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/metricstest"
	"github.com/imcloud/imcloud/internal/testenv"
)

// scrape GETs an admin listener's /metrics and parses it.
func scrape(t *testing.T, admin string) metricstest.Families {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return metricstest.Parse(t, resp.Body)
}

// cluster is redis-server, a Kafka-protocol broker, and the server binary
// as one logic, one job and two cloud processes, all on loopback.
type cluster struct {
	redis  *testenv.Redis
	kafka  *testenv.Kafka
	common []string
	api    string
	admin  string // job's admin listener
	logic  *proc
	job    *proc
	jobArg []string
	clouds [2]cloudProc
}

type cloudProc struct {
	*proc
	tcp, ws, admin string
}

const linkSecret = "e2e-link-secret"

// startCluster starts it; cloudArgs are added to each cloud process's
// flags.
func startCluster(t *testing.T, cloudArgs ...string) *cluster {
	c := &cluster{redis: testenv.StartRedis(t), kafka: testenv.StartKafka(t, "imcloud-push", "imcloud-push.events", "imcloud-push.upstream")}
	c.common = []string{"-redis-addr", c.redis.Addr, "-kafka-brokers", c.kafka.Brokers[0],
		"-link-secret", linkSecret, "-auth", "dev", "-log-level", "debug"}
	bound := make([]*boundProc, 0, 4)
	for i := range c.clouds {
		cp := &c.clouds[i]
		b := startBound(t, fmt.Sprintf("cloud-%d", i), func() ([]string, string) {
			cp.tcp, cp.ws, cp.admin = addr(t), addr(t), addr(t)
			return append([]string{"-role", "cloud", "-node-id", fmt.Sprintf("cloud-%d", i), "-tcp-addr", cp.tcp,
				"-ws-addr", cp.ws, "-link-addr", addr(t), "-admin-addr", cp.admin}, append(cloudArgs, c.common...)...), cp.admin
		})
		bound = append(bound, b)
	}
	logic := startBound(t, "logic", func() ([]string, string) {
		c.api = addr(t)
		return append([]string{"-role", "logic", "-http-addr", c.api}, c.common...), c.api
	})
	job := startBound(t, "job", func() ([]string, string) {
		c.admin = addr(t)
		c.jobArg = append([]string{"-role", "job", "-admin-addr", c.admin}, c.common...)
		return c.jobArg, c.admin
	})
	bound = append(bound, logic, job)
	for _, b := range bound {
		b.wait(t)
	}
	for i := range c.clouds {
		c.clouds[i].proc = bound[i].proc
	}
	c.logic, c.job = logic.proc, job.proc
	return c
}

// waitTargets pushes an op no client accepts until the router resolves
// mids to want keys: sessions are registered asynchronously.
func (c *cluster) waitTargets(t *testing.T, mids string, want int) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, r, err := tryPush(c.api, "/goim/push/mids?operation=1999&mids="+mids, "probe")
		return err == nil && code == http.StatusOK && r.Data.Keys == want
	}, 20*time.Second, 100*time.Millisecond, "mids %s resolve to %d keys", mids, want)
}

func mustPush(t *testing.T, api, path, body string) pushReply {
	t.Helper()
	code, r := push(t, api, path, body)
	require.Equal(t, http.StatusOK, code, "push %s: %+v", path, r)
	return r
}

func expectGo(t *testing.T, c *client.Client, body string) {
	t.Helper()
	select {
	case m := <-c.Messages():
		require.Equal(t, body, string(m.Body))
	case <-time.After(15 * time.Second):
		t.Fatalf("no push %q within 15s", body)
	}
}

func quietGo(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case m := <-c.Messages():
		t.Fatalf("unexpected push %q", m.Body)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestClusterProcesses runs the binary as separate processes with real
// Redis and Kafka-protocol backends and checks that every kind of push
// reaches exactly the right clients, then the faults: a job killed with
// SIGKILL mid-stream, Redis stopped for a few seconds, a cloud node killed.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes")
	}
	c := startCluster(t)
	outer := t // processes started in subtests live as long as the cluster
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// User 1 on both nodes (TCP on node 0, WebSocket on node 1); user 2 is
	// a raw goim client on node 1; user 3 on node 0 in another room.
	u1a, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: c.clouds[0].tcp, Mid: 1, Room: "live://1", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer u1a.Close()
	u1b, err := client.Dial(ctx, client.Config{Network: "ws", Addr: c.clouds[1].ws, Mid: 1, Room: "live://2", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer u1b.Close()
	u2 := dialRaw(t, c.clouds[1].tcp, 2, "live://1", []int32{1000})
	u3, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: c.clouds[0].tcp, Mid: 3, Room: "live://2", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer u3.Close()
	c.waitTargets(t, "1,2,3", 4)

	t.Run("pushes reach exactly their targets", func(t *testing.T) {
		r := mustPush(t, c.api, "/goim/push/keys?operation=1000&keys="+u1b.Auth().Key, "key")
		require.Equal(t, 1, r.Data.Keys)
		expectGo(t, u1b, "key")

		r = mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=1", "mid")
		require.Equal(t, 2, r.Data.Nodes, "user 1 has connections on both nodes")
		expectGo(t, u1a, "mid")
		expectGo(t, u1b, "mid")

		mustPush(t, c.api, "/goim/push/room?operation=1000&type=live&room=1", "room 1")
		expectGo(t, u1a, "room 1")
		u2.expect(t, 1000, "room 1")

		mustPush(t, c.api, "/goim/push/all?operation=1000", "everyone")
		expectGo(t, u1a, "everyone")
		expectGo(t, u1b, "everyone")
		u2.expect(t, 1000, "everyone")
		expectGo(t, u3, "everyone")

		quietGo(t, u1a)
		quietGo(t, u1b)
		quietGo(t, u3)
		u2.quiet(t)
	})

	t.Run("every role's metrics show the pushes", func(t *testing.T) {
		logic := scrape(t, c.api)
		metricstest.CheckConventions(t, logic, "imcloud_")
		metricstest.CheckDocumented(t, logic, "../../docs/metrics.md", "imcloud_redis_")
		require.Positive(t, logic["imcloud_redis_lookups_total"].GetMetric()[0].GetCounter().GetValue())
		require.Positive(t, logic["imcloud_logic_push_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount())

		job := scrape(t, c.admin)
		metricstest.CheckConventions(t, job, "imcloud_")
		require.Positive(t, job["imcloud_job_link_round_trip_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(),
			"job reaches the nodes over the link")
		require.NotEmpty(t, job["imcloud_job_commit_lag_seconds"].GetMetric())

		cloud := scrape(t, c.clouds[0].admin)
		metricstest.CheckConventions(t, cloud, "imcloud_")
		require.Positive(t, cloud["imcloud_cloud_link_connections"].GetMetric()[0].GetGauge().GetValue())
	})

	t.Run("job killed mid-stream loses nothing", func(t *testing.T) {
		const n = 300
		killed := make(chan struct{})
		go func() {
			time.Sleep(50 * time.Millisecond)
			c.job.kill()
			close(killed)
		}()
		for i := 0; i < n; i++ {
			mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=3", fmt.Sprint(i))
		}
		<-killed
		c.job = startProc(outer, "job-restarted", c.jobArg...)
		seen := map[string]bool{}
		deadline := time.After(60 * time.Second)
		for len(seen) < n {
			select {
			case m := <-u3.Messages():
				seen[string(m.Body)] = true
			case <-deadline:
				t.Fatalf("received %d of %d pushes after the job restart", len(seen), n)
			}
		}
	})

	t.Run("redis stopped: pushes fail clearly, then recover", func(t *testing.T) {
		c.redis.Stop()
		code, r := push(t, c.api, "/goim/push/mids?operation=1000&mids=3", "while redis is down")
		require.Equal(t, http.StatusInternalServerError, code)
		require.Equal(t, -500, r.Code)
		require.NotEmpty(t, r.Message, "the error says what failed")
		time.Sleep(2 * time.Second)
		c.redis.Start()
		// Redis came back empty: the nodes re-register their sessions.
		c.waitTargets(t, "3", 1)
		for drained := false; !drained; {
			select {
			case <-u3.Messages():
			case <-time.After(500 * time.Millisecond):
				drained = true
			}
		}
		mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=3", "after redis")
		expectGo(t, u3, "after redis")
	})

	t.Run("cloud node killed: its clients reconnect to the other", func(t *testing.T) {
		c.clouds[1].kill()
		// The client's failover: user 2 reconnects to the surviving node.
		moved, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: c.clouds[0].tcp, Mid: 2, Room: "live://1", Accepts: []int32{1000}})
		require.NoError(t, err)
		defer moved.Close()
		// The dead node's route stays in Redis until its session expires;
		// job stops targeting that node once its registration expires, and
		// meanwhile it holds up no one else. So: the old key and the new.
		c.waitTargets(t, "2", 2)
		mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=2", "moved")
		expectGo(t, moved, "moved")
		mustPush(t, c.api, "/goim/push/room?operation=1000&type=live&room=1", "room after kill")
		expectGo(t, moved, "room after kill")
		expectGo(t, u1a, "room after kill")
	})
}
