package cloud_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// signingKey is a test key pair with its kid and algorithm.
type signingKey struct {
	kid    string
	method jwt.SigningMethod
	priv   any
	pub    any
	use    jwkset.USE
}

func rsaKey(t *testing.T, kid string) signingKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return signingKey{kid: kid, method: jwt.SigningMethodRS256, priv: k, pub: &k.PublicKey}
}

func ecKey(t *testing.T, kid string, curve elliptic.Curve, method jwt.SigningMethod) signingKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	require.NoError(t, err)
	return signingKey{kid: kid, method: method, priv: k, pub: &k.PublicKey}
}

// jwksJSON is a JWK Set of the keys' public halves, each with its kid and
// alg; extra JWKs (JSON objects) are appended as they are.
func jwksJSON(t *testing.T, keys []signingKey, extra ...string) []byte {
	t.Helper()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.kid, ALG: jwkset.ALG(k.method.Alg()), USE: k.use}})
		require.NoError(t, err)
		b, err := json.Marshal(jwk.Marshal())
		require.NoError(t, err)
		set.Keys = append(set.Keys, b)
	}
	for _, e := range extra {
		set.Keys = append(set.Keys, json.RawMessage(e))
	}
	b, err := json.Marshal(set)
	require.NoError(t, err)
	return b
}

// mint signs a token for mid valid for ttl with k (its kid in the header
// unless kid is "-").
func (k signingKey) mint(t *testing.T, mid int64, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(k.method, jwt.MapClaims{"mid": mid, "iat": now.Unix(), "exp": now.Add(ttl).Unix()})
	if k.kid != "-" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.priv)
	require.NoError(t, err)
	return s
}

// jwksServer serves a JWK Set that the test may change.
type jwksServer struct {
	mu    sync.Mutex
	body  []byte
	reads int
	srv   *httptest.Server
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	j := &jwksServer{body: body}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.reads++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(j.body)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) set(body []byte) {
	j.mu.Lock()
	j.body = body
	j.mu.Unlock()
}

func newJWTAuth(t *testing.T, cfg cloud.JWTConfig) *cloud.TokenAuthenticator {
	t.Helper()
	a, err := cloud.NewJWTAuthenticator(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func authToken(a cloud.Authenticator, tok string) (cloud.Identity, error) {
	return a.Authenticate(context.Background(), &cloud.AuthRequest{Body: cloud.AuthBody{Token: tok}})
}

// TestJWTAuthenticatorKeySets: RS256 and ES256 tokens verify with the keys
// of a JWK Set file and of a JWK Set URL, chosen by kid (or tried all
// without one), and the identity carries the token's iat and exp.
func TestJWTAuthenticatorKeySets(t *testing.T) {
	rs := rsaKey(t, "rs-1")
	es := ecKey(t, "es-1", elliptic.P256(), jwt.SigningMethodES256)
	set := jwksJSON(t, []signingKey{rs, es})
	file := filepath.Join(t.TempDir(), "jwks.json")
	require.NoError(t, os.WriteFile(file, set, 0o600))
	url := newJWKSServer(t, set).srv.URL

	for name, cfg := range map[string]cloud.JWTConfig{
		"file": {JWKSFile: file},
		"url":  {JWKSURL: url},
	} {
		t.Run(name, func(t *testing.T) {
			a := newJWTAuth(t, cfg)
			for _, k := range []signingKey{rs, es} {
				tok := k.mint(t, 42, time.Minute)
				id, err := authToken(a, tok)
				require.NoError(t, err, k.kid)
				require.Equal(t, int64(42), id.Mid)
				require.True(t, id.BindKey)
				require.WithinDuration(t, time.Now(), id.IssuedAt, 2*time.Second)
				require.WithinDuration(t, time.Now().Add(time.Minute), id.Expires, 2*time.Second)

				noKid := k
				noKid.kid = "-"
				_, err = authToken(a, noKid.mint(t, 42, time.Minute))
				require.NoError(t, err, "%s without kid", k.kid)
			}
			// HS256 is not configured: refused even with a valid HMAC.
			hs, err := cloud.NewToken([]byte("s3cret"), 42, time.Minute)
			require.NoError(t, err)
			_, err = authToken(a, hs)
			require.ErrorIs(t, err, cloud.ErrBadToken)
		})
	}

	// Both sources and HS256 at once.
	a := newJWTAuth(t, cloud.JWTConfig{HS256Secret: []byte("s3cret"), JWKSFile: file, JWKSURL: url})
	hs, err := cloud.NewToken([]byte("s3cret"), 7, time.Minute)
	require.NoError(t, err)
	id, err := authToken(a, hs)
	require.NoError(t, err)
	require.Equal(t, int64(7), id.Mid)
	require.False(t, id.Expires.IsZero())
	_, err = authToken(a, es.mint(t, 7, time.Minute))
	require.NoError(t, err)
}

// TestJWTKidRotationURL: a key added to the URL's set is taken at once
// for a token naming its kid (the unknown-kid read); a kid the set still
// lacks is refused, and does not read the set again within
// RefreshUnknownKID.
func TestJWTKidRotationURL(t *testing.T) {
	old, next := rsaKey(t, "2026-01"), ecKey(t, "2026-02", elliptic.P256(), jwt.SigningMethodES256)
	js := newJWKSServer(t, jwksJSON(t, []signingKey{old}))
	a := newJWTAuth(t, cloud.JWTConfig{JWKSURL: js.srv.URL, RefreshInterval: time.Hour, RefreshUnknownKID: time.Hour})

	_, err := authToken(a, old.mint(t, 1, time.Minute))
	require.NoError(t, err)

	js.set(jwksJSON(t, []signingKey{old, next}))
	_, err = authToken(a, next.mint(t, 1, time.Minute))
	require.NoError(t, err, "a token of the new kid after the set published it")

	js.mu.Lock()
	reads := js.reads
	js.mu.Unlock()
	unknown := rsaKey(t, "2026-03")
	_, err = authToken(a, unknown.mint(t, 1, time.Minute))
	require.ErrorIs(t, err, cloud.ErrBadToken, "unknown kid")
	js.mu.Lock()
	require.Equal(t, reads, js.reads, "the unknown-kid read is rate-limited")
	js.mu.Unlock()
}

// TestJWTKidRotationFile: the file is read again every RefreshInterval: a
// key written into it is taken after the next read, a key removed from it
// is refused after it; with RefreshUnknownKID negative an unknown kid
// never reads the file early.
func TestJWTKidRotationFile(t *testing.T) {
	old, next := rsaKey(t, "a"), rsaKey(t, "b")
	file := filepath.Join(t.TempDir(), "jwks.json")
	write := func(keys ...signingKey) {
		tmp := file + ".tmp"
		require.NoError(t, os.WriteFile(tmp, jwksJSON(t, keys), 0o600))
		require.NoError(t, os.Rename(tmp, file))
	}
	write(old)
	a := newJWTAuth(t, cloud.JWTConfig{JWKSFile: file, RefreshInterval: 50 * time.Millisecond, RefreshUnknownKID: -1})

	_, err := authToken(a, next.mint(t, 1, time.Minute))
	require.ErrorIs(t, err, cloud.ErrBadToken, "kid b is not in the file yet")
	write(old, next)
	waitFor(t, "kid b taken", func() bool {
		_, err := authToken(a, next.mint(t, 1, time.Minute))
		return err == nil
	})
	write(next)
	waitFor(t, "kid a removed", func() bool {
		_, err := authToken(a, old.mint(t, 1, time.Minute))
		return err != nil
	})
	_, err = authToken(a, next.mint(t, 1, time.Minute))
	require.NoError(t, err)
}

// TestJWTAlgConfusion: no token chooses its own verification: HS256
// "signed" with the RSA public key's bytes, "none", a kid naming a key of
// another type or curve, a symmetric key of the set, a key whose use is
// not sig, and a foreign key under a known kid are all refused.
func TestJWTAlgConfusion(t *testing.T) {
	rs := rsaKey(t, "rs")
	es := ecKey(t, "es", elliptic.P256(), jwt.SigningMethodES256)
	p384 := ecKey(t, "p384", elliptic.P384(), jwt.SigningMethodES384)
	enc := rsaKey(t, "enc")
	enc.use = jwkset.UseEnc
	octSecret := []byte("a symmetric key published by mistake")
	oct := `{"kty":"oct","kid":"oct","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString(octSecret) + `"}`
	url := newJWKSServer(t, jwksJSON(t, []signingKey{rs, es, p384, enc}, oct)).srv.URL

	der, err := x509.MarshalPKIXPublicKey(rs.pub)
	require.NoError(t, err)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	exp := time.Now().Add(time.Minute).Unix()
	sign := func(method jwt.SigningMethod, kid string, key any) string {
		tok := jwt.NewWithClaims(method, jwt.MapClaims{"mid": 1, "exp": exp})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	foreign := rsaKey(t, "rs")
	tokens := map[string]string{
		"HS256 with the PEM public key": sign(jwt.SigningMethodHS256, "rs", pemKey),
		"HS256 with the DER public key": sign(jwt.SigningMethodHS256, "rs", der),
		"HS256 with the set's oct key":  sign(jwt.SigningMethodHS256, "oct", octSecret),
		"none":                          sign(jwt.SigningMethodNone, "rs", jwt.UnsafeAllowNoneSignatureType),
		"RS256 naming the EC key":       sign(jwt.SigningMethodRS256, "es", rs.priv),
		"ES256 naming the RSA key":      sign(jwt.SigningMethodES256, "rs", es.priv),
		"ES384 on P-384":                sign(jwt.SigningMethodES384, "p384", p384.priv),
		"ES256 naming the P-384 key":    sign(jwt.SigningMethodES256, "p384", es.priv),
		"RS256 with a use:enc key":      sign(jwt.SigningMethodRS256, "enc", enc.priv),
		"RS256 by a foreign key":        sign(jwt.SigningMethodRS256, "rs", foreign.priv),
		"PS256 with the RSA key":        sign(jwt.SigningMethodPS256, "rs", rs.priv),
	}
	for cfgName, cfg := range map[string]cloud.JWTConfig{
		"key set only":       {JWKSURL: url, RefreshUnknownKID: -1},
		"key set and HS256":  {JWKSURL: url, HS256Secret: []byte("s3cret"), RefreshUnknownKID: -1},
		"HS256 only (NewTo)": {HS256Secret: []byte("s3cret")},
	} {
		a := newJWTAuth(t, cfg)
		for name, tok := range tokens {
			_, err := authToken(a, tok)
			require.ErrorIs(t, err, cloud.ErrBadToken, "%s: %s", cfgName, name)
		}
	}
	// The keys themselves do verify their own algorithms.
	a := newJWTAuth(t, cloud.JWTConfig{JWKSURL: url})
	_, err = authToken(a, sign(jwt.SigningMethodRS256, "rs", rs.priv))
	require.NoError(t, err)
	_, err = authToken(a, sign(jwt.SigningMethodES256, "es", es.priv))
	require.NoError(t, err)
}

// TestJWTConfigErrors: a configuration that could verify nothing, or whose
// key set cannot be read, is an error at construction.
func TestJWTConfigErrors(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer failing.Close()
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("not json"), 0o600))
	for name, cfg := range map[string]cloud.JWTConfig{
		"nothing":       {},
		"missing file":  {JWKSFile: filepath.Join(t.TempDir(), "none.json")},
		"bad file":      {JWKSFile: bad},
		"not http":      {JWKSURL: "ftp://example.com/jwks.json"},
		"URL failing":   {JWKSURL: failing.URL},
		"URL not a URL": {JWKSURL: "::"},
	} {
		_, err := cloud.NewJWTAuthenticator(cfg)
		require.Error(t, err, name)
	}
}
