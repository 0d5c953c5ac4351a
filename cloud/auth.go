package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/imcloud/imcloud"
)

// AuthBody is the JSON a client sends in its op 7 auth frame (goim's fields
// plus token).
type AuthBody struct {
	Mid      int64   `json:"mid"`
	Key      string  `json:"key"`
	RoomID   string  `json:"room_id"`
	Platform string  `json:"platform"`
	Accepts  []int32 `json:"accepts"`
	Token    string  `json:"token,omitempty"`
	// Recover, with an auth frame of ver 2, makes the connection a
	// recover connection (docs/protocol-recovery.md): pushes with a
	// stream arrive as op 24, and the pushes missed after Positions are
	// replayed. Ignored otherwise.
	Recover bool `json:"recover,omitempty"`
	// Positions are the positions last seen, by stream name ("u:42",
	// "r:live://1"); at most 16, or the auth is refused as malformed.
	Positions map[string]imcloud.Position `json:"positions,omitempty"`
}

// AuthRequest is what an Authenticator sees: the parsed auth body and the
// connection's context. It is only valid during the call.
type AuthRequest struct {
	// Body is the parsed auth JSON; Raw the bytes it came from.
	Body AuthBody
	Raw  []byte
	// ClientIP is the client's address (from a trusted proxy when
	// configured); RemoteAddr the socket peer.
	ClientIP   netip.Addr
	RemoteAddr string
	// WebSocket reports a WebSocket connection; Header and Query are then
	// the upgrade request's headers (cookies included) and query string.
	WebSocket bool
	Header    http.Header
	Query     url.Values
	// TLS reports whether the connection is encrypted.
	TLS bool
	// Refresh reports a token refresh (op 22) of an authenticated
	// connection rather than its auth: Body is then the connection's auth
	// body as it stands (mid, key as bound, primary room, platform,
	// accepts) with the new token, Raw its JSON, and Header and Query are
	// nil (the upgrade request is not kept).
	Refresh bool
}

// Cookie returns the named cookie of the WebSocket upgrade request.
func (r *AuthRequest) Cookie(name string) (*http.Cookie, bool) {
	if r.Header == nil {
		return nil, false
	}
	c, err := (&http.Request{Header: r.Header}).Cookie(name)
	return c, err == nil
}

// Identity is who an authenticator decided the client is.
type Identity struct {
	// Mid is the user id.
	Mid int64
	// Key is the connection key to use; empty means the server assigns
	// one.
	Key string
	// Room, Platform and Accepts are the connection's initial room, platform
	// and accepted push ops.
	Room     string
	Platform string
	Accepts  []int32
	// Rooms are the rooms the identity may enter when RestrictRooms is
	// set: room keys, where a trailing "*" matches a prefix ("live://*")
	// and a lone "*" every room (see MayEnter).
	Rooms []string
	// RestrictRooms limits the rooms the connection may enter (auth
	// room, ChangeRoom, Join) to Rooms. The token authenticator sets it
	// (from the token's "rooms" claim); DevAuthenticator does not.
	RestrictRooms bool
	// IssuedAt and Expires are the credential's "iat" and "exp" when it
	// has them (the token authenticator sets both). A connection is closed
	// at Expires (op 6 "token_expired") unless it refreshed its token
	// (op 22) first; an auth or refresh whose IssuedAt is before a
	// revocation of Mid (a kick that revoked, RevocationStore) is refused.
	// Zero: no expiry, no revocation check.
	IssuedAt, Expires time.Time
	// BindKey binds the key to Mid: a client-chosen key is namespaced as
	// "mid:key", so no client can claim, evict or receive another user's
	// key. Token authenticators set it.
	BindKey bool
}

// RoomRequest is what Config.RoomAuth sees: who asks to enter which room,
// and how.
type RoomRequest struct {
	// Identity is the connection's, as its authenticator returned it (the
	// key already bound when BindKey was set).
	Identity Identity
	// Room is the room key asked for.
	Room string
	// Op is how: protocol.OpAuth (the auth room_id), OpChangeRoom or
	// OpJoin.
	Op int32
}

// ErrRoomForbidden is what a refused room entry reports, wrapped.
var ErrRoomForbidden = errors.New("cloud: room forbidden")

// Authenticator decides who a connecting client is. It may be called from
// many goroutines at once and should return quickly (it runs inside the
// handshake timeout, which ctx carries). A non-nil error refuses the
// client: the connection is closed and the refusal counted.
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (Identity, error)
}

// AuthFunc adapts a function to Authenticator.
type AuthFunc func(ctx context.Context, req *AuthRequest) (Identity, error)

// Authenticate calls f.
func (f AuthFunc) Authenticate(ctx context.Context, req *AuthRequest) (Identity, error) {
	return f(ctx, req)
}

// Errors an authenticator returns.
var (
	// ErrAuthRefused is the base of every refusal by this package's
	// authenticators.
	ErrAuthRefused = errors.New("cloud: authentication refused")
	// ErrNoToken: a token authenticator got an auth body without a token.
	ErrNoToken = fmt.Errorf("%w: no token", ErrAuthRefused)
	// ErrBadToken: the token is malformed, badly signed or expired.
	ErrBadToken = fmt.Errorf("%w: invalid token", ErrAuthRefused)
)

// DevAuthenticator trusts whatever the client's JSON says, as goim does.
// Only for development and trusted networks: any client can claim any mid
// and key.
func DevAuthenticator() Authenticator {
	return AuthFunc(func(_ context.Context, req *AuthRequest) (Identity, error) {
		b := req.Body
		return Identity{Mid: b.Mid, Key: b.Key, Room: b.RoomID, Platform: b.Platform, Accepts: b.Accepts}, nil
	})
}

// tokenClaims are the JWT claims NewToken writes and the token
// authenticator reads: the user id in "mid" (or "sub" when "mid" is
// absent), the room patterns the token may enter in "rooms" and a required
// expiry.
type tokenClaims struct {
	Mid   *int64   `json:"mid,omitempty"`
	Rooms []string `json:"rooms,omitempty"`
	jwt.RegisteredClaims
}

// Limits of a token's "rooms" claim: a claim beyond them refuses the token
// (ErrBadToken), so a token cannot make a connection hold an unbounded list.
const (
	maxTokenRooms      = 1000
	maxTokenRoomLength = 256
)

// TokenAuthenticator verifies JWTs (with a required "exp") carried in the
// auth body's "token": HS256 from NewTokenAuthenticator, also RS256 and
// ES256 from NewJWTAuthenticator (keys and rotation: JWTConfig). The
// verified "mid" claim (or a numeric "sub") overrides the client's mid and
// the connection key is bound to it. The identity's IssuedAt and Expires
// are the token's "iat" (zero without one) and "exp": the connection is
// closed at "exp" unless it refreshes its token first (op 22).
//
// The "rooms" claim, an array of room patterns (Identity.MayEnter: a room
// key, a prefix ending in "*" such as "live://*", or "*" for every room),
// says which rooms the connection may enter (auth room_id, ChangeRoom,
// Join): the identity has RestrictRooms set and Rooms from the claim, so a
// token without the claim enters no room. At most 1,000 patterns of at most
// 256 bytes each; a claim that is not an array of strings, or beyond those
// limits, refuses the token.
type TokenAuthenticator struct {
	secret []byte // HS256; empty: refused
	parser *jwt.Parser
	// keys are the JWK Sets' keys (RS256, ES256; jwt.go), nil without;
	// stop ends their refresh.
	keys keyfunc.Keyfunc
	stop func()
}

// NewTokenAuthenticator returns a token authenticator of HS256 tokens
// signed with secret.
func NewTokenAuthenticator(secret []byte) *TokenAuthenticator {
	a, err := NewJWTAuthenticator(JWTConfig{HS256Secret: secret})
	if err != nil {
		// Only an empty secret fails: it verifies nothing.
		return &TokenAuthenticator{parser: jwt.NewParser(jwt.WithValidMethods([]string{algHS256}))}
	}
	return a
}

// Authenticate implements Authenticator. A refused token's error wraps
// ErrBadToken and the parser's reason (jwt.ErrTokenExpired for an expired
// one).
func (a *TokenAuthenticator) Authenticate(ctx context.Context, req *AuthRequest) (Identity, error) {
	b := req.Body
	if b.Token == "" {
		return Identity{}, ErrNoToken
	}
	var claims tokenClaims
	tok, err := a.parser.ParseWithClaims(b.Token, &claims, a.keyFor(ctx))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if _, ok := tok.Header["crit"]; ok {
		// RFC 7515 4.1.11: a token naming extensions the recipient must
		// understand is refused unless it does; this one understands none.
		return Identity{}, fmt.Errorf("%w: critical header extensions are not supported", ErrBadToken)
	}
	var mid int64
	switch {
	case claims.Mid != nil:
		mid = *claims.Mid
	case claims.Subject != "":
		mid, err = strconv.ParseInt(claims.Subject, 10, 64)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: subject is not a mid", ErrBadToken)
		}
	default:
		return Identity{}, fmt.Errorf("%w: no mid claim", ErrBadToken)
	}
	if err := validTokenRooms(claims.Rooms); err != nil {
		return Identity{}, err
	}
	id := Identity{Mid: mid, Key: b.Key, Room: b.RoomID, Platform: b.Platform, Accepts: b.Accepts,
		Rooms: claims.Rooms, RestrictRooms: true, BindKey: true, Expires: claims.ExpiresAt.Time}
	if claims.IssuedAt != nil {
		id.IssuedAt = claims.IssuedAt.Time
	}
	return id, nil
}

// validTokenRooms checks a "rooms" claim against its limits.
func validTokenRooms(rooms []string) error {
	if len(rooms) > maxTokenRooms {
		return fmt.Errorf("%w: rooms claim has %d patterns, at most %d allowed", ErrBadToken, len(rooms), maxTokenRooms)
	}
	for i, p := range rooms {
		if len(p) > maxTokenRoomLength {
			return fmt.Errorf("%w: rooms claim pattern %d is %d bytes, at most %d allowed", ErrBadToken, i, len(p), maxTokenRoomLength)
		}
	}
	return nil
}

// NewToken mints an HS256 token for mid valid for ttl, as
// NewTokenAuthenticator(secret) verifies it. rooms, when given, are the
// token's "rooms" claim: the room patterns it may enter (a room key, a
// prefix ending in "*", or "*" for every room; see Identity.MayEnter).
// Without rooms the claim is absent and the token's connections enter no
// room.
func NewToken(secret []byte, mid int64, ttl time.Duration, rooms ...string) (string, error) {
	if err := validTokenRooms(rooms); err != nil {
		return "", err
	}
	now := time.Now()
	claims := tokenClaims{
		Mid:   &mid,
		Rooms: rooms,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   strconv.FormatInt(mid, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
