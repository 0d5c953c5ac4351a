package cloud

import (
	"context"
	"errors"

	"github.com/imcloud/imcloud/protocol"
)

// Revocation (docs/design.md, control plane): a kick may revoke its users'
// credentials, and logic then keeps, per user, the time before which they
// were revoked (its Router's Revoke). When the node's Store is a
// RevocationStore, an auth whose Identity carries IssuedAt (a token's
// "iat") is checked against it: one RevokedBefore call for the mid per
// auth, bounded by StoreTimeout. A credential issued before the user's
// revocation is refused: counted in Stats.Refused as "revoked", and a
// ver-2 client reads op 6 "auth", as for any credential the node does not
// take, with a reconnect hint of 1 s (revokedHint): "iat" is in whole
// seconds, so a token issued in the second of the revocation, before or
// after it, is refused too, and a client that mints one at once would
// otherwise loop until the second is over. An identity without
// IssuedAt (DevAuthenticator, an Authenticator of the application's that
// does not set it) is never checked.
//
// A failing store does not refuse: the auth goes on (the call counted in
// Stats.StoreErrors), as it does when the session cannot be written, so
// that a store outage does not lock every user out; a revoked credential
// may be taken meanwhile.

// errRevoked ends an auth whose credential was revoked.
var errRevoked = errors.New("cloud: credential revoked")

// revoked reports whether id's credential was issued before a revocation
// of id.Mid. It is false without a RevocationStore or without
// id.IssuedAt; a failed store call returns false and its error (counted).
func (s *Server) revoked(ctx context.Context, id Identity) (bool, error) {
	rs, ok := s.cfg.Store.(RevocationStore)
	if !ok || id.IssuedAt.IsZero() {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	before, err := rs.RevokedBefore(ctx, []int64{id.Mid})
	if err != nil {
		s.stats.storeErrors.Add(1)
		return false, err
	}
	t, ok := before[id.Mid]
	return ok && id.IssuedAt.Before(t), nil
}

// refuseRevoked refuses the auth f of id (op 6 "auth" to a ver-2 client,
// counted as "revoked") if its credential was revoked, returning
// errRevoked; a store that fails lets it through (logged at debug).
func (c *conn) refuseRevoked(ctx context.Context, f *protocol.Frame, id Identity) error {
	s := c.srv
	revoked, err := s.revoked(ctx, id)
	if err != nil {
		s.cfg.Logger.Debug("cloud: revocation check failed; auth allowed", "mid", id.Mid, "err", err)
	}
	if !revoked {
		return nil
	}
	s.stats.authRefused.Add(1)
	c.refuse(f, refusedRevoked)
	return errRevoked
}
