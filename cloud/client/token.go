package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/imcloud/imcloud/protocol"
)

// Tokens (docs/protocol-token.md). A node with a token
// authenticator closes a connection when its token expires. With
// Config.TokenFunc the client gets a token before every dial (so a
// reconnect never reuses an expired one) and, when the token carries an
// "exp" and the client has Extensions, a fresh one at about 80% of the
// token's remaining lifetime when it got it, which it sends in op 22
// Refresh: the node then keeps the connection until the new token's
// expiry. The token is read without being verified, only for its "exp";
// the client needs no key. A refresh that fails is reported on
// TokenErrors(): a TokenFunc error is retried halfway to the expiry (at
// least a second later), a refusal (*RefreshError) ends the connection,
// as the node closes it (op 6 "auth"), and a client with Reconnect dials
// again with a token from TokenFunc.

// Errors of a token refresh.
var (
	// ErrRefreshRefused is wrapped by the *RefreshError of a refused
	// refresh: the node closes the connection.
	ErrRefreshRefused = errors.New("client: token refresh refused")
	// ErrRefreshUnsupported: the node answered op 22 with another op, as
	// a node older than token refresh does (an upstream message's echo);
	// such a node does not close connections at their token's expiry.
	ErrRefreshUnsupported = errors.New("client: the node does not support token refresh")
	// ErrNoTokenFunc: Refresh needs Config.TokenFunc.
	ErrNoTokenFunc = errors.New("client: Refresh needs Config.TokenFunc")
	// ErrRefreshNeedsExtensions: Refresh needs Config.Extensions (or
	// Recover); a goim node takes op 22 for an upstream message.
	ErrRefreshNeedsExtensions = errors.New("client: Refresh needs Config.Extensions")
)

// RefreshError is a refused token refresh. It wraps ErrRefreshRefused.
type RefreshError struct {
	// Code is the node's reason: "invalid_token", "token_expired",
	// "other_user", "other_key" or "revoked".
	Code string
}

func (e *RefreshError) Error() string { return "client: token refresh refused: " + e.Code }

// Unwrap returns ErrRefreshRefused.
func (e *RefreshError) Unwrap() error { return ErrRefreshRefused }

// minRefreshGap spaces refreshes even when a token has next to no
// lifetime left (a TokenFunc that keeps returning the same one).
const minRefreshGap = 200 * time.Millisecond

// TokenErrors returns the failures of the background token refreshes
// (Config.TokenFunc): TokenFunc's errors and refusals (*RefreshError).
// Bounded: a failure that finds it full is dropped.
func (c *Client) TokenErrors() <-chan error { return c.tokenErrs }

// Refresh gets a token from Config.TokenFunc and sends it to the node (op
// 22), waiting for the reply: the node keeps the connection until the new
// token's expiry, which Refresh returns (zero: the token has none). A
// refusal is a *RefreshError, and the node closes the connection. The
// client refreshes by itself before its token expires; Refresh is for a
// token the application knows is stale (new rights, a logout elsewhere).
func (c *Client) Refresh(ctx context.Context) (time.Time, error) {
	if c.cfg.TokenFunc == nil {
		return time.Time{}, ErrNoTokenFunc
	}
	if c.ver() != protocol.VerExtensions {
		return time.Time{}, ErrRefreshNeedsExtensions
	}
	tok, err := c.cfg.TokenFunc(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("client: token: %w", err)
	}
	f, err := c.request(ctx, protocol.OpRefresh, []byte(tok))
	if err != nil {
		return time.Time{}, err
	}
	if f.Op != protocol.OpRefreshReply {
		return time.Time{}, ErrRefreshUnsupported
	}
	var r struct {
		OK      bool   `json:"ok"`
		Expires int64  `json:"expires"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(f.Body, &r); err != nil {
		return time.Time{}, fmt.Errorf("client: malformed refresh reply: %w", err)
	}
	if !r.OK {
		return time.Time{}, &RefreshError{Code: r.Error}
	}
	c.setToken(tok)
	if r.Expires == 0 {
		return time.Time{}, nil
	}
	return time.Unix(r.Expires, 0), nil
}

// token returns the token for a new connection: TokenFunc's, or
// Config.Token.
func (c *Client) token(ctx context.Context) (string, error) {
	if c.cfg.TokenFunc == nil {
		return c.cfg.Token, nil
	}
	tok, err := c.cfg.TokenFunc(ctx)
	if err != nil {
		return "", fmt.Errorf("client: token: %w", err)
	}
	return tok, nil
}

// setToken records tok as the connection's token: its expiry, and when
// it is due for a refresh: at 80% of the lifetime it has left now (never
// when it has no "exp" or is not a JWT).
func (c *Client) setToken(tok string) {
	var exp, due time.Time
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err == nil && claims.ExpiresAt != nil {
		now := time.Now()
		exp = claims.ExpiresAt.Time
		due = now.Add(exp.Sub(now) * 4 / 5)
	}
	c.mu.Lock()
	c.tokenExp, c.refreshDue = exp, due
	c.mu.Unlock()
}

// refreshes keeps the connection's token fresh until stop is closed: it
// refreshes when the token is due, reports failures on TokenErrors(),
// retries TokenFunc's, and stops at a refusal (the node closes the
// connection) or on a node without refresh.
func (c *Client) refreshes(stop <-chan struct{}) {
	if c.cfg.TokenFunc == nil || c.ver() != protocol.VerExtensions {
		return
	}
	last := time.Now()
	for {
		c.mu.Lock()
		due := c.refreshDue
		c.mu.Unlock()
		if due.IsZero() {
			return
		}
		at := due
		if gap := last.Add(minRefreshGap); gap.After(at) {
			at = gap
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
		_, err := c.Refresh(ctx)
		cancel()
		if err == nil {
			continue
		}
		c.tokenError(err)
		if errors.Is(err, ErrRefreshRefused) || errors.Is(err, ErrRefreshUnsupported) ||
			errors.Is(err, ErrDisconnected) || errors.Is(err, ErrClosed) {
			return
		}
		// TokenFunc failed, or the reply was late: again halfway to the
		// token's expiry.
		c.mu.Lock()
		if c.refreshDue.Equal(due) {
			c.refreshDue = time.Now().Add(max(time.Until(c.tokenExp)/2, time.Second))
		}
		c.mu.Unlock()
	}
}

// tokenError reports a background refresh's failure.
func (c *Client) tokenError(err error) {
	select {
	case c.tokenErrs <- err:
	default:
	}
}
