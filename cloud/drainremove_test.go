package cloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// TestDrainRemovesWhileWaiting: the session removals of the connections
// Shutdown has closed reach the store while the drain still waits for
// another connection (here one held in its authenticator), not only once
// every connection ended: under load a drain waits seconds for its last
// connections, and its removals are then written during that wait
// instead of one store call after another at its end.
func TestDrainRemovesWhileWaiting(t *testing.T) {
	t.Parallel()
	st := newFakeStore()
	auth, entered, release := holdingAuth()
	n := startNode(t, cloud.Config{NodeID: "node-d", Store: st, Authenticator: auth, MaxConnsPerIP: -1, AcceptRate: -1})

	a := dialRaw(t, n.tcpAddr, false)
	a.auth(1, goimAuth(1, "a", "live://d"))
	waitFor(t, "a's session stored", func() bool { _, ok := st.session("a"); return ok })

	held := dialRaw(t, n.tcpAddr, false)
	require.NoError(t, held.send(1, 7, 1, []byte(goimAuth(2, "held", "live://d"))))
	<-entered

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- n.srv.Shutdown(ctx)
	}()
	defer func() { <-done }()
	defer close(release)
	a.expectClosed(t)
	waitFor(t, "a's session removed while the drain waits for the held connection", func() bool {
		_, ok := st.session("a")
		return !ok
	})
	select {
	case err := <-done:
		done <- err // for the deferred receive
		t.Fatalf("Shutdown returned (%v) while a connection was still in its authenticator", err)
	default:
	}
}

// holdingAuth is DevAuthenticator holding a client authenticating with
// the key "held" until release is closed (20 s at most); entered is
// closed once it holds it.
func holdingAuth() (auth cloud.Authenticator, entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	dev := cloud.DevAuthenticator()
	auth = cloud.AuthFunc(func(ctx context.Context, req *cloud.AuthRequest) (cloud.Identity, error) {
		if req.Body.Key == "held" {
			close(entered)
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		return dev.Authenticate(ctx, req)
	})
	return auth, entered, release
}
