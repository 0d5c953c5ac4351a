package job

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

func kickMids(reason string, mids ...int64) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKick, Mids: mids, Reason: reason,
		Accepted: time.Now()}
}

func kickKeys(node, reason string, keys ...string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKick, Node: node, Keys: keys,
		Reason: reason, Accepted: time.Now()}
}

// flow describes what a node got, in order: "push p1 [k1]", "kick why [k1]".
func flow(t *testing.T, msgs []*imcloud.Message) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		switch m.Kind {
		case imcloud.KindKick:
			require.Empty(t, m.Mids, "a kick reaches a node by keys")
			out = append(out, fmt.Sprintf("kick %s %v", m.Reason, m.Keys))
		default:
			out = append(out, fmt.Sprintf("%s %s %v", m.Kind, m.Body, m.Keys))
		}
	}
	return out
}

// TestKickByMidsInOrderWithTheUsersPushes: a kick by mids between two
// pushes to the same user reaches each node of the user's connections
// between them, with its reason and the keys on that node; a node
// without the user's connections gets nothing (never a fan-out), and the
// kick is in no history.
func TestKickByMidsInOrderWithTheUsersPushes(t *testing.T) {
	for _, history := range []bool{false, true} {
		t.Run(fmt.Sprint("history=", history), func(t *testing.T) {
			nodes, dir := startTestNodes(t, 3)
			a, b, c := nodes[0], nodes[1], nodes[2]
			users := newUsers(t,
				imcloud.Session{Mid: 1, Key: "k1", Node: a.id}, imcloud.Session{Mid: 1, Key: "k2", Node: b.id},
				imcloud.Session{Mid: 1, Key: "k3", Node: a.id}, imcloud.Session{Mid: 2, Key: "k4", Node: c.id})
			src := newMemQueue(t, 1)
			cfg := fastConfig(src, dir)
			cfg.Users = users
			h := newStoreHistory()
			if history {
				cfg.History = h
			}
			j := startJob(t, cfg)

			src.publish(midsMsg("p1", 1), kickMids("banned", 1), midsMsg("p2", 1))
			require.Equal(t, []string{"keys p1 [k1 k3]", "kick banned [k1 k3]", "keys p2 [k1 k3]"},
				flow(t, a.waitCount(t, 3, 5*time.Second)))
			require.Equal(t, []string{"keys p1 [k2]", "kick banned [k2]", "keys p2 [k2]"},
				flow(t, b.waitCount(t, 3, 5*time.Second)))
			eventually(t, src.allCommitted, 5*time.Second, "committed")
			require.Empty(t, c.messages(), "no connection of the user there: nothing")
			st := j.Stats()
			require.EqualValues(t, 1, st.Kicks)
			require.EqualValues(t, 6, st.Delivered)
			if history {
				var got []string
				for _, e := range h.last(t, imcloud.UserStream(1)).Entries {
					got = append(got, string(e.Body))
				}
				require.Equal(t, []string{"p1", "p2"}, got, "the kick is in no history")
				require.EqualValues(t, 2, st.HistoryAppended)
			}
		})
	}
}

// TestKickByMidsOfSeveralUsers: the users' connections on one node get
// one kick; users without a connection leave nothing to deliver.
func TestKickByMidsOfSeveralUsers(t *testing.T) {
	nodes, dir := startTestNodes(t, 2)
	a, b := nodes[0], nodes[1]
	users := newUsers(t,
		imcloud.Session{Mid: 1, Key: "k1", Node: a.id}, imcloud.Session{Mid: 2, Key: "k2", Node: a.id},
		imcloud.Session{Mid: 2, Key: "k3", Node: b.id})
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.Users = users
	j := startJob(t, cfg)

	src.publish(kickMids("", 2, 1, 0, 2), kickMids("gone", 7), kickKeys(b.id, "after", "k9"))
	require.Equal(t, []string{"kick  [k1 k2]"}, flow(t, a.waitCount(t, 1, 5*time.Second)))
	require.ElementsMatch(t, []string{"kick  [k3]", "kick after [k9]"}, flow(t, b.waitCount(t, 2, 5*time.Second)),
		"a kick by keys is in order with its node's messages, not with those staged")
	eventually(t, src.allCommitted, 5*time.Second, "committed, the offline user's kick too")
	require.EqualValues(t, 3, j.Stats().Kicks)
}

// TestKickByKeysToItsNode: a kick by keys goes to its node only, behind
// the keys messages for that node before it.
func TestKickByKeysToItsNode(t *testing.T) {
	nodes, dir := startTestNodes(t, 2)
	a, b := nodes[0], nodes[1]
	src := newMemQueue(t, 1)
	j := startJob(t, fastConfig(src, dir))

	src.publish(keysMsg(b.id, "before"), kickKeys(b.id, "bye", "k", "x"), keysMsg(b.id, "after"))
	require.Equal(t, []string{"keys before [k]", "kick bye [k x]", "keys after [k]"},
		flow(t, b.waitCount(t, 3, 5*time.Second)))
	eventually(t, src.allCommitted, 5*time.Second, "committed")
	require.Empty(t, a.messages(), "never fanned out")
	require.EqualValues(t, 1, j.Stats().Kicks)
}

// TestKickForANodeNotListedYet: a kick by keys for a node the job has not
// listed waits for the directory read it asks for and goes out in order;
// one for a node the directory never lists is unroutable and does not
// hold commits.
func TestKickForANodeNotListedYet(t *testing.T) {
	a := startTestNode(t, "a", secret)
	late := startTestNode(t, "late", secret)
	dir := newMemDir(a.node())
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, dir)
	cfg.RefreshInterval = time.Hour // read at start, then only on demand
	j := startJob(t, cfg)
	eventually(t, func() bool { return len(j.Stats().Nodes) == 1 }, 5*time.Second, "a listed")

	dir.put(late.node()) // registered after the job's read
	src.publish(kickKeys("late", "first", "k"), keysMsg("late", "then"))
	require.Equal(t, []string{"kick first [k]", "keys then [k]"}, flow(t, late.waitCount(t, 2, 5*time.Second)))

	src.publish(kickKeys("ghost", "nobody", "k"))
	eventually(t, src.allCommitted, 5*time.Second, "a kick for a node never listed does not hold commits")
	s := j.Stats()
	require.EqualValues(t, 1, s.Unroutable, "ghost")
	require.EqualValues(t, 2, s.Kicks)
	require.Empty(t, a.messages())
}

// TestKickSetAside: a kick by mids without Config.Users, and a kick of a
// newer major version (a job of this version meeting what a newer logic
// wrote), are set aside through DeadLetter, never delivered; a kick by
// keys still goes.
func TestKickSetAside(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newRawRecords(newMemQueue(t, 1))
	var mu sync.Mutex
	var dead [][]byte
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.DeadLetter = func(_ context.Context, rec imcloud.Record) error {
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, rec.Value)
		return nil
	}
	j := startJob(t, cfg)

	byMids := kickMids("banned", 1)
	newer, err := kickKeys("a", "future", "k").MarshalBinary()
	require.NoError(t, err)
	require.EqualValues(t, imcloud.MessageMajor, newer[0], "a kick is written with the newest major")
	newer[0] = imcloud.MessageMajor + 1 // what a newer logic may write
	src.publish(byMids)
	src.publishRaw(newer)
	src.publish(kickKeys("a", "now", "k"))

	require.Equal(t, []string{"kick now [k]"}, flow(t, a.waitCount(t, 1, 5*time.Second)))
	eventually(t, src.allCommitted, 5*time.Second, "set aside, then committed")
	s := j.Stats()
	require.EqualValues(t, 2, s.DeadLettered)
	require.EqualValues(t, 1, s.Kicks)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, dead, 2)
	var m imcloud.Message
	require.NoError(t, m.UnmarshalBinary(dead[0]))
	require.Equal(t, byMids.ID, m.ID)
	require.Equal(t, newer, dead[1])
	require.Len(t, a.messages(), 1, "neither delivered to anybody")
}

// TestKickToAnOlderNode: a node of an older release refuses a delivery
// holding a kick (a major it does not read); job delivers the pushes
// around the kick, in order, and skips the kick instead of retrying the
// node's queue forever.
func TestKickToAnOlderNode(t *testing.T) {
	a := startTestNode(t, "a", secret)
	a.set(func(n *testNode) { n.major = 2 })
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.MaxDelivery = 8
	j := startJob(t, cfg)

	var msgs []*imcloud.Message
	var want []string
	for i := 0; i < 20; i++ {
		msgs = append(msgs, keysMsg("a", fmt.Sprint(i)))
		want = append(want, fmt.Sprintf("keys %d [k]", i))
		if i%7 == 3 {
			msgs = append(msgs, kickKeys("a", "old node", "k"))
		}
	}
	src.publish(msgs...)
	eventually(t, src.allCommitted, 5*time.Second, "nothing held up by the kicks")
	require.Equal(t, want, flow(t, a.messages()), "the pushes, in order; no kick")
	s := j.Stats()
	require.EqualValues(t, 3, s.Kicks)
	require.EqualValues(t, 3, s.Skipped)
}
