package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
)

// TestJWKSFlags: -jwks-file (or -jwks-url) selects token auth; clients
// connect with ES256 tokens signed by a key of the file, named by kid,
// next to HS256 ones of -token-secret; a token of another key is refused;
// an unreadable key set stops the start.
func TestJWKSFlags(t *testing.T) {
	cfg, err := Parse([]string{"-jwks-url", "https://idp.example/jwks.json"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, AuthToken, cfg.Auth)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k1", ALG: jwkset.AlgES256}})
	require.NoError(t, err)
	set, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(file, set, 0o600))

	app := startAllInOne(t, "-jwks-file", file, "-token-secret", "s3cret")
	sign := func(k *ecdsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"mid": 8, "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(k)
		require.NoError(t, err)
		return s
	}
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Token: sign(key)})
	require.NoError(t, err)
	require.Equal(t, int64(8), c.Auth().Mid)
	_ = c.Close()
	hs, err := cloud.NewToken([]byte("s3cret"), 9, time.Hour)
	require.NoError(t, err)
	c, err = client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Token: hs})
	require.NoError(t, err)
	require.Equal(t, int64(9), c.Auth().Mid)
	_ = c.Close()

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, err = client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Token: sign(other)})
	require.ErrorIs(t, err, client.ErrAuthRefused)

	cfg, err = Parse([]string{"-tcp-addr", "127.0.0.1:0", "-ws-addr", "", "-http-addr", "127.0.0.1:0",
		"-jwks-file", filepath.Join(t.TempDir(), "missing.json")}, noEnv, io.Discard)
	require.NoError(t, err)
	_, err = New(cfg, nil)
	require.ErrorContains(t, err, "JWK Set")
}
