package cloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
)

// TestRestartSameNodeIDDropsOldRoutes: a node with an explicit id dies
// without removing its sessions (its store connection is gone, as after a
// SIGKILL) and a new process starts under the same id. Once the new one is
// registered, a pusher no longer finds the dead process's sessions, by key
// or by mid, rather than until their ttl.
func TestRestartSameNodeIDDropsOldRoutes(t *testing.T) {
	srv := testenv.StartRedis(t)
	newStore := func() *redis.Router {
		r, err := redis.NewRouter(redis.Config{Addr: srv.Addr})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	pusher := newStore()
	cfg := cloud.Config{NodeID: "n1", LinkAddr: "127.0.0.1:1", SessionTTL: 10 * time.Minute,
		Authenticator: cloud.DevAuthenticator(), LinkSecret: "s3cret",
		MaxConnsPerIP: -1, AcceptRate: -1, RoomCountInterval: time.Hour}

	oldStore := newStore()
	cfg.Store = oldStore
	old := startNode(t, cfg)
	key := dialRaw(t, old.tcpAddr, false).auth(1, goimAuth(7, "", "live://r", 1000)).Key
	ctx := context.Background()
	waitFor(t, "the session stored", func() bool {
		got, err := pusher.NodesByKeys(ctx, []string{key})
		return err == nil && got[key] == "n1"
	})
	// The crash: the old process never reaches the store again.
	require.NoError(t, oldStore.Close())

	cfg.Store = newStore()
	restarted, err := cloud.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = restarted.Shutdown(context.Background()) })

	got, err := pusher.NodesByKeys(ctx, []string{key})
	require.NoError(t, err)
	require.Empty(t, got, "the dead process's session is not routed by key")
	got, err = pusher.NodesByMids(ctx, []int64{7})
	require.NoError(t, err)
	require.Empty(t, got, "nor by mid")
	nodes, err := pusher.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	require.Equal(t, "n1", nodes[0].ID)
}
