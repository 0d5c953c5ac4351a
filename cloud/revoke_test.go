package cloud_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// revStore is a fakeStore that keeps revocations (cloud.RevocationStore),
// counting the calls.
type revStore struct {
	*fakeStore
	mu      sync.Mutex
	revoked map[int64]time.Time
	calls   int
	fail    bool
}

var _ cloud.RevocationStore = (*revStore)(nil)

func (r *revStore) RevokedBefore(_ context.Context, mids []int64) (map[int64]time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail {
		return nil, errStoreDown
	}
	out := map[int64]time.Time{}
	for _, mid := range mids {
		if t, ok := r.revoked[mid]; ok {
			out[mid] = t
		}
	}
	return out, nil
}

func (r *revStore) set(fn func(r *revStore)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(r)
}

func (r *revStore) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// issuedAuth is the dev authenticator with the credential's issue time
// taken from the auth body's token (RFC 3339; none: no IssuedAt).
func issuedAuth() cloud.Authenticator {
	return cloud.AuthFunc(func(ctx context.Context, req *cloud.AuthRequest) (cloud.Identity, error) {
		id, err := cloud.DevAuthenticator().Authenticate(ctx, req)
		if err == nil && req.Body.Token != "" {
			id.IssuedAt, err = time.Parse(time.RFC3339Nano, req.Body.Token)
		}
		return id, err
	})
}

func issuedBody(mid int64, issued time.Time) string {
	body := map[string]any{"mid": mid, "platform": "web"}
	if !issued.IsZero() {
		body["token"] = issued.Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(body)
	return string(b)
}

// TestAuthRefusedWhenRevoked: a credential issued before its user's
// revocation is refused at auth (op 6 "auth" to ver 2, counted as
// "revoked"), one issued after it is taken, other users are not
// concerned; an identity without IssuedAt is never checked; a failing
// store lets the auth through.
func TestAuthRefusedWhenRevoked(t *testing.T) {
	store := &revStore{fakeStore: newFakeStore(), revoked: map[int64]time.Time{}}
	n := startNode(t, cloud.Config{Store: store, Authenticator: issuedAuth()})
	revokedAt := time.Now()
	store.set(func(r *revStore) { r.revoked[1] = revokedAt })

	for _, isWS := range []bool{false, true} {
		addr := n.tcpAddr
		if isWS {
			addr = n.wsAddr
		}
		c := dialRaw(t, addr, isWS)
		require.NoError(t, c.send(2, 7, 1, []byte(issuedBody(1, revokedAt.Add(-time.Second)))))
		f, err := c.next(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, int32(6), f.op, "refused before any auth reply")
		assert.JSONEq(t, `{"reason":"auth","reconnect_ms":1000}`, string(f.body), "a token minted again in the revocation's second is refused too: come back after it")
		c.expectClosed(t)
	}
	goim := dialRaw(t, n.tcpAddr, false)
	require.NoError(t, goim.send(1, 7, 1, []byte(issuedBody(1, revokedAt.Add(-time.Hour)))))
	goim.expectClosed(t)
	s := n.srv.Stats()
	assert.Equal(t, uint64(3), s.Refused["revoked"])
	assert.Zero(t, s.Refused["auth"])
	assert.Equal(t, uint64(3), s.AuthRefused)
	assert.Equal(t, 3, store.callCount(), "one store call per auth")

	dialRaw(t, n.tcpAddr, false).auth(2, issuedBody(1, revokedAt.Add(time.Second)))
	dialRaw(t, n.tcpAddr, false).auth(2, issuedBody(2, revokedAt.Add(-time.Hour)))
	assert.Equal(t, 5, store.callCount())
	dialRaw(t, n.tcpAddr, false).auth(2, issuedBody(1, time.Time{}))
	assert.Equal(t, 5, store.callCount(), "no IssuedAt: no check")

	store.set(func(r *revStore) { r.fail = true })
	errs := n.srv.Stats().StoreErrors
	dialRaw(t, n.tcpAddr, false).auth(2, issuedBody(1, revokedAt.Add(-time.Hour)))
	assert.Greater(t, n.srv.Stats().StoreErrors, errs, "counted")
	assert.Equal(t, uint64(3), n.srv.Stats().Refused["revoked"], "a failing store does not refuse")
}

// TestAuthWithoutRevocationStore: a store that keeps no revocations is
// never asked, whatever the identity's IssuedAt.
func TestAuthWithoutRevocationStore(t *testing.T) {
	n := startNode(t, cloud.Config{Store: newFakeStore(), Authenticator: issuedAuth()})
	dialRaw(t, n.tcpAddr, false).auth(2, issuedBody(1, time.Unix(1, 0)))
	assert.Zero(t, n.srv.Stats().Refused["revoked"])
}
