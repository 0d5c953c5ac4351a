package cloud

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// JWTConfig configures NewJWTAuthenticator: which signatures it takes and
// where their keys come from. At least one of HS256Secret, JWKSFile and
// JWKSURL is required.
//
// Keys: HS256 tokens are verified with HS256Secret alone; RS256 and ES256
// tokens with the public keys of the JSON Web Key Sets (RFC 7517) in
// JWKSFile and JWKSURL, chosen by the token's "kid" header (a token
// without "kid" is tried against every key of its type). Only RSA keys
// verify RS256 and only P-256 EC keys ES256; a key set's symmetric ("oct")
// keys are never used, and a key whose "use" is not "sig" (or absent) or
// whose "alg" differs from the token's is refused. So no token can pick
// its own verification (alg confusion: an HS256 token "signed" with a
// public key, or "none", is refused).
//
// Rotation: the key sets are read when the authenticator is built (a set
// that cannot be read then is an error), again every RefreshInterval, and
// at once when a token names a kid they do not have, at most once per
// RefreshUnknownKID, within the auth's time (Config.HandshakeTimeout). A
// new key is published in the set before tokens are signed with it; a
// key removed from the set is refused after the next read. A failed read
// keeps the keys already known and is logged.
type JWTConfig struct {
	// HS256Secret verifies HS256 tokens; nil or empty: HS256 is refused.
	HS256Secret []byte
	// JWKSFile is the path of a JWK Set file (JSON, {"keys":[...]}).
	JWKSFile string
	// JWKSURL is the http(s) URL of a JWK Set (an identity provider's
	// jwks_uri); use https outside tests.
	JWKSURL string
	// RefreshInterval is how often the key sets are read again. Default
	// 1 h.
	RefreshInterval time.Duration
	// RefreshUnknownKID spaces the extra reads a token with an unknown kid
	// triggers: at most one per interval, the others refused at once.
	// Default 5 min; negative: never (only RefreshInterval).
	RefreshUnknownKID time.Duration
	// FetchTimeout bounds one read of a key set. Default 10 s.
	FetchTimeout time.Duration
	// HTTPClient fetches JWKSURL. Nil: a client of its own.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed on "exp", "nbf" and "iat".
	// Default 5 s.
	Leeway time.Duration
	// Logger receives failed key set reads. Nil: silent.
	Logger *slog.Logger
}

// The signing algorithms a TokenAuthenticator may take.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// NewJWTAuthenticator returns a token authenticator (TokenAuthenticator's
// claims and contract) for the keys cfg names. Close it to stop the key
// sets' refresh. NewTokenAuthenticator(secret) is
// NewJWTAuthenticator(JWTConfig{HS256Secret: secret}).
//
// The key sets are kept by github.com/MicahParks/keyfunc/v3 (and its
// jwkset), the golang-jwt companion that parses JWK Sets, refreshes them
// on an interval and on an unknown kid, rate-limited, and replaces the
// whole set on each read (so a removed key goes); the file is read through
// the same machinery (a file:// URL on an http.Client whose transport
// serves the file), so a file rotates exactly as a URL does. This package
// keeps only the choice of key by algorithm, which keyfunc leaves to the
// caller.
func NewJWTAuthenticator(cfg JWTConfig) (*TokenAuthenticator, error) {
	if len(cfg.HS256Secret) == 0 && cfg.JWKSFile == "" && cfg.JWKSURL == "" {
		return nil, errors.New("cloud: JWTConfig needs HS256Secret, JWKSFile or JWKSURL")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 5 * time.Second
	}
	a := &TokenAuthenticator{}
	methods := []string{}
	if len(cfg.HS256Secret) > 0 {
		a.secret = append([]byte(nil), cfg.HS256Secret...)
		methods = append(methods, algHS256)
	}
	if cfg.JWKSFile != "" || cfg.JWKSURL != "" {
		kf, stop, err := newKeySets(cfg)
		if err != nil {
			return nil, err
		}
		a.keys, a.stop = kf, stop
		methods = append(methods, algRS256, algES256)
	}
	a.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	)
	return a, nil
}

// newKeySets reads cfg's key sets and starts their refresh; stop ends it.
func newKeySets(cfg JWTConfig) (keyfunc.Keyfunc, func(), error) {
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = time.Hour
	}
	if cfg.RefreshUnknownKID == 0 {
		cfg.RefreshUnknownKID = 5 * time.Minute
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client, urls, err := keySetSources(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	sets := make(map[string]jwkset.Storage, len(urls))
	for _, u := range urls {
		s, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
			Client:          client,
			Ctx:             ctx,
			HTTPTimeout:     cfg.FetchTimeout,
			RefreshInterval: cfg.RefreshInterval,
			RefreshErrorHandler: func(_ context.Context, err error) {
				log.Warn("cloud: JWK Set read failed; keeping the keys known", "source", u, "err", err)
			},
		})
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("cloud: JWK Set %s: %w", u, err)
		}
		sets[u] = s
	}
	limit := rate.NewLimiter(rate.Every(cfg.RefreshUnknownKID), 1)
	if cfg.RefreshUnknownKID < 0 {
		limit = rate.NewLimiter(0, 0) // every wait fails at once
	}
	storage, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          sets,
		RateLimitWaitMax:  cfg.FetchTimeout,
		RefreshUnknownKID: limit,
	})
	if err == nil {
		var kf keyfunc.Keyfunc
		kf, err = keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: storage, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
		if err == nil {
			return kf, stop, nil
		}
	}
	stop()
	return nil, nil, fmt.Errorf("cloud: JWK Sets: %w", err)
}

// keySetSources returns the URLs of cfg's key sets and the client that
// reads them: cfg.HTTPClient (or a default one) for JWKSURL, with a
// transport that also serves JWKSFile as a file:// URL.
func keySetSources(cfg JWTConfig) (*http.Client, []string, error) {
	var urls []string
	client := cfg.HTTPClient
	if cfg.JWKSURL != "" {
		if u, err := url.Parse(cfg.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, nil, fmt.Errorf("cloud: JWKSURL %q is not an http(s) URL", cfg.JWKSURL)
		}
		urls = append(urls, cfg.JWKSURL)
	}
	if cfg.JWKSFile != "" {
		path, err := filepath.Abs(cfg.JWKSFile)
		if err != nil {
			return nil, nil, fmt.Errorf("cloud: JWKSFile: %w", err)
		}
		dir, name := filepath.Split(path)
		base := http.DefaultTransport
		if client != nil && client.Transport != nil {
			base = client.Transport
		}
		t := &fileTransport{base: base, files: http.NewFileTransportFS(os.DirFS(dir))}
		c := &http.Client{Transport: t}
		if client != nil {
			cc := *client
			cc.Transport = t
			c = &cc
		}
		client = c
		urls = append(urls, (&url.URL{Scheme: "file", Path: "/" + name}).String())
	}
	return client, urls, nil
}

// fileTransport serves file:// requests from files and the others through
// base.
type fileTransport struct {
	base, files http.RoundTripper
}

func (t *fileTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "file" {
		return t.files.RoundTrip(r)
	}
	return t.base.RoundTrip(r)
}

// keyFor returns the jwt.Keyfunc of one verification: the HS256 secret for
// HS256, a key set's key of the token's type for RS256 and ES256, never
// anything else (the parser's valid methods already refuse other
// algorithms; this is the second lock).
func (a *TokenAuthenticator) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		switch {
		case alg == algHS256 && len(a.secret) > 0:
			return a.secret, nil
		case (alg == algRS256 || alg == algES256) && a.keys != nil:
			key, err := a.keys.KeyfuncCtx(ctx)(t)
			if err != nil {
				return nil, err
			}
			return keyOfType(alg, key)
		}
		return nil, fmt.Errorf("cloud: no key for alg %q", alg)
	}
}

// keyOfType keeps, of a key or a key set, the keys that verify alg: RSA
// public keys for RS256, P-256 public keys for ES256.
func keyOfType(alg string, key any) (any, error) {
	fits := func(k any) bool {
		switch k := k.(type) {
		case *rsa.PublicKey:
			return alg == algRS256
		case *ecdsa.PublicKey:
			return alg == algES256 && k.Curve == elliptic.P256()
		}
		return false
	}
	if set, ok := key.(jwt.VerificationKeySet); ok {
		var kept jwt.VerificationKeySet
		for _, k := range set.Keys {
			if fits(k) {
				kept.Keys = append(kept.Keys, k)
			}
		}
		if len(kept.Keys) == 0 {
			return nil, fmt.Errorf("cloud: no %s key in the JWK Sets", alg)
		}
		return kept, nil
	}
	if !fits(key) {
		return nil, fmt.Errorf("cloud: the token's kid names a key that does not verify %s", alg)
	}
	return key, nil
}

// Close stops the key sets' refresh. The authenticator keeps verifying
// with the keys it has.
func (a *TokenAuthenticator) Close() error {
	if a.stop != nil {
		a.stop()
	}
	return nil
}
