package cloud

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

// TestLateAuthReplyWritten: an authenticator may answer after the
// handshake deadline (the client sent its auth late, the check was slow:
// the authenticator gets HandshakeTimeout of its own). The handshake's
// write deadline has then passed, and a non-blocking write on plain TCP
// (tryWrite) fails on it, so it must be cleared before the AuthReply can
// be written: otherwise its writer kills the connection the client was
// just told it has.
func TestLateAuthReplyWritten(t *testing.T) {
	const handshake = 200 * time.Millisecond
	dev := DevAuthenticator()
	s, err := New(Config{
		HandshakeTimeout: handshake,
		Authenticator: AuthFunc(func(ctx context.Context, req *AuthRequest) (Identity, error) {
			time.Sleep(handshake + 100*time.Millisecond) // past the handshake deadline
			return dev.Authenticate(ctx, req)
		}),
	})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)

	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	br := writeAuth(t, nc, "late", "live://late", 5*time.Second)
	var f protocol.Frame
	err = protocol.ReadFrame(br, &f, 1<<16)
	require.NoError(t, err, "the AuthReply did not arrive")
	require.Equal(t, protocol.OpAuthReply, f.Op)

	// The connection stays healthy: a heartbeat is answered.
	_, err = nc.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpHeartbeat, Seq: 2}))
	require.NoError(t, err)
	require.NoError(t, protocol.ReadFrame(br, &f, 1<<16))
	require.Equal(t, protocol.OpHeartbeatReply, f.Op)
	require.Equal(t, int32(2), f.Seq)
}
