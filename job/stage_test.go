package job

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

func midsMsg(body string, mids ...int64) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindMids, Op: 1000, Mids: mids,
		Body: []byte(body), Accepted: time.Now()}
}

// newUsers is logic's memory router holding sessions: mid -> key@node.
func newUsers(t testing.TB, sessions ...imcloud.Session) *logic.MemoryRouter {
	t.Helper()
	r := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	require.NoError(t, r.PutSessions(context.Background(), sessions, time.Hour))
	return r
}

// failingUsers is the memory router failing its lookups while fail is
// set, counting the calls.
type failingUsers struct {
	*logic.MemoryRouter
	fail  atomic.Bool
	calls atomic.Int64
}

func (u *failingUsers) NodesByMids(ctx context.Context, mids []int64) (map[string]string, error) {
	u.calls.Add(1)
	if u.fail.Load() {
		return nil, errors.New("router unreachable")
	}
	return u.MemoryRouter.NodesByMids(ctx, mids)
}

// keysOf describes the keys messages a node got: "body:key,key stream".
func keysOf(msgs []*imcloud.Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Kind != imcloud.KindKeys {
			continue
		}
		out = append(out, fmt.Sprintf("%s:%v %s", m.Body, m.Keys, m.Stream))
	}
	return out
}

func TestMidsRoutedToTheUsersConnections(t *testing.T) {
	a := startTestNode(t, "a", secret)
	b := startTestNode(t, "b", secret)
	users := newUsers(t,
		imcloud.Session{Mid: 1, Key: "k1", Node: "a"}, imcloud.Session{Mid: 1, Key: "k2", Node: "b"},
		imcloud.Session{Mid: 1, Key: "k3", Node: "a"}, imcloud.Session{Mid: 2, Key: "k4", Node: "b"})
	src := newMemQueue(t, 1) // one partition: one order for all
	cfg := fastConfig(src, newMemDir(a.node(), b.node()))
	cfg.Users = users
	j := startJob(t, cfg)

	src.publish(midsMsg("one", 1), midsMsg("two", 2), midsMsg("nobody", 3), midsMsg("both", 2, 1, 2, 0))
	gotA := a.waitCount(t, 2, 5*time.Second)
	gotB := b.waitCount(t, 3, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "every record committed, the offline user's too")
	require.Equal(t, []string{"one:[k1 k3] ", "both:[k1 k3] "}, keysOf(gotA),
		"one keys message per node, no stream without history")
	require.Equal(t, []string{"one:[k2] ", "two:[k4] ", "both:[k2 k4] "}, keysOf(gotB))
	for _, m := range append(gotA, gotB...) {
		require.Empty(t, m.Epoch)
		require.Zero(t, m.Offset)
	}
	s := j.Stats()
	require.EqualValues(t, 1, s.Offline)
	require.EqualValues(t, 5, s.Delivered)
	require.Zero(t, s.LookupErrors)
	require.Zero(t, s.HistoryAppended)
}

func TestMidsWithoutUsersSetAside(t *testing.T) {
	a := startTestNode(t, "a", secret)
	src := newMemQueue(t, 1)
	var mu sync.Mutex
	var dead []imcloud.Record
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.DeadLetter = func(_ context.Context, rec imcloud.Record) error {
		mu.Lock()
		defer mu.Unlock()
		dead = append(dead, rec)
		return nil
	}
	j := startJob(t, cfg)
	src.publish(midsMsg("for a user", 1), keysMsg("a", "keys"))
	a.waitCount(t, 1, 5*time.Second)
	eventually(t, src.allCommitted, 5*time.Second, "set aside, then committed")
	require.EqualValues(t, 1, j.Stats().DeadLettered)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, dead, 1)
	var m imcloud.Message
	require.NoError(t, m.UnmarshalBinary(dead[0].Value))
	require.Equal(t, "for a user", string(m.Body))
	require.Equal(t, []string{"keys"}, bodies(a.messages(), nil), "never delivered to anybody")
}

func TestMidsLookupFailureRetriedWhileThePartitionWaits(t *testing.T) {
	a := startTestNode(t, "a", secret)
	users := &failingUsers{MemoryRouter: newUsers(t,
		imcloud.Session{Mid: 1, Key: "k1", Node: "a"}, imcloud.Session{Mid: 2, Key: "k2", Node: "a"})}
	users.fail.Store(true)
	src := newMemQueue(t, 1)
	cfg := fastConfig(src, newMemDir(a.node()))
	cfg.Users = users
	j := startJob(t, cfg)

	src.publish(midsMsg("1", 1), midsMsg("2", 2), midsMsg("3", 1))
	eventually(t, func() bool { return j.Stats().LookupErrors >= 3 }, 5*time.Second, "lookups retried")
	require.Empty(t, a.messages(), "nothing delivered while the lookup fails")
	require.Equal(t, 3, src.Len(), "nothing committed")
	require.Equal(t, 3, j.Stats().Partitions[0].Uncommitted)

	users.fail.Store(false)
	got := a.waitCount(t, 3, 5*time.Second)
	require.Equal(t, []string{"1:[k1] ", "2:[k2] ", "3:[k1] "}, keysOf(got), "in offset order")
	eventually(t, src.allCommitted, 5*time.Second, "committed once delivered")
}
