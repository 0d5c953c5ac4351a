// Package node is the reference server's wiring, importable so that tests
// and other binaries can run exactly what `go run ./examples/server` runs:
// flags and environment -> Config -> New -> Run -> Shutdown. One process
// runs every role on in-memory backends by default, or one role of a
// cluster with Redis and Kafka.
package node

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Roles a process can take.
const (
	RoleAll   = "all"
	RoleLogic = "logic"
	RoleJob   = "job"
	RoleCloud = "cloud"
)

// Auth modes.
const (
	AuthDev   = "dev"
	AuthToken = "token"
)

// Config is everything the reference server can be told. Zero fields mean
// the defaults that DefaultConfig sets.
type Config struct {
	Role string

	// Listeners. In role all, HTTPAddr also serves the admin endpoints.
	TCPAddr   string
	WSAddr    string
	HTTPAddr  string
	LinkAddr  string
	AdminAddr string

	// What this node advertises to clients and to job (defaults: derived
	// from the listen addresses).
	AdvertiseTCP  string
	AdvertiseWS   string
	AdvertiseLink string
	NodeID        string
	LinkSecret    string

	// Backends. Empty Redis/Kafka addresses mean in-memory (role all only).
	RedisAddr     string
	RedisUser     string
	RedisPassword string
	RedisDB       int
	RedisTLS      bool
	RedisCluster  bool // RedisAddr lists seed nodes of one Redis Cluster

	KafkaBrokers      []string
	KafkaTopic        string
	KafkaGroup        string
	KafkaTLS          bool
	KafkaSASLUser     string
	KafkaSASLPassword string
	KafkaSASLMech     string
	// QueueMaxDelay bounds the in-memory queue's lag (role all without
	// Kafka): past it the push API answers 503 (logic.MemoryQueueConfig).
	QueueMaxDelay time.Duration

	// Stream history and recovery (docs/design.md, recovery): on by
	// default, in memory all-in-one and in Redis when clustered. Every
	// process of a cluster must agree on History.
	History      bool
	HistoryLen   int           // pushes kept per stream (0: imcloud.DefaultHistoryLen)
	HistoryAge   time.Duration // how long a push is kept (0: imcloud.DefaultHistoryAge)
	HistoryBytes int64         // memory store only: total size (0: logic.DefaultHistoryBytes)

	// RoomDispatch sends a room push only to the nodes with members in
	// the room (job.Config.Rooms; docs/design.md, rooms). Off: to every
	// node, goim's way (kept for comparison).
	RoomDispatch bool

	// Events sends connection events and upstream messages to the
	// application (events.go): to the Kafka topics "<KafkaTopic>.events"
	// and ".upstream" when clustered, to in-process callbacks that log
	// and count them otherwise.
	Events bool
	// NodeTTL is how long a cloud node's registration outlives it
	// (cloud.Config.NodeTTL; 0: cloud's 30 s): a node killed without a
	// drain is declared gone (node_gone) that long after.
	NodeTTL time.Duration

	// Client auth. In token mode, HS256 tokens verify with TokenSecret,
	// RS256 and ES256 ones with the JWK Sets of JWKSFile and JWKSURL (by
	// kid, re-read hourly and on an unknown kid: cloud.JWTConfig).
	Auth        string
	TokenSecret string
	JWKSFile    string
	JWKSURL     string

	// TLS for the client listeners (both TCP and WebSocket).
	TLSCert string
	TLSKey  string

	// TLS for the link (linktls.go): this process's certificate and the
	// CA that verifies the other side.
	LinkTLSCert string
	LinkTLSKey  string
	LinkTLSCA   string

	// Push API. APIKey is the -api-key flag: one key, or several
	// comma-separated, all valid at once while keys rotate (APIKeys).
	APIKey      string
	MaxBodySize int64
	// MaxPushCost is logic.Config.MaxPushCost: the cost (targets plus
	// body KiB) of the large pushes in flight at once. 0 is logic's
	// default; negative, no bound.
	MaxPushCost int64
	// InsecureAPI allows the push API (and pprof) on an address other
	// than loopback without an API key.
	InsecureAPI bool

	// Client limits and proxies.
	TrustedProxies []string
	MaxConns       int
	MaxConnsPerIP  int
	HeartbeatMax   time.Duration
	// Accept and handshake limits (cloud.Config's fields of the same
	// names; 0: the cloud default, -1: no cap).
	AcceptRate, AcceptRatePerIP       int
	MaxHandshakes, MaxHandshakesPerIP int
	HandshakeTimeout                  time.Duration
	InboundRate, MaxInboundBody       int
	QueueLength, MaxBroadcasts        int

	// Operability.
	Pprof    bool
	LogLevel string
	LogJSON  bool
}

// DefaultConfig is the zero-flag all-in-one server: goim's ports, in-memory
// backends, dev auth.
func DefaultConfig() Config {
	return Config{
		Role:          RoleAll,
		TCPAddr:       ":3101",
		WSAddr:        ":3102",
		HTTPAddr:      "127.0.0.1:3111",
		QueueMaxDelay: 500 * time.Millisecond,
		History:       true,
		RoomDispatch:  true,
		Events:        true,
		LinkAddr:      ":3121",
		KafkaTopic:    "imcloud-push",
		KafkaGroup:    "imcloud-job",
		MaxBodySize:   1 << 20,
		KafkaSASLMech: "PLAIN",
		LogLevel:      "info",
	}
}

// envPrefix is prepended to a flag's name (upper case, '-' -> '_') to name
// its environment variable: -redis-addr is IMCLOUD_REDIS_ADDR.
const envPrefix = "IMCLOUD_"

// EnvName returns the environment variable that sets flag name.
func EnvName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ErrUsage wraps every configuration error, each naming its flag.
var ErrUsage = errors.New("usage")

// Parse reads flags from args and, for flags not given, the environment
// (through getenv). Output for -h goes to out. It validates the result.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(out)
	var brokers, proxies string
	fs.StringVar(&cfg.Role, "role", cfg.Role, "role of this process: all, logic, job or cloud")
	fs.StringVar(&cfg.TCPAddr, "tcp-addr", cfg.TCPAddr, "TCP client listener (cloud); empty disables")
	fs.StringVar(&cfg.WSAddr, "ws-addr", cfg.WSAddr, "WebSocket client listener, path /sub (cloud); empty disables")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "push API and demo page (logic); in role all also the admin endpoints")
	fs.StringVar(&cfg.LinkAddr, "link-addr", cfg.LinkAddr, "link listener that job connects to (cloud, clustered)")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, "admin listener: /healthz /readyz /metrics (default: the push API port in roles all and logic, 127.0.0.1:3119 otherwise)")
	fs.StringVar(&cfg.AdvertiseTCP, "advertise-tcp", "", "host:port clients use for TCP (default: derived from -tcp-addr)")
	fs.StringVar(&cfg.AdvertiseWS, "advertise-ws", "", "host:port clients use for WebSocket (default: derived from -ws-addr)")
	fs.StringVar(&cfg.AdvertiseLink, "advertise-link", "", "host:port job uses to reach this node's link (default: derived from -link-addr)")
	fs.StringVar(&cfg.NodeID, "node-id", "", "cloud node id (default: host, listen address and a random epoch)")
	fs.StringVar(&cfg.LinkSecret, "link-secret", "", "shared secret between job and cloud nodes (required when clustered)")
	fs.StringVar(&cfg.RedisAddr, "redis-addr", "", "Redis host:port, or a comma-separated list of them (a router sharded over several Redis instances); empty: in-memory router (role all only)")
	fs.StringVar(&cfg.RedisUser, "redis-user", "", "Redis ACL user")
	fs.StringVar(&cfg.RedisPassword, "redis-password", "", "Redis password (AUTH)")
	fs.IntVar(&cfg.RedisDB, "redis-db", 0, "Redis database number")
	fs.BoolVar(&cfg.RedisTLS, "redis-tls", false, "connect to Redis over TLS")
	fs.BoolVar(&cfg.RedisCluster, "redis-cluster", false, "-redis-addr lists seed nodes of one Redis Cluster (any of its nodes): the router is sharded over hash tags of it (database 0 only)")
	fs.StringVar(&brokers, "kafka-brokers", "", "comma-separated Kafka brokers; empty: in-memory queue (role all only)")
	fs.DurationVar(&cfg.QueueMaxDelay, "queue-max-delay", cfg.QueueMaxDelay, "in-memory queue only: answer pushes 503 while the oldest undelivered one waited this long (0: no bound, wait for room)")
	fs.StringVar(&cfg.KafkaTopic, "kafka-topic", cfg.KafkaTopic, "Kafka topic of push messages")
	fs.StringVar(&cfg.KafkaGroup, "kafka-group", cfg.KafkaGroup, "Kafka consumer group of job")
	fs.BoolVar(&cfg.KafkaTLS, "kafka-tls", false, "connect to Kafka over TLS")
	fs.StringVar(&cfg.KafkaSASLUser, "kafka-sasl-user", "", "Kafka SASL user")
	fs.StringVar(&cfg.KafkaSASLPassword, "kafka-sasl-password", "", "Kafka SASL password")
	fs.StringVar(&cfg.KafkaSASLMech, "kafka-sasl-mechanism", cfg.KafkaSASLMech, "Kafka SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	fs.BoolVar(&cfg.History, "history", cfg.History, "keep each user's and room's recent pushes and replay what a reconnecting client missed (in memory all-in-one, in Redis when clustered; set alike on every process)")
	fs.BoolVar(&cfg.RoomDispatch, "room-dispatch", cfg.RoomDispatch, "job: send a room push only to the nodes with members in the room (false: to every node, goim's way)")
	fs.BoolVar(&cfg.Events, "events", cfg.Events, "connection events and upstream messages for the application: clustered, to the Kafka topics <kafka-topic>.events and <kafka-topic>.upstream (they must exist); all-in-one, logged at debug level and counted")
	fs.DurationVar(&cfg.NodeTTL, "node-ttl", 0, "cloud: how long the node's registration outlives it; a node killed without a drain is declared gone that long after (0: the cloud default, 30 s)")
	fs.IntVar(&cfg.HistoryLen, "history-len", 0, "pushes kept per stream (0: 1000)")
	fs.DurationVar(&cfg.HistoryAge, "history-age", 0, "how long a push is kept for recovery (0: 10m)")
	fs.Int64Var(&cfg.HistoryBytes, "history-bytes", 0, "in-memory history only: total size in bytes; whole streams are evicted past it (0: 256 MiB)")
	fs.StringVar(&cfg.Auth, "auth", "", "client auth: dev (trust the client's JSON) or token (signed JWT); default dev, or token when -token-secret, -jwks-file or -jwks-url is set")
	fs.StringVar(&cfg.TokenSecret, "token-secret", "", "HS256 secret for client tokens")
	fs.StringVar(&cfg.JWKSFile, "jwks-file", "", "JWK Set file whose RSA and P-256 keys verify RS256 and ES256 client tokens by kid (re-read hourly and on an unknown kid)")
	fs.StringVar(&cfg.JWKSURL, "jwks-url", "", "JWK Set URL (an identity provider's jwks_uri) whose keys verify RS256 and ES256 client tokens by kid (re-read hourly and on an unknown kid)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate file for TLS on the client listeners")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "key file for TLS on the client listeners")
	fs.StringVar(&cfg.LinkTLSCert, "link-tls-cert", "", "certificate file: cloud serves its link over TLS with it; job presents it as its client certificate")
	fs.StringVar(&cfg.LinkTLSKey, "link-tls-key", "", "key file of -link-tls-cert")
	fs.StringVar(&cfg.LinkTLSCA, "link-tls-ca", "", "CA file: job dials the links over TLS and verifies the nodes with it; cloud requires job's client certificate signed by it")
	fs.StringVar(&cfg.APIKey, "api-key", "", "require this key on push routes (header X-Api-Key, or Authorization: Bearer <key>); several comma-separated are all valid (key rotation)")
	fs.BoolVar(&cfg.InsecureAPI, "insecure-api", false, "allow the push API (and pprof) on a non-loopback address without -api-key")
	fs.Int64Var(&cfg.MaxBodySize, "max-body", cfg.MaxBodySize, "push API request body limit in bytes")
	fs.Int64Var(&cfg.MaxPushCost, "max-push-cost", 0, "cost (targets plus body KiB) of the large pushes in flight at once; past it a push is answered 503 (0: logic's default, 100000; -1: no bound)")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For / PROXY protocol is believed")
	fs.IntVar(&cfg.MaxConns, "max-conns", 0, "client connections per node (0: the cloud default)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", 0, "client connections per client IP (0: the cloud default, 20000, room for carrier-grade NAT; -1: no cap)")
	fs.IntVar(&cfg.AcceptRatePerIP, "accept-rate-per-ip", 0, "new client connections per second from one client IP, IPv6 by /64 (0: the cloud default, 2000; -1: no cap)")
	fs.IntVar(&cfg.AcceptRate, "accept-rate", 0, "new client connections per second on the node (0: the cloud default, 10000; -1: no cap)")
	fs.IntVar(&cfg.MaxHandshakes, "max-handshakes", 0, "client sockets not yet authenticated on the node (0: the cloud default, 10000; -1: no cap)")
	fs.IntVar(&cfg.MaxHandshakesPerIP, "max-handshakes-per-ip", 0, "client sockets not yet authenticated from one client IP (0: the cloud default, 1000; -1: no cap)")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", 0, "time a client has from connecting to its auth (0: the cloud default, 5 s)")
	fs.IntVar(&cfg.InboundRate, "inbound-rate", 0, "client frames per second per connection (0: the cloud default, 50; -1: no cap)")
	fs.IntVar(&cfg.MaxInboundBody, "max-inbound-body", 0, "client frame body limit in bytes (0: the cloud default, 4096)")
	fs.IntVar(&cfg.QueueLength, "queue-length", 0, "frames waiting per connection before the slow-client policy (0: the cloud default, 1024)")
	fs.IntVar(&cfg.MaxBroadcasts, "max-broadcasts", 0, "paced broadcasts in progress per node (0: the cloud default, 64)")
	fs.DurationVar(&cfg.HeartbeatMax, "heartbeat-timeout", 0, "close a client silent this long (0: the cloud default, above goim's 240 s beat)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve /debug/pprof on the admin listener")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&cfg.LogJSON, "log-json", false, "log JSON lines instead of text")

	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + EnvName(f.Name) + "]" })
	if err := applyEnv(fs, getenv); err != nil {
		return cfg, err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		return cfg, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	cfg.KafkaBrokers = splitList(brokers)
	cfg.TrustedProxies = splitList(proxies)
	if cfg.Auth == "" {
		cfg.Auth = AuthDev
		if cfg.TokenSecret != "" || cfg.JWKSFile != "" || cfg.JWKSURL != "" {
			cfg.Auth = AuthToken
		}
	}
	return cfg, cfg.Validate()
}

// applyEnv sets every flag whose environment variable is set, before the
// command line is parsed, so flags win over the environment.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%w: %s=%q (flag -%s): %v", ErrUsage, EnvName(f.Name), v, f.Name, e)
			}
		}
	})
	return err
}

// APIKeys are the push API's keys: -api-key split at its commas, blanks
// dropped.
func (c Config) APIKeys() []string { return splitList(c.APIKey) }

// RedisAddrs is -redis-addr's list: one Redis, or the shards of a router
// over several (redis.Config.Addrs).
func (c Config) RedisAddrs() []string { return splitList(c.RedisAddr) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func usageErr(flagName, format string, args ...any) error {
	return fmt.Errorf("%w: -%s: %s", ErrUsage, flagName, fmt.Sprintf(format, args...))
}

// Clustered reports whether the process uses the distributed backends.
func (c *Config) Clustered() bool { return c.RedisAddr != "" || len(c.KafkaBrokers) > 0 }

// Validate checks the configuration; each error names its flag.
func (c *Config) Validate() error {
	switch c.Role {
	case RoleAll, RoleLogic, RoleJob, RoleCloud:
	default:
		return usageErr("role", "%q is not one of all, logic, job, cloud", c.Role)
	}
	if c.Role != RoleAll {
		if c.RedisAddr == "" {
			return usageErr("redis-addr", "role %s needs Redis (only role all runs in memory)", c.Role)
		}
		if c.Role != RoleCloud && len(c.KafkaBrokers) == 0 {
			return usageErr("kafka-brokers", "role %s needs Kafka (only role all runs in memory)", c.Role)
		}
	}
	if c.Role == RoleAll && (c.RedisAddr == "") != (len(c.KafkaBrokers) == 0) {
		return usageErr("kafka-brokers", "role all takes both -redis-addr and -kafka-brokers, or neither")
	}
	for name, addr := range map[string]string{
		"tcp-addr": c.TCPAddr, "ws-addr": c.WSAddr, "http-addr": c.HTTPAddr, "link-addr": c.LinkAddr,
		"admin-addr": c.AdminAddr, "advertise-tcp": c.AdvertiseTCP, "advertise-ws": c.AdvertiseWS,
		"advertise-link": c.AdvertiseLink,
	} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return usageErr(name, "%q is not host:port: %v", addr, err)
		}
	}
	if c.RedisAddr != "" && len(c.RedisAddrs()) == 0 {
		return usageErr("redis-addr", "%q names no address", c.RedisAddr)
	}
	for _, a := range c.RedisAddrs() {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return usageErr("redis-addr", "%q is not host:port: %v", a, err)
		}
	}
	if c.RedisCluster && c.RedisAddr == "" {
		return usageErr("redis-cluster", "needs -redis-addr, the Cluster's seed nodes")
	}
	if c.RedisCluster && c.RedisDB != 0 {
		return usageErr("redis-db", "a Redis Cluster has database 0 only, not %d", c.RedisDB)
	}
	for _, b := range c.KafkaBrokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return usageErr("kafka-brokers", "%q is not host:port", b)
		}
	}
	if c.HistoryLen < 0 || c.HistoryAge < 0 || c.HistoryBytes < 0 {
		return usageErr("history-len", "history bounds cannot be negative")
	}
	if c.needs(RoleLogic) && c.HTTPAddr == "" {
		return usageErr("http-addr", "role %s serves the push API and needs it", c.Role)
	}
	if c.Role == RoleCloud && c.LinkAddr == "" {
		return usageErr("link-addr", "a clustered cloud node needs a link listener")
	}
	if c.Clustered() && (c.needs(RoleCloud) || c.needs(RoleJob)) && c.LinkSecret == "" {
		return usageErr("link-secret", "clustered job and cloud nodes need a shared link secret")
	}
	switch c.Auth {
	case AuthDev:
	case AuthToken:
		if c.TokenSecret == "" && c.JWKSFile == "" && c.JWKSURL == "" {
			return usageErr("token-secret", "auth mode token needs a secret (or -jwks-file, -jwks-url)")
		}
	default:
		return usageErr("auth", "%q is not dev or token", c.Auth)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usageErr("tls-key", "-tls-cert and -tls-key go together")
	}
	if err := c.validateLinkTLS(); err != nil {
		return err
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil {
			return usageErr("trusted-proxies", "%q is not a CIDR", p)
		}
	}
	if c.MaxConns < 0 {
		return usageErr("max-conns", "cannot be negative")
	}
	for _, l := range []struct {
		flag string
		v    int
	}{
		{"max-conns-per-ip", c.MaxConnsPerIP}, {"accept-rate", c.AcceptRate}, {"accept-rate-per-ip", c.AcceptRatePerIP},
		{"max-handshakes", c.MaxHandshakes}, {"max-handshakes-per-ip", c.MaxHandshakesPerIP}, {"inbound-rate", c.InboundRate},
	} {
		if l.v < -1 {
			return usageErr(l.flag, "must be -1 (no cap), 0 (default) or positive")
		}
	}
	for _, l := range []struct {
		flag string
		v    int
	}{{"max-inbound-body", c.MaxInboundBody}, {"queue-length", c.QueueLength}, {"max-broadcasts", c.MaxBroadcasts}} {
		if l.v < 0 {
			return usageErr(l.flag, "cannot be negative")
		}
	}
	if c.HandshakeTimeout < 0 {
		return usageErr("handshake-timeout", "cannot be negative")
	}
	if c.HeartbeatMax < 0 {
		return usageErr("heartbeat-timeout", "cannot be negative")
	}
	if c.NodeTTL < 0 {
		return usageErr("node-ttl", "cannot be negative")
	}
	if c.needs(RoleLogic) && len(c.APIKeys()) == 0 && !c.InsecureAPI && !IsLoopback(c.HTTPAddr) {
		return usageErr("http-addr", "%q is reachable from other machines and the push API has no key: "+
			"set -api-key, listen on loopback, or say -insecure-api", c.HTTPAddr)
	}
	if c.Pprof && !c.InsecureAPI && c.AdminAddr != "" && !IsLoopback(c.AdminAddr) {
		return usageErr("pprof", "-admin-addr %q is reachable from other machines: pprof there needs -insecure-api", c.AdminAddr)
	}
	if c.MaxBodySize <= 0 {
		return usageErr("max-body", "must be positive")
	}
	switch c.KafkaSASLMech {
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		return usageErr("kafka-sasl-mechanism", "%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.KafkaSASLMech)
	}
	if _, err := c.level(); err != nil {
		return usageErr("log-level", "%v", err)
	}
	return nil
}

// needs reports whether this process runs role r.
func (c *Config) needs(r string) bool { return c.Role == RoleAll || c.Role == r }

func (c *Config) level() (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(c.LogLevel))
	return l, err
}

// Logger builds the process logger from the log flags.
func (c *Config) Logger(w io.Writer) *slog.Logger {
	lvl, _ := c.level()
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationText}
	if c.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// durationText logs durations as Go duration strings ("1.5s"); the JSON
// handler would otherwise print them as integer nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// IsLoopback reports whether a listen address (host:port) accepts
// connections from this machine only: localhost or a loopback IP. An
// empty host ("":3111") is every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
