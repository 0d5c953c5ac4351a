package job

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// storeHistory is logic's memory history with a switch that makes its
// appends fail (the store is down), counting the calls.
type storeHistory struct {
	*logic.MemoryHistory
	down  atomic.Bool
	calls atomic.Int64
}

func newStoreHistory() *storeHistory {
	return &storeHistory{MemoryHistory: logic.NewMemoryHistory(logic.MemoryHistoryConfig{})}
}

func (h *storeHistory) Append(ctx context.Context, items []imcloud.HistoryAppend) error {
	h.calls.Add(1)
	if h.down.Load() {
		return errors.New("history store unreachable")
	}
	return h.MemoryHistory.Append(ctx, items)
}

// historyReader reads a history store back: logic's and package redis's
// have Last.
type historyReader interface {
	Last(ctx context.Context, s imcloud.Stream, n int) (imcloud.HistoryRead, error)
}

// last reads what the history holds of s.
func (h *storeHistory) last(t testing.TB, s imcloud.Stream) imcloud.HistoryRead {
	t.Helper()
	return lastOf(t, h, s)
}

func lastOf(t testing.TB, h historyReader, s imcloud.Stream) imcloud.HistoryRead {
	t.Helper()
	r, err := h.Last(context.Background(), s, imcloud.DefaultHistoryLen)
	require.NoError(t, err)
	return r
}

func historyConfig(src Source, dir NodeDirectory, users Users, h History) Config {
	cfg := fastConfig(src, dir)
	cfg.Users, cfg.History = users, h
	return cfg
}

// checkPlaced checks that every message of msgs with a stream is the
// history entry of its ID in that stream: same offset, current epoch.
func checkPlaced(t *testing.T, h historyReader, msgs []*imcloud.Message) {
	t.Helper()
	reads := map[imcloud.Stream]imcloud.HistoryRead{}
	for _, m := range msgs {
		if m.Stream == "" {
			continue
		}
		r, ok := reads[m.Stream]
		if !ok {
			r = lastOf(t, h, m.Stream)
			reads[m.Stream] = r
		}
		require.Equal(t, r.Epoch, m.Epoch, "%s: the stream's epoch", m.Body)
		found := false
		for _, e := range r.Entries {
			if e.ID == m.ID {
				require.Equal(t, e.Offset, m.Offset, "%s: delivered at its history offset", m.Body)
				found = true
			}
		}
		require.True(t, found, "%s is in %s's history", m.Body, m.Stream)
	}
}

func TestNewRefusesHistoryWithoutUsers(t *testing.T) {
	cfg := fastConfig(newMemQueue(t, 1), newMemDir())
	cfg.History = newStoreHistory()
	_, err := New(cfg)
	require.ErrorIs(t, err, ErrNoUsers)
}

func TestHistoryMidsAppendedThenDelivered(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	users := newUsers(t,
		imcloud.Session{Mid: 1, Key: "k1", Node: "a"}, imcloud.Session{Mid: 1, Key: "k2", Node: "b"},
		imcloud.Session{Mid: 2, Key: "k3", Node: "a"})
	h := newStoreHistory()
	src := newMemQueue(t, 4)
	j := startJob(t, historyConfig(src, newMemDir(a.node(), b.node()), users, h))

	src.publish(midsMsg("u1-0", 1), midsMsg("u2-0", 2), midsMsg("u3-0", 3), midsMsg("u1-1", 1))
	gotA := a.waitCount(t, 3, 5*time.Second)
	gotB := b.waitCount(t, 2, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "every record committed, the offline user's too")

	require.Equal(t, []string{"u1-0:[k1] u:1", "u1-1:[k1] u:1"},
		keysOf(filter(gotA, func(m *imcloud.Message) bool { return m.Stream == "u:1" })))
	require.Equal(t, []string{"u2-0:[k3] u:2"}, keysOf(filter(gotA, func(m *imcloud.Message) bool { return m.Stream == "u:2" })))
	require.Equal(t, []string{"u1-0:[k2] u:1", "u1-1:[k2] u:1"}, keysOf(gotB))
	checkPlaced(t, h, append(gotA, gotB...))

	for s, want := range map[imcloud.Stream][]string{
		"u:1": {"u1-0", "u1-1"}, "u:2": {"u2-0"}, "u:3": {"u3-0"},
	} {
		var got []string
		for _, e := range h.last(t, s).Entries {
			got = append(got, string(e.Body))
		}
		require.Equal(t, want, got, "%s's history", s)
	}
	st := j.Stats()
	require.EqualValues(t, 4, st.HistoryAppended)
	require.EqualValues(t, 1, st.Offline, "user 3 has no connection: appended, not delivered")
	require.EqualValues(t, 5, st.Delivered)
}

func filter(msgs []*imcloud.Message, keep func(*imcloud.Message) bool) []*imcloud.Message {
	var out []*imcloud.Message
	for _, m := range msgs {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

func TestHistoryRoomsAppendedKeysAndBroadcastsNot(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	h := newStoreHistory()
	src := newMemQueue(t, 1)
	j := startJob(t, historyConfig(src, newMemDir(a.node(), b.node()), newUsers(t), h))

	src.publish(roomMsg("live://1", "r1-0"), keysMsg("a", "keys"), roomMsg("live://2", "r2-0"),
		&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("bc")},
		roomMsg("live://1", "r1-1"))
	gotA := a.waitCount(t, 5, 5*time.Second)
	gotB := b.waitCount(t, 4, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "all committed")

	for _, got := range [][]*imcloud.Message{gotA, gotB} {
		r1 := filter(got, func(m *imcloud.Message) bool { return m.Room == "live://1" })
		require.Equal(t, []string{"r1-0", "r1-1"}, bodies(r1, nil))
		for _, m := range r1 {
			require.Equal(t, imcloud.RoomStream("live://1"), m.Stream)
		}
		require.Less(t, r1[0].Offset, r1[1].Offset)
		for _, m := range filter(got, func(m *imcloud.Message) bool { return m.Room == "" }) {
			require.Empty(t, m.Stream, "%s: a keys message or a broadcast has no stream", m.Body)
			require.Empty(t, m.Epoch)
		}
		checkPlaced(t, h, got)
	}
	require.EqualValues(t, 3, j.Stats().HistoryAppended)
	require.Equal(t, 3, h.Stats().Entries, "only the room pushes are in the history")
}

func TestHistoryOrderPerStreamAcrossBatches(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	var sessions []imcloud.Session
	for mid := int64(1); mid <= 8; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: fmt.Sprint("k", mid), Node: []string{"a", "b"}[mid%2]})
	}
	h := newStoreHistory()
	h.down.Store(true) // everything waits: the stages take large batches once it is up
	src := newMemQueue(t, 4)
	cfg := historyConfig(src, newMemDir(a.node(), b.node()), newUsers(t, sessions...), h)
	cfg.MaxDelivery = 16
	j := startJob(t, cfg)

	const rounds = 100
	var want int
	for i := 0; i < rounds; i++ {
		var batch []*imcloud.Message
		for mid := int64(1); mid <= 8; mid++ {
			batch = append(batch, midsMsg(fmt.Sprint(mid, "-", i), mid))
		}
		for r := 1; r <= 3; r++ {
			batch = append(batch, roomMsg(fmt.Sprint("live://", r), fmt.Sprint("r", r, "-", i)))
		}
		src.publish(batch...)
		want += 8/2 + 3
	}
	eventually(t, func() bool { return j.Stats().HistoryErrors >= 4 }, 5*time.Second, "appends retried")
	h.down.Store(false)
	gotA := a.waitCount(t, want, 10*time.Second)
	gotB := b.waitCount(t, want, 10*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "all committed")
	records := int64(rounds * 11)
	require.Less(t, h.calls.Load()-int64(j.Stats().HistoryErrors), records/4, "appends went in batches")

	for _, got := range [][]*imcloud.Message{gotA, gotB} {
		require.Len(t, got, want, "no duplicates")
		byStream := map[imcloud.Stream][]*imcloud.Message{}
		for _, m := range got {
			byStream[m.Stream] = append(byStream[m.Stream], m)
		}
		require.Len(t, byStream, 4+3, "4 users and 3 rooms")
		for s, msgs := range byStream {
			for i, m := range msgs {
				require.Equal(t, fmt.Sprint(i), string(m.Body[len(m.Body)-len(fmt.Sprint(i)):]),
					"%s: delivered in publish order", s)
				if i > 0 {
					require.Greater(t, m.Offset, msgs[i-1].Offset, "%s: offsets grow", s)
				}
			}
			hist := h.last(t, s)
			require.Len(t, hist.Entries, rounds, "%s: one entry per push", s)
			for i, e := range hist.Entries {
				require.Equal(t, msgs[i].ID, e.ID, "%s: the history's order is the delivery order", s)
			}
		}
		checkPlaced(t, h, got)
	}
}

func TestHistoryAppendFailureHoldsThePartition(t *testing.T) {
	a := startTestNode(t, "a", secret)
	h := newStoreHistory()
	h.down.Store(true)
	src := newMemQueue(t, 1) // one partition: the keys message waits for the commit too
	users := newUsers(t, imcloud.Session{Mid: 1, Key: "k1", Node: "a"})
	j := startJob(t, historyConfig(src, newMemDir(a.node()), users, h))

	src.publish(midsMsg("m0", 1), roomMsg("live://1", "r0"), keysMsg("a", "keys"), midsMsg("m1", 1))
	eventually(t, func() bool { return j.Stats().HistoryErrors >= 3 }, 5*time.Second, "the append is retried")
	a.waitCount(t, 1, 5*time.Second)
	require.Equal(t, []string{"keys"}, bodies(a.messages(), nil),
		"only the keys message (no stream) is delivered while the store is down")
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 4, src.Len(), "nothing is committed past the records that wait")
	require.Zero(t, j.Stats().HistoryAppended)
	require.Zero(t, h.Stats().Entries)

	h.down.Store(false)
	got := a.waitCount(t, 4, 5*time.Second)
	require.Equal(t, []string{"keys", "m0", "r0", "m1"}, bodies(got, nil), "the stream's pushes in offset order")
	checkPlaced(t, h, got)
	eventually(t, src.allCommitted, 5*time.Second, "committed once appended and delivered")
	require.EqualValues(t, 3, j.Stats().HistoryAppended)
}

// noCommits is a source whose commits go nowhere: a job on it stops as
// if killed before it committed anything.
type noCommits struct{ Source }

func (noCommits) Commit(context.Context, int32, int64) error { return nil }

func TestHistoryRedeliveryKeepsOffsets(t *testing.T) {
	a := startTestNode(t, "a", secret)
	h := newStoreHistory()
	users := newUsers(t, imcloud.Session{Mid: 1, Key: "k1", Node: "a"}, imcloud.Session{Mid: 2, Key: "k2", Node: "a"})
	src := newMemQueue(t, 2)
	dir := newMemDir(a.node())
	var msgs []*imcloud.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, midsMsg(fmt.Sprint("u1-", i), 1), midsMsg(fmt.Sprint("u2-", i), 2),
			midsMsg(fmt.Sprint("u3-", i), 3), roomMsg("live://1", fmt.Sprint("r-", i)))
	}
	src.publish(msgs...)

	j1, err := New(historyConfig(noCommits{src}, dir, users, h))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- j1.Run(context.Background()) }()
	first := a.waitCount(t, 60, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, j1.Shutdown(ctx))
	require.NoError(t, <-done)
	require.Equal(t, len(msgs), src.Len(), "nothing committed")
	entries := h.Stats().Entries
	require.Equal(t, 80, entries)
	before := map[imcloud.Stream]imcloud.HistoryRead{}
	for _, s := range []imcloud.Stream{"u:1", "u:2", "u:3", "r:live://1"} {
		before[s] = h.last(t, s)
	}

	src.Rewind() // a new consumer starts after the last commit: everything again
	j2 := startJob(t, historyConfig(src, dir, users, h))
	all := a.waitCount(t, 120, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "the second job commits")
	require.EqualValues(t, 80, j2.Stats().HistoryAppended, "appended again: no-ops")
	require.Equal(t, entries, h.Stats().Entries, "no new history entry")
	for s, r := range before {
		require.Equal(t, r, h.last(t, s), "%s: the same history, the same epoch", s)
	}
	placed := map[imcloud.MessageID]*imcloud.Message{}
	for _, m := range first {
		placed[m.ID] = m
	}
	for _, m := range all[len(first):] {
		p := placed[m.ID]
		require.NotNil(t, p, "%s delivered by both jobs", m.Body)
		require.Equal(t, [3]any{p.Stream, p.Epoch, p.Offset}, [3]any{m.Stream, m.Epoch, m.Offset},
			"%s: redelivered at the same place", m.Body)
	}
	checkPlaced(t, h, all)
}

func TestHistoryRecordsNoStreamCanName(t *testing.T) {
	a := startTestNode(t, "a", secret)
	h := newStoreHistory()
	src := newMemQueue(t, 1)
	users := newUsers(t, imcloud.Session{Mid: 1, Key: "k1", Node: "a"})
	j := startJob(t, historyConfig(src, newMemDir(a.node()), users, h))

	// A room key without "://" (an older logic let it through) names no
	// stream: delivered as without history, never holding the partition
	// on an append the store refuses. A mids message without a valid user
	// is poison.
	src.publish(roomMsg("lobby", "no stream"), midsMsg("nobody", 0, -1), midsMsg("after", 1))
	got := a.waitCount(t, 2, 5*time.Second)
	require.Equal(t, []string{"no stream", "after"}, bodies(got, nil))
	require.Empty(t, got[0].Stream)
	require.Equal(t, imcloud.UserStream(1), got[1].Stream)
	eventually(t, src.allCommitted, 5*time.Second, "all committed")
	s := j.Stats()
	require.EqualValues(t, 1, s.Skipped)
	require.EqualValues(t, 1, s.HistoryAppended)
	require.Zero(t, s.HistoryErrors)
}
