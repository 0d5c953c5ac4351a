package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/eventtest"
)

// TestNodeGoneProcesses: in a cluster of separate processes, a cloud node
// killed with SIGKILL reports no disconnect for its clients; once its
// registration expired (-node-ttl 2s) job publishes one node_gone with the
// node's process epoch on the events topic. A node drained by SIGTERM
// reports each client's disconnect (drain) and gets no node_gone.
func TestNodeGoneProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes")
	}
	c := startCluster(t, "-node-ttl", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, key := range []string{"on-drained", "on-killed"} {
		cl, err := client.Dial(ctx, client.Config{Addr: c.clouds[i].tcp, Mid: int64(i + 1), Key: key})
		require.NoError(t, err)
		defer cl.Close()
	}
	brokers := c.kafka.Brokers
	var epoch string // the killed node's process epoch, from its connect event
	eventtest.ReadTopic(t, brokers, "imcloud-push.events", 30*time.Second, func(recs []eventtest.Record) bool {
		n := 0
		for _, r := range recs {
			if ev := r.Event(t); ev.Type == imcloud.EventConnect {
				n++
				if ev.Key == "on-killed" {
					epoch = ev.Epoch
				}
			}
		}
		return n == 2
	})
	require.NotEmpty(t, epoch, "the connects are on the topic")

	c.clouds[0].stop()
	c.clouds[1].kill()
	gone := func(recs []eventtest.Record) (killed, drained int) {
		for _, r := range recs {
			ev := r.Event(t)
			if ev.Type != imcloud.EventNodeGone {
				continue
			}
			require.Equal(t, ev.Node, r.Key, "keyed by node")
			switch ev.Node {
			case "cloud-1":
				require.Equal(t, epoch, ev.Epoch)
				killed++
			case "cloud-0":
				drained++
			}
		}
		return killed, drained
	}
	eventtest.ReadTopic(t, brokers, "imcloud-push.events", 30*time.Second, func(recs []eventtest.Record) bool {
		killed, _ := gone(recs)
		return killed > 0
	})
	// One more directory read (2 s) for anything that would follow.
	recs := eventtest.ReadTopic(t, brokers, "imcloud-push.events", 3*time.Second, func([]eventtest.Record) bool { return false })
	killed, drained := gone(recs)
	require.Equal(t, 1, killed, "one node_gone for the killed node")
	require.Zero(t, drained, "none for the drained node")
	reasons := map[string]string{}
	for _, r := range recs {
		if ev := r.Event(t); ev.Type == imcloud.EventDisconnect {
			reasons[ev.Key] = ev.Reason
		}
	}
	require.Equal(t, map[string]string{"on-drained": imcloud.ReasonDrain}, reasons,
		"the drained node's client has its disconnect, the killed node's none")
}
