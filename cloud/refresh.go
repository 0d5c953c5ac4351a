package cloud

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Token lifetime (docs/protocol-token.md). A connection whose
// identity has an expiry (Identity.Expires: the token authenticator's
// "exp") holds one timer, armed at auth, that closes it at that instant:
// op 6 "token_expired" first for a ver-2 client, at once otherwise. A
// connection without an expiry holds no timer. Before then a ver-2 client
// sends op 22 Refresh with a fresh token; the node runs the configured
// Authenticator on it (AuthRequest.Refresh, with the connection's auth
// body as it stands and the new token), and when the new identity is the
// same user (and, with bound keys, the same key), issued after any
// revocation of the user (revoke.go), it moves the timer to the new
// expiry and answers op 23 {"ok":true,"expires":<unix s>}. Otherwise it
// answers {"ok":false,"error":<code>} and closes the connection with op 6
// "auth": a client that cannot prove who it is any more is not kept.
// The rooms the connection is in stay; its later room entries are checked
// against the new identity's rooms (the new token's "rooms" claim).
//
// Refresh frames count against the inbound rate like every frame; the
// authenticator runs on the reader goroutine, within
// Config.HandshakeTimeout. The connection's disconnect event says
// token_expired for an expiry, protocol_error for a refused refresh.

// The error codes of a refused refresh (op 23).
const (
	refreshInvalid   = "invalid_token" // the authenticator refused the token
	refreshExpired   = "token_expired" // the token's "exp" has passed
	refreshOtherUser = "other_user"    // the token names another mid
	refreshOtherKey  = "other_key"     // the identity binds another connection key
	refreshRevoked   = "revoked"       // issued before a revocation of the user (revoke.go)
)

// refreshReply is op 23's JSON body.
type refreshReply struct {
	OK bool `json:"ok"`
	// Expires is the new expiry in Unix seconds, 0 when the new identity
	// has none; absent on a refusal.
	Expires *int64 `json:"expires,omitempty"`
	Error   string `json:"error,omitempty"`
}

// armExpiry makes c close at expires, or never when it is zero. It runs on
// the handshake goroutine at auth, then on the reader's (refresh), each
// started after the last, so c.expiry needs no lock; the timer's function
// may run on any goroutine.
func (c *conn) armExpiry(expires time.Time) {
	if expires.IsZero() {
		c.stopExpiry()
		c.expiry = nil
		return
	}
	if c.expiry == nil {
		c.expiry = time.AfterFunc(time.Until(expires), c.expire)
		return
	}
	c.expiry.Reset(time.Until(expires))
}

// stopExpiry stops c's expiry timer when it has one (the connection
// ended).
func (c *conn) stopExpiry() {
	if c.expiry != nil {
		c.expiry.Stop()
	}
}

// expire closes c because its token expired.
func (c *conn) expire() {
	c.srv.cfg.Logger.Debug("cloud: token expired", "key", c.key, "mid", c.mid)
	c.endAs(imcloud.ReasonTokenExpired, "")
	c.disconnect(imcloud.ReasonTokenExpired, 0)
}

// refresh serves op 22: a ver-2 connection's token refresh; a ver-1
// connection's op 22 is an upstream message, as goim takes the ops it does
// not know.
func (c *conn) refresh(f *protocol.Frame) {
	if !c.ext {
		c.upstream(f)
		return
	}
	s := c.srv
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	id, code, err := c.reauthenticate(ctx, string(f.Body))
	if code != "" {
		s.cfg.Logger.Debug("cloud: token refresh refused", "key", c.key, "mid", c.mid, "code", code, "err", err)
		b, _ := json.Marshal(refreshReply{Error: code})
		c.endAs(imcloud.ReasonProtocolError, "")
		c.disconnect(refusals[refusedAuth].code, 0, replyItem(f, protocol.OpRefreshReply, b))
		return
	}
	c.armExpiry(id.Expires)
	c.restrict, c.allowed = id.RestrictRooms, id.Rooms
	var exp int64
	if !id.Expires.IsZero() {
		exp = id.Expires.Unix()
	}
	b, _ := json.Marshal(refreshReply{OK: true, Expires: &exp})
	c.reply(f, protocol.OpRefreshReply, b)
}

// reauthenticate runs the authenticator on token for c and checks the
// identity it returns against c's: code is "" when the refresh is
// accepted, else its refusal code (err the authenticator's error, if any).
func (c *conn) reauthenticate(ctx context.Context, token string) (Identity, string, error) {
	s := c.srv
	body := AuthBody{Mid: c.mid, Key: c.key, RoomID: c.b.roomOf(c), Platform: c.platform, Token: token}
	if p := c.accepts.Load(); p != nil {
		body.Accepts = *p
	}
	raw, _ := json.Marshal(body)
	req := &AuthRequest{Body: body, Raw: raw, ClientIP: c.ip, RemoteAddr: c.nc.RemoteAddr().String(),
		WebSocket: c.ws, Refresh: true}
	_, req.TLS = c.nc.(*tls.Conn)
	id, err := s.cfg.Authenticator.Authenticate(ctx, req)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return id, refreshExpired, err
	case err != nil:
		return id, refreshInvalid, err
	case !id.Expires.IsZero() && !id.Expires.After(time.Now()):
		return id, refreshExpired, nil
	case id.Mid != c.mid:
		return id, refreshOtherUser, nil
	}
	if id.BindKey || c.bindKey {
		if key, err := bindKey(id); err != nil || key != c.key {
			return id, refreshOtherKey, err
		}
	}
	// As at auth, a store that fails lets the refresh through.
	if revoked, err := s.revoked(ctx, id); revoked {
		return id, refreshRevoked, errRevoked
	} else if err != nil {
		s.cfg.Logger.Debug("cloud: revocation check failed; refresh allowed", "mid", id.Mid, "err", err)
	}
	return id, "", nil
}

// replyItem is the reply to f with op and body, as a queue item.
func replyItem(f *protocol.Frame, op int32, body []byte) outItem {
	return outItem{b: protocol.AppendFrame(make([]byte, 0, protocol.HeaderLen+len(body)), &protocol.Frame{Ver: f.Ver, Op: op, Seq: f.Seq, Body: body}), kind: itemFrame}
}
