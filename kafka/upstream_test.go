package kafka_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/protocol"
)

// TestUpstreamProducer: a node whose UpstreamHook is the producer
// publishes what clients send to "<topic>.upstream": the client's bytes,
// keyed by the connection key, with the verified sender in the headers,
// each connection's messages in order.
func TestUpstreamProducer(t *testing.T) {
	k := testenv.StartKafka(t, kafka.UpstreamTopic("imcloud-push"))
	up, err := kafka.NewUpstreamProducer(kafka.ProducerConfig{Brokers: k.Brokers})
	require.NoError(t, err)
	t.Cleanup(func() { _ = up.Close() })
	require.Equal(t, "imcloud-push.upstream", up.Topic())

	srv, err := cloud.New(cloud.Config{NodeID: "node-1", Authenticator: cloud.DevAuthenticator(), UpstreamHook: up.Upstream})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeTCP(ln) }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const clients, each = 4, 10
	for c := range clients {
		cl, err := client.Dial(ctx, client.Config{Addr: ln.Addr().String(), Mid: int64(100 + c), Key: fmt.Sprintf("key-%d", c), Room: "live://u"})
		require.NoError(t, err)
		for i := range each {
			require.NoError(t, cl.Send(ctx, []byte(fmt.Sprintf("msg %d", i))))
		}
		require.NoError(t, cl.Close())
	}
	// The hook runs after the reply is queued: once the node drained,
	// every call returned.
	require.NoError(t, srv.Shutdown(ctx))
	require.NoError(t, up.Close())
	require.Equal(t, kafka.ProducerStats{Sent: clients * each}, up.Stats())

	got := map[string][]string{}
	seqs := map[string][]int{}
	for _, cm := range consumeTopic(t, k, "imcloud-push.upstream") {
		h := headers(cm)
		key := string(cm.Key)
		assert.Equal(t, key, h["key"])
		var c int
		_, err := fmt.Sscanf(key, "key-%d", &c)
		require.NoError(t, err)
		assert.Equal(t, strconv.Itoa(100+c), h["mid"], "the sender's verified mid")
		assert.Equal(t, "live://u", h["room"])
		assert.Equal(t, "node-1", h["node"])
		assert.Equal(t, strconv.Itoa(int(protocol.OpSendMsg)), h["op"])
		seq, err := strconv.Atoi(h["seq"])
		require.NoError(t, err)
		got[key] = append(got[key], string(cm.Value))
		seqs[key] = append(seqs[key], seq)
	}
	require.Len(t, got, clients)
	for key, msgs := range got {
		want := make([]string, each)
		for i := range want {
			want[i] = fmt.Sprintf("msg %d", i)
		}
		assert.Equal(t, want, msgs, key)
		for i := 1; i < len(seqs[key]); i++ {
			assert.Greater(t, seqs[key][i], seqs[key][i-1], "%s: seq in sending order", key)
		}
	}
}
