package cloud_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
