package job

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// registeredSince is node id's Since as the directory lists it.
func registeredSince(t *testing.T, dir NodeDirectory, id string) time.Time {
	t.Helper()
	nodes, err := dir.Nodes(context.Background())
	require.NoError(t, err)
	for _, n := range nodes {
		if n.ID == id {
			require.False(t, n.Since.IsZero(), "node %s registered without Since", id)
			return n.Since
		}
	}
	t.Fatalf("node %s not registered", id)
	return time.Time{}
}

// TestJobCatchesUpNodeThatJoinsLate: a node registers and a client of it
// joins a room while job, between two reads of the directory, does not
// list the node yet. The room pushes job fans out meanwhile skip the
// node, and are committed; when the node joins, job hands it those
// accepted since it registered (Node.Since), in order and before anything
// newer, and none accepted before.
func TestJobCatchesUpNodeThatJoinsLate(t *testing.T) {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	a := startCloudNodeConfig(t, cloud.Config{NodeID: "node-a", Store: router})
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, router)
	cfg.RefreshInterval = time.Hour // read at start, then only when a key push names an unknown node
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "node-a listed")

	ca := dialClient(t, a.tcpAddr, "ka", "live://1", 0)
	b := startCloudNodeConfig(t, cloud.Config{NodeID: "node-b", Store: router})
	cb := dialClient(t, b.tcpAddr, "kb", "live://1", 0)
	since := registeredSince(t, router, "node-b")

	early := roomMsg("live://1", "early")
	early.Accepted = since.Add(-time.Minute) // accepted before node-b registered, queued since
	src.publish(early, roomMsg("live://1", "r1"), roomMsg("live://1", "r2"))
	ca.waitFor(t, func(b []string) bool { return len(b) == 3 }, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.NotContains(t, j.Stats().Nodes, "node-b", "job has not read the directory since node-b registered")

	// A key push to node-b's client makes job read the directory: node-b
	// joins.
	key := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: "node-b",
		Keys: []string{"kb"}, Body: []byte("key"), Accepted: time.Now()}
	src.publish(key, roomMsg("live://1", "r3"))
	got := cb.waitFor(t, func(b []string) bool { return slices.Contains(b, "key") && slices.Contains(b, "r3") }, 5*time.Second)
	require.Equal(t, []string{"r1", "r2", "r3"}, slices.DeleteFunc(got, func(s string) bool { return s == "key" }),
		"the pushes accepted since node-b registered, in order, once each")
	require.Equal(t, []string{"early", "r1", "r2", "r3"}, ca.waitFor(t, func(b []string) bool { return len(b) == 4 }, 5*time.Second))
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	s := j.Stats()
	require.GreaterOrEqual(t, s.CaughtUp, uint64(2), "r1 and r2 (and r3 if it was fanned out before node-b joined)")
	require.Zero(t, s.CatchUpGaps)
}

// TestJobCatchUpTakesNoPartInCommits: what job hands a node that joins
// late was committed already, and a node that never acknowledges it
// holds up no commit.
func TestJobCatchUpTakesNoPartInCommits(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	b.set(func(n *testNode) { n.silent = true })
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	require.NoError(t, router.PutNode(ctx, a.node(), time.Minute))
	src := newMemQueue(t, 2)
	cfg := fastConfig(src, router)
	cfg.RefreshInterval = time.Hour
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "a listed")

	nb := b.node()
	nb.Since = time.Now()
	require.NoError(t, router.PutNode(ctx, nb, time.Minute))
	src.publish(roomMsg("live://1", "r1"), roomMsg("live://2", "r2"),
		&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("all"), Accepted: time.Now()})
	a.waitCount(t, 3, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed before b joins")

	signal(j.dir.refreshNow) // job reads the directory: b joins
	eventually(t, func() bool { return j.Stats().Nodes["b"].Lag == 3 }, 5*time.Second,
		"the three handed to b, in flight, never acknowledged")
	s := j.Stats()
	require.Equal(t, uint64(3), s.CaughtUp)
	require.Zero(t, s.Pending)
	require.True(t, src.allCommitted())
}

// TestJobCatchUpRecordBounds: the record keeps CatchUpMessages fan-outs;
// a node that joins after it dropped one the node needed gets what is
// left, and counts a gap. A paced broadcast caught up goes at the node's
// share of its pace.
func TestJobCatchUpRecordBounds(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	na := a.node()
	na.Conns = 30
	require.NoError(t, router.PutNode(ctx, na, time.Minute))
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, router)
	cfg.RefreshInterval = time.Hour
	cfg.CatchUpMessages = 2
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "a listed")

	nb := b.node()
	nb.Since, nb.Conns = time.Now(), 10
	require.NoError(t, router.PutNode(ctx, nb, time.Minute))
	paced := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Speed: 100,
		Body: []byte("paced"), Accepted: time.Now()}
	src.publish(roomMsg("live://1", "r1"), roomMsg("live://1", "r2"), paced, roomMsg("live://1", "r3"))
	a.waitCount(t, 4, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "committed before b joins")

	signal(j.dir.refreshNow)
	eventually(t, func() bool { _, ok := j.Stats().Nodes["b"]; return ok }, 5*time.Second, "b joined")
	src.publish(roomMsg("live://1", "r4"))
	got := b.waitCount(t, 3, 5*time.Second)
	require.Equal(t, []string{"paced", "r3", "r4"}, bodies(got, nil), "the two the record kept, then what followed")
	require.Equal(t, int32(25), got[0].Speed, "b's share: 100 x 10 of 40 connections")
	require.Equal(t, int32(100), a.messages()[2].Speed, "a alone when it was fanned out: the whole pace")
	s := j.Stats()
	require.Equal(t, uint64(2), s.CaughtUp)
	require.Equal(t, uint64(1), s.CatchUpGaps)
}
