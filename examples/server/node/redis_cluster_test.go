package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/require"
)

// TestRedisClusterBackend runs two cloud nodes, logic and job over a
// 3-master Redis Cluster (-redis-cluster, the seeds in -redis-addr): a
// mids push finds the users on either node and names the offline ones,
// and a room push reaches the room's members on both nodes. History is on
// (the default): job appends every push to its stream's shard of the
// Cluster before delivering it, so a push arrives only when that worked.
func TestRedisClusterBackend(t *testing.T) {
	rc := testenv.StartRedisCluster(t, 3)
	kf := testenv.StartKafka(t, "imcloud-push", "imcloud-push.events", "imcloud-push.upstream")
	common := []string{"-redis-addr", strings.Join(rc.Addrs, ","), "-redis-cluster",
		"-kafka-brokers", kf.Brokers[0], "-link-secret", "cluster-link-secret", "-auth", "dev",
		"-log-level", "warn", "-admin-addr", "127.0.0.1:0"}
	c := &roomsCluster{}
	for i := range 2 {
		c.clouds = append(c.clouds, runApp(t, append([]string{"-role", "cloud", "-node-id", fmt.Sprintf("cloud-%d", i),
			"-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-link-addr", "127.0.0.1:0"}, common...)))
	}
	c.logic = runApp(t, append([]string{"-role", "logic", "-http-addr", "127.0.0.1:0"}, common...))
	c.job = runApp(t, append([]string{"-role", "job"}, common...))
	c.waitJobNodes(t, 2)

	a, b := c.dial(t, 0, 1, "cluster-a", ""), c.dial(t, 1, 2, "cluster-b", "")
	require.Equal(t, []int64{3}, pushOffline(t, c, []int64{1, 2, 3}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inboxes := []*inbox{collect(a), collect(b)}
	for _, cl := range []*client.Client{a, b} {
		_, err := cl.Join(ctx, "live://cluster")
		require.NoError(t, err)
	}
	c.pushRoom(t, "live://cluster", "to the room")
	for i, in := range inboxes {
		require.True(t, in.waitBody("to the room", 10*time.Second), "client %d did not get the room push", i)
	}
}
