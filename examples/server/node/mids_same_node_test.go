package node

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// A push to several users on one node reaches every one of them, with
// history on (each user's copy is its own queue message) as with it off.
func TestPushMidsSameNode(t *testing.T) {
	for _, history := range []string{"true", "false"} {
		t.Run("history="+history, func(t *testing.T) {
			app := startAllInOne(t, "-history="+history)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var clients []*client.Client
			for mid := int64(1); mid <= 3; mid++ {
				c, err := client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Mid: mid, Accepts: []int32{1000}})
				require.NoError(t, err)
				defer c.Close()
				clients = append(clients, c)
			}
			post(t, app, "/goim/push/mids?operation=1000&mids=1&mids=2&mids=3", "to all three")
			for _, c := range clients {
				receive(t, c, 1000, "to all three")
			}
		})
	}
}
