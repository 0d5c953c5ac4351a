package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/logic"
)

// The kick checks (docs/design.md, control plane) in the cluster of
// separate cloud.Servers behind redis-server and the Kafka protocol that
// the rooms checks use: a user connected to two nodes is kicked by mid,
// through the Pusher or the HTTP API; both connections get op 6 with the
// reason and close, the user's push accepted before the kick arrives
// first, and one accepted after the kick returned reaches neither.

// kickAPIKey is the API key of the kick clusters' push API.
const kickAPIKey = "kick-api-key"

// kickVia kicks every connection of mid with reason, through the Pusher
// or the HTTP API, and returns how many connections the kick targeted.
type kickVia func(t testing.TB, c *roomsCluster, mid int64, reason string) int

// kickByPusher is Pusher.Kick.
func kickByPusher(t testing.TB, c *roomsCluster, mid int64, reason string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.logic.pusher.Kick(ctx, logic.KickTarget{Mids: []int64{mid}}, logic.WithReason(reason))
	require.NoError(t, err)
	return res.Connections
}

// kickByHTTP is POST /goim/kick?mids=&reason= under the API key.
func kickByHTTP(t testing.TB, c *roomsCluster, mid int64, reason string) int {
	t.Helper()
	u := "http://" + c.logic.Addr("http") + "/goim/kick?mids=" + strconv.FormatInt(mid, 10) + "&reason=" + url.QueryEscape(reason)
	req, err := http.NewRequest(http.MethodPost, u, nil)
	require.NoError(t, err)
	req.Header.Set("X-Api-Key", kickAPIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "kick: %s", body)
	var r struct {
		Code int `json:"code"`
		Data struct {
			ID          string `json:"id"`
			Connections int    `json:"connections"`
			Nodes       int    `json:"nodes"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &r))
	require.Zero(t, r.Code)
	require.Len(t, r.Data.ID, 32)
	return r.Data.Connections
}

// startKickCluster is the rooms checks' cluster with two cloud nodes and
// the push API under kickAPIKey.
func startKickCluster(t testing.TB, extra ...string) *roomsCluster {
	t.Helper()
	return startRoomsCluster(t, 2, append([]string{"-api-key", kickAPIKey}, extra...)...)
}

// pushMid pushes body to user mid through the Pusher.
func (c *roomsCluster) pushMid(t testing.TB, mid int64, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.logic.pusher.PushMids(ctx, 1000, []int64{mid}, []byte(body))
	require.NoError(t, err)
}

// runKicks kicks n users, one at a time, each connected to both nodes by
// a ver-2 client, through via(round) for round i: before each kick the
// user gets a push (which must arrive, before op 6), right after the kick
// returned another (which must never arrive). It returns each kick's
// latency: from the call to both clients holding op 6 with the kick's
// reason. The pushes after the kicks are checked last, once each kicked
// client (which does not reconnect) closed its Messages(): whatever its
// connection received is in its inbox by then.
func runKicks(t testing.TB, c *roomsCluster, n int, firstMid int64, via func(round int) kickVia) []time.Duration {
	t.Helper()
	type kicked struct {
		mid     int64
		inboxes []*inbox
	}
	var all []kicked
	lat := make([]time.Duration, 0, n)
	for i := range n {
		mid := firstMid + int64(i)
		reason := fmt.Sprintf("banned %d", i)
		var clients []*client.Client
		var inboxes []*inbox
		for node := range c.clouds {
			cl := c.dial(t, node, mid, "", "")
			clients = append(clients, cl)
			inboxes = append(inboxes, collect(cl))
		}
		before := fmt.Sprint("before ", i)
		c.pushMid(t, mid, before)

		got := make(chan time.Time, len(clients))
		for _, cl := range clients {
			go func() {
				select {
				case d := <-cl.Disconnects():
					if d.Reason == reason {
						got <- time.Now()
						return
					}
					t.Errorf("user %d: op 6 %+v, want reason %q", mid, d, reason)
				case <-time.After(10 * time.Second):
					t.Errorf("user %d: no op 6 within 10 s of the kick", mid)
				}
				got <- time.Time{}
			}()
		}
		start := time.Now()
		targeted := via(i)(t, c, mid, reason)
		c.pushMid(t, mid, fmt.Sprint("after ", i))
		var last time.Time
		for range clients {
			at := <-got
			require.False(t, at.IsZero(), "user %d: a connection was not kicked", mid)
			if at.After(last) {
				last = at
			}
		}
		lat = append(lat, last.Sub(start))
		require.Equal(t, 2, targeted, "user %d: the kick targeted both connections", mid)
		for k, in := range inboxes {
			require.True(t, in.waitBody(before, 5*time.Second), "user %d: the push before the kick did not reach node %d", mid, k)
		}
		all = append(all, kicked{mid: mid, inboxes: inboxes})
	}
	for i, k := range all {
		for node, in := range k.inboxes {
			select {
			case <-in.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("user %d: the client of node %d did not stop after the kick", k.mid, node)
			}
			require.NotContains(t, in.bodies(), fmt.Sprint("after ", i),
				"user %d: a push accepted after the kick reached node %d", k.mid, node)
		}
	}
	return lat
}

// alternate kicks through the Pusher and the HTTP API in turn.
func alternate(round int) kickVia {
	if round%2 == 0 {
		return kickByPusher
	}
	return kickByHTTP
}

// TestKickAcrossNodes is runKicks at test size, 200 kicks with history
// on (job resolves the users: its stage), 50 with it off (logic resolves
// them), half through the Pusher, half through the HTTP API.
func TestKickAcrossNodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kicks int
		flags []string
	}{
		{"history", 200, nil},
		{"no-history", 50, []string{"-history=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startKickCluster(t, tc.flags...)
			lat := runKicks(t, c, tc.kicks, 1000, alternate)
			t.Logf("%d kicks of a user on 2 nodes: latency p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(lat),
				quantileMS(lat, 0.5), quantileMS(lat, 0.99), quantileMS(lat, 1))
			require.EqualValues(t, 2*tc.kicks, c.clouds[0].cloud.Stats().Kicked+c.clouds[1].cloud.Stats().Kicked)
			if tc.flags == nil {
				require.EqualValues(t, tc.kicks, c.job.job.Stats().Kicks, "every kick went through job's stage")
			}
		})
	}
}

// BenchmarkKick is the kick check: 1,000 kicks by mid through the
// HTTP API of a user connected to two nodes, reporting the latency
// percentiles (make bench).
func BenchmarkKick(b *testing.B) {
	for range b.N {
		c := startKickCluster(b)
		lat := runKicks(b, c, 1000, 1000, func(int) kickVia { return kickByHTTP })
		b.ReportMetric(quantileMS(lat, 0.5), "kick-p50-ms")
		b.ReportMetric(quantileMS(lat, 0.99), "kick-p99-ms")
		b.ReportMetric(slices.Max(lat).Seconds()*1000, "kick-max-ms")
	}
}
