package cloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
)

// The routers are cloud's stores, with the optional generation.
var (
	_ cloud.GenerationStore = (*redis.Router)(nil)
	_ cloud.GenerationStore = (*logic.MemoryRouter)(nil)
)

// recoveryBound is the documented bound: a node and its sessions are back
// within 5 s after Redis accepts connections again.
const recoveryBound = 5 * time.Second

// window is the routers' rebuild window in these tests: shorter than the
// default, longer than the node's check interval (the default, 1 s) plus
// its re-registration.
const window = 2 * time.Second

// TestStoreWipedRedis: Redis loses its data (restarted empty, FLUSHALL)
// under a node with many sessions. The node sees the new generation and
// registers itself and every session again within the bound; meanwhile a
// pusher's lookups fail with ErrRouterRebuilding, never answer "offline"
// for a user who is connected.
func TestStoreWipedRedis(t *testing.T) {
	for _, w := range testenv.RedisWipes() {
		t.Run(w.Name, func(t *testing.T) {
			srv := testenv.StartRedis(t)
			store, err := redis.NewRouter(redis.Config{Addr: srv.Addr, RebuildWindow: window})
			require.NoError(t, err)
			t.Cleanup(func() { _ = store.Close() })
			pusher, err := redis.NewRouter(redis.Config{Addr: srv.Addr, RebuildWindow: window})
			require.NoError(t, err)
			t.Cleanup(func() { _ = pusher.Close() })
			n := startNode(t, cloud.Config{Store: store, NodeID: "node-w", LinkAddr: "127.0.0.1:1",
				MaxConnsPerIP: -1, AcceptRate: -1, RoomCountInterval: time.Hour})

			const sessions = 1000
			keys := make([]string, sessions)
			mids := make([]int64, sessions)
			for i := range keys {
				mids[i] = int64(i + 1)
				keys[i] = dialRaw(t, n.tcpAddr, false).auth(1, goimAuth(mids[i], "", "live://w", 1000)).Key
			}
			ctx := context.Background()
			waitFor(t, "sessions stored", func() bool {
				got, err := pusher.NodesByKeys(ctx, keys)
				return err == nil && len(got) == sessions
			})

			w.Wipe(srv)
			back := time.Now()
			var recovered time.Duration
			for recovered == 0 {
				require.Less(t, time.Since(back), recoveryBound, "the node and its sessions are back within the bound")
				got, err := pusher.NodesByKeys(ctx, keys)
				if err == nil {
					require.Len(t, got, sessions)
					recovered = time.Since(back)
				} else {
					require.ErrorIs(t, err, logic.ErrRouterRebuilding, "a key not found during the rebuild is not offline")
				}
				got, err = pusher.NodesByMids(ctx, mids)
				if err == nil {
					require.Len(t, got, sessions, "a mid lookup answers in full or not at all")
				} else {
					require.ErrorIs(t, err, logic.ErrRouterRebuilding)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%d sessions registered again %v after Redis lost its data", sessions, recovered.Round(time.Millisecond))
			// The rebuild window ends: mids resolve in full.
			require.Eventually(t, func() bool {
				got, err := pusher.NodesByMids(ctx, mids)
				return err == nil && len(got) == sessions
			}, 2*window, 20*time.Millisecond)
			nodes, rebuilding, err := pusher.NodesRebuilding(ctx)
			require.NoError(t, err)
			require.Len(t, nodes, 1)
			assert.False(t, rebuilding)
			assert.Equal(t, sessions, nodes[0].Conns)
		})
	}
}
