package cloud_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// TestTokenAuthenticator checks the token rules directly: a good token
// names the user; a wrong signature, a missing expiry, another algorithm
// and a critical header extension are refused.
func TestTokenAuthenticator(t *testing.T) {
	secret := []byte("s3cret")
	a := cloud.NewTokenAuthenticator(secret)
	auth := func(tok string) (cloud.Identity, error) {
		return a.Authenticate(context.Background(), &cloud.AuthRequest{Body: cloud.AuthBody{Token: tok}})
	}
	sign := func(header map[string]any, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(method, claims)
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	exp := time.Now().Add(time.Minute).Unix()

	good, err := cloud.NewToken(secret, 42, time.Minute)
	require.NoError(t, err)
	id, err := auth(good)
	require.NoError(t, err)
	require.Equal(t, int64(42), id.Mid)
	require.True(t, id.BindKey)

	for name, tok := range map[string]string{
		"wrong secret":  sign(nil, jwt.MapClaims{"mid": 42, "exp": exp}, jwt.SigningMethodHS256, []byte("other")),
		"no expiry":     sign(nil, jwt.MapClaims{"mid": 42}, jwt.SigningMethodHS256, secret),
		"HS512":         sign(nil, jwt.MapClaims{"mid": 42, "exp": exp}, jwt.SigningMethodHS512, secret),
		"crit header":   sign(map[string]any{"crit": []string{"b64"}, "b64": false}, jwt.MapClaims{"mid": 42, "exp": exp}, jwt.SigningMethodHS256, secret),
		"no mid":        sign(nil, jwt.MapClaims{"exp": exp}, jwt.SigningMethodHS256, secret),
		"text subject":  sign(nil, jwt.MapClaims{"sub": "alice", "exp": exp}, jwt.SigningMethodHS256, secret),
		"not a token":   "x.y.z",
		"empty payload": "",
	} {
		_, err := auth(tok)
		require.ErrorIs(t, err, cloud.ErrAuthRefused, name)
	}
}

// TestTokenRooms: the "rooms" claim restricts the identity's rooms to its
// patterns; a token without it enters no room; a claim that is not an array
// of strings, or beyond its limits, refuses the token.
func TestTokenRooms(t *testing.T) {
	secret := []byte("s3cret")
	a := cloud.NewTokenAuthenticator(secret)
	auth := func(tok string) (cloud.Identity, error) {
		return a.Authenticate(context.Background(), &cloud.AuthRequest{Body: cloud.AuthBody{Token: tok, RoomID: "live://1"}})
	}
	mint := func(rooms ...string) string {
		tok, err := cloud.NewToken(secret, 42, time.Minute, rooms...)
		require.NoError(t, err)
		return tok
	}
	sign := func(rooms any) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"mid": 42, "exp": time.Now().Add(time.Minute).Unix(), "rooms": rooms,
		}).SignedString(secret)
		require.NoError(t, err)
		return s
	}

	for _, tc := range []struct {
		name  string
		tok   string
		rooms []string
		may   map[string]bool
	}{
		{"without the claim", mint(), nil,
			map[string]bool{"live://1": false, "": true}},
		{"empty claim", sign([]string{}), nil,
			map[string]bool{"live://1": false, "": true}},
		{"exact rooms", mint("live://1", "chat://2"), []string{"live://1", "chat://2"},
			map[string]bool{"live://1": true, "chat://2": true, "live://10": false, "chat://1": false}},
		{"prefix pattern", mint("live://*"), []string{"live://*"},
			map[string]bool{"live://1": true, "live://anything": true, "chat://1": false}},
		{"every room", mint("*"), []string{"*"},
			map[string]bool{"live://1": true, "chat://1": true}},
		{"limits reached", sign(append(make([]string, 999), strings.Repeat("x", 256))), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth(tc.tok)
			require.NoError(t, err)
			assert.True(t, id.RestrictRooms)
			assert.Equal(t, int64(42), id.Mid)
			assert.Equal(t, "live://1", id.Room)
			if tc.rooms != nil {
				assert.Equal(t, tc.rooms, id.Rooms)
			}
			for room, want := range tc.may {
				assert.Equal(t, want, id.MayEnter(room), "room %q", room)
			}
		})
	}

	for name, tok := range map[string]string{
		"not an array":      sign("live://*"),
		"not strings":       sign([]any{"live://1", 7}),
		"an object":         sign(map[string]any{"live://1": true}),
		"too many patterns": sign(make([]string, 1001)),
		"pattern too long":  sign([]string{"live://" + strings.Repeat("x", 250)}),
	} {
		_, err := auth(tok)
		require.ErrorIs(t, err, cloud.ErrBadToken, name)
	}
	_, err := cloud.NewToken(secret, 42, time.Minute, make([]string, 1001)...)
	require.ErrorIs(t, err, cloud.ErrBadToken)
}
