package cloud

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// lastPutStore is a SessionStore that keeps each key's last put session.
type lastPutStore struct {
	mu       sync.Mutex
	sessions map[string]imcloud.Session
}

func (l *lastPutStore) PutSessions(_ context.Context, ss []imcloud.Session, _ time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range ss {
		l.sessions[s.Key] = s
	}
	return nil
}

func (l *lastPutStore) session(key string) imcloud.Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sessions[key]
}

func (*lastPutStore) RemoveSessions(context.Context, []imcloud.Session) error { return nil }
func (*lastPutStore) PutNode(context.Context, imcloud.Node, time.Duration) error {
	return nil
}
func (*lastPutStore) RemoveNode(context.Context, string) error { return nil }
func (*lastPutStore) PutRoomCounts(context.Context, string, map[string]int32, time.Duration) error {
	return nil
}
func (*lastPutStore) RoomCounts(context.Context) (map[string]int32, error) { return nil, nil }

// TestReplacedConnPutsNothing: frames a replaced connection read before
// it closed (Leave of its primary room, ChangeRoom, Sub) do not put its
// session: the store keeps its successor's.
func TestReplacedConnPutsNothing(t *testing.T) {
	st := &lastPutStore{sessions: map[string]imcloud.Session{}}
	s, err := New(Config{Authenticator: DevAuthenticator(), Store: st})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)
	authAs := func(key, room string) {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		body := `{"mid":1,"key":"` + key + `","room_id":"` + room + `"}`
		_, err = nc.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpAuth, Seq: 1, Body: []byte(body)}))
		require.NoError(t, err)
		var f protocol.Frame
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		require.NoError(t, protocol.ReadFrame(bufio.NewReader(nc), &f, 0))
		require.Equal(t, protocol.OpAuthReply, f.Op)
	}

	authAs("k", "live://a")
	old := s.bs.of("k").get("k")
	authAs("k", "live://b")
	cur := s.bs.of("k").get("k")
	require.NotSame(t, old, cur)
	// The replaced connection's reader has ended (the count drops in its
	// finish); its frames read before are handled below as it would have.
	deadline := time.Now().Add(5 * time.Second)
	for s.stats.sessions.Load() != 1 {
		require.True(t, time.Now().Before(deadline), "the replaced connection did not end")
		time.Sleep(5 * time.Millisecond)
	}
	old.handle(&protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpLeave, Seq: 2, Body: []byte("live://a")})
	old.handle(&protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpChangeRoom, Seq: 3, Body: []byte("live://c")})
	old.handle(&protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpSub, Seq: 4, Body: []byte("1000")})
	// Another client's auth waits for its put's round: anything queued
	// before it is in the store once its reply is read.
	authAs("other", "")

	got := st.session("k")
	require.Equal(t, cur.gen, got.Gen, "the store holds the newer connection's session")
	require.Equal(t, "live://b", got.Room)
}
