package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// TestClusterRoomsAndKickProcesses checks the two cluster-wide claims of
// rooms and kicks across separate processes (logic, job, two cloud nodes,
// redis-server and the Kafka protocol): a client that joined a room no one
// on its node was in gets a room push sent right after its Join was
// answered, and a client of another node outside the room does not; a
// kick by mid through the HTTP API closes the user's connections on both
// nodes with its reason, and a push to the user sent after the kick was
// answered reaches neither.
func TestClusterRoomsAndKickProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts five processes")
	}
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dial := func(node int, mid int64) *client.Client {
		cl, err := client.Dial(ctx, client.Config{Addr: c.clouds[node].tcp, Mid: mid, Extensions: true, Accepts: []int32{1000}})
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		return cl
	}

	// Rooms: the first member's Join, then a push at once, 50 times on
	// alternate nodes; a client on the other node never joins.
	joiners := []*client.Client{dial(0, 11), dial(1, 12)}
	outsiders := []*client.Client{dial(1, 13), dial(0, 14)}
	for i := range 50 {
		n := i % 2
		room := fmt.Sprintf("proc://%d", i)
		_, err := joiners[n].Join(ctx, room)
		require.NoError(t, err)
		body := fmt.Sprint("first ", i)
		mustPush(t, c.api, "/goim/push/room?operation=1000&type=proc&room="+fmt.Sprint(i), body)
		expectGo(t, joiners[n], body)
		require.NoError(t, joiners[n].Leave(ctx, room))
	}
	quietGo(t, outsiders[0])
	quietGo(t, outsiders[1])

	// Kick: user 7 on both nodes.
	u := []*client.Client{dial(0, 7), dial(1, 7)}
	c.waitTargets(t, "7", 2)
	mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=7", "before")
	for _, cl := range u {
		expectGo(t, cl, "before")
	}
	code, _ := push(t, c.api, "/goim/kick?mids=7&reason=banned", "")
	require.Equal(t, 200, code)
	mustPush(t, c.api, "/goim/push/mids?operation=1000&mids=7", "after")
	for i, cl := range u {
		select {
		case d := <-cl.Disconnects():
			require.Equal(t, "banned", d.Reason, "node %d", i)
			require.True(t, d.Kick, "node %d: op 6 marks the kick", i)
		case <-time.After(5 * time.Second):
			t.Fatalf("node %d: no op 6 within 5 s of the kick", i)
		}
		select {
		case m, ok := <-cl.Messages():
			require.False(t, ok, "node %d: %q after the kick", i, m.Body)
		case <-cl.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("node %d: still open 5 s after the kick", i)
		}
	}
}
