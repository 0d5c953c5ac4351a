package cloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/logic"
)

// slowPuts is the memory router with session puts that take a while, as a
// busy Redis's do.
type slowPuts struct {
	*logic.MemoryRouter
	delay time.Duration
}

func (s slowPuts) PutSessions(ctx context.Context, ss []imcloud.Session, ttl time.Duration) error {
	time.Sleep(s.delay)
	return s.MemoryRouter.PutSessions(ctx, ss, ttl)
}

// TestAuthReplyAfterSessionStored: a client that holds its AuthReply can
// be pushed to at once. An application that pushes to a user right after
// the user connected must find the route, so the reply waits until the
// session is in the store.
func TestAuthReplyAfterSessionStored(t *testing.T) {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	n := startNode(t, cloud.Config{Store: slowPuts{router, 200 * time.Millisecond}, NodeID: "node-a"})
	for _, ws := range []bool{false, true} {
		c := dialRaw(t, n.tcpAddr, false)
		if ws {
			c = dialRaw(t, n.wsAddr, true)
		}
		r := c.auth(1, goimAuth(21, "", "live://a", 1000))
		routes, err := router.NodesByMids(context.Background(), []int64{21})
		require.NoError(t, err)
		require.Equal(t, "node-a", routes[r.Key], "ws=%v: the AuthReply arrived before the session was routable", ws)
	}
}
