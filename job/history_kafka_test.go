package job

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/require"
)

// TestHistoryKafkaRestartKeepsOffsets streams pushes to users and a room
// through Kafka while a job with history on is stopped mid-stream as if
// killed (its context cancelled, nothing ever committed) and another job
// of the group takes over: every push redelivered keeps its stream,
// epoch and offset, no offset names two pushes, and the history holds
// each push once.
func TestHistoryKafkaRestartKeepsOffsets(t *testing.T) {
	k := testenv.StartKafka(t)
	topic, group := uniqueName("hist"), uniqueName("hist-group")
	pub := newSaramaPublisher(t, k.Brokers, topic)
	a := startTestNode(t, "a", secret)
	dir := newMemDir(a.node())
	users := newUsers(t, streamSessions("a")...)
	h := newStoreHistory()
	const rounds = 150
	var published atomic.Int64
	pubDone := streamPushes(pub, rounds, &published)

	// 1. A job killed mid-stream: nothing it delivered was committed.
	src1 := openKafkaSource(t, k.Brokers, group, topic)
	j1, err := New(historyConfig(noCommits{src1}, dir, users, h))
	require.NoError(t, err)
	ctx, kill := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- j1.Run(ctx) }()
	first := len(a.waitCount(t, 200, 30*time.Second))
	kill()
	require.NoError(t, <-runErr)
	t.Logf("killed after %d deliveries, %d of %d records published", first, published.Load(), rounds*6)
	require.NoError(t, src1.Close())

	// 2. The next job of the group delivers everything again.
	src2 := openKafkaSource(t, k.Brokers, group, topic)
	defer src2.Close()
	startJob(t, historyConfig(src2, dir, users, h))
	require.NoError(t, <-pubDone)
	all := waitRedelivered(t, a, h, rounds*5, historyStreams, rounds) // the offline user's are not delivered
	require.GreaterOrEqual(t, len(all)-rounds*5, first, "what the killed job delivered came again")
	require.Equal(t, len(historyStreams)*rounds, h.Stats().Entries)
}

// waitRedelivered waits until node got pushes distinct pushes and checks
// what it got, redeliveries included, against the history h: every copy
// of a push at the same place (stream, epoch, offset), no place naming two
// pushes, each stream's history holding perStream pushes in offset order.
// It returns what node got.
func waitRedelivered(t *testing.T, node *testNode, h historyReader, pushes int, streams []imcloud.Stream, perStream int) []*imcloud.Message {
	t.Helper()
	distinct := func() map[imcloud.MessageID][]*imcloud.Message {
		by := map[imcloud.MessageID][]*imcloud.Message{}
		for _, m := range node.messages() {
			by[m.ID] = append(by[m.ID], m)
		}
		return by
	}
	eventually(t, func() bool { return len(distinct()) == pushes }, 60*time.Second, "every push delivered")
	all := node.messages()
	at := map[string]imcloud.MessageID{}
	for id, copies := range distinct() {
		m := copies[0]
		require.NotEmpty(t, m.Stream)
		for _, c := range copies[1:] {
			require.Equal(t, [3]any{m.Stream, m.Epoch, m.Offset}, [3]any{c.Stream, c.Epoch, c.Offset},
				"%s: redelivered at the same place", m.Body)
		}
		place := fmt.Sprint(m.Stream, "@", m.Offset)
		if other, ok := at[place]; ok {
			require.Equal(t, other, id, "%s names one push", place)
		}
		at[place] = id
	}
	checkPlaced(t, h, all)
	for _, s := range streams {
		r := lastOf(t, h, s)
		require.Len(t, r.Entries, perStream, "%s: each push once in the history", s)
		for i := 1; i < len(r.Entries); i++ {
			require.Greater(t, r.Entries[i].Offset, r.Entries[i-1].Offset, "%s: in offset order", s)
		}
	}
	return all
}

// streamSessions are the connections of users 1 to 4, one each on node;
// user 5 has none.
func streamSessions(node string) []imcloud.Session {
	var sessions []imcloud.Session
	for mid := int64(1); mid <= 4; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: fmt.Sprint("k", mid), Node: node})
	}
	return sessions
}

// historyStreams are the streams streamPushes pushes to.
var historyStreams = []imcloud.Stream{"r:live://1", "u:1", "u:2", "u:3", "u:4", "u:5"}

// streamPushes publishes rounds rounds of a push to room live://1 and one
// to each of users 1 to 5, a round every few milliseconds, counting the
// records published; the channel gets the end.
func streamPushes(pub *saramaPublisher, rounds int, published *atomic.Int64) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i := 0; i < rounds; i++ {
			batch := []*imcloud.Message{roomMsg("live://1", fmt.Sprint("r-", i))}
			for mid := int64(1); mid <= 5; mid++ {
				batch = append(batch, midsMsg(fmt.Sprint(mid, "-", i), mid))
			}
			if err := pub.Publish(context.Background(), batch); err != nil {
				done <- err
				return
			}
			published.Add(int64(len(batch)))
			time.Sleep(2 * time.Millisecond) // a stream, not one burst
		}
		done <- nil
	}()
	return done
}
