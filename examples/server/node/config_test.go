package node

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func noEnv(string) string { return "" }

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse(nil, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, RoleAll, cfg.Role)
	require.Equal(t, ":3101", cfg.TCPAddr)
	require.Equal(t, ":3102", cfg.WSAddr)
	require.Equal(t, "127.0.0.1:3111", cfg.HTTPAddr, "the push API is not reachable from other machines by default")
	require.Equal(t, AuthDev, cfg.Auth, "the zero-flag server uses dev auth")
	require.True(t, cfg.History, "history and recovery are on by default")
	require.False(t, cfg.Clustered())

	cfg, err = Parse([]string{"-history=false"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.False(t, cfg.History)
}

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Auth = AuthDev
	require.NoError(t, cfg.Validate(), "DefaultConfig is usable as is by code that embeds the wiring")
}

func TestParseTokenSecretMakesTokenDefault(t *testing.T) {
	cfg, err := Parse([]string{"-token-secret", "s3cret"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, AuthToken, cfg.Auth)
}

func TestParseEnvAndFlagPrecedence(t *testing.T) {
	env := map[string]string{
		"IMCLOUD_ROLE":          "cloud",
		"IMCLOUD_REDIS_ADDR":    "127.0.0.1:6379",
		"IMCLOUD_LINK_SECRET":   "x",
		"IMCLOUD_KAFKA_BROKERS": "127.0.0.1:9092, 127.0.0.1:9093",
	}
	cfg, err := Parse([]string{"-redis-addr", "127.0.0.1:7000"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, RoleCloud, cfg.Role)
	require.Equal(t, "127.0.0.1:7000", cfg.RedisAddr, "a flag wins over its environment variable")
	require.Equal(t, []string{"127.0.0.1:9092", "127.0.0.1:9093"}, cfg.KafkaBrokers)
}

func TestParseRedisShards(t *testing.T) {
	cfg, err := Parse([]string{"-role", "cloud", "-link-secret", "x",
		"-redis-addr", "127.0.0.1:7000, 127.0.0.1:7001,127.0.0.1:7002"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}, cfg.RedisAddrs())
}

func TestParseRedisCluster(t *testing.T) {
	env := map[string]string{"IMCLOUD_REDIS_CLUSTER": "true"}
	cfg, err := Parse([]string{"-role", "cloud", "-link-secret", "x",
		"-redis-addr", "127.0.0.1:7000,127.0.0.1:7001"}, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	require.True(t, cfg.RedisCluster)
	require.Equal(t, []string{"127.0.0.1:7000", "127.0.0.1:7001"}, cfg.RedisAddrs())
}

// A -redis-addr of separators alone names no Redis: it is refused rather
// than taken for the default address.
func TestParseRedisShardsRefusesAnEmptyList(t *testing.T) {
	for _, addr := range []string{",", " ", " , ,"} {
		for _, role := range []string{"all", "cloud"} {
			_, err := Parse([]string{"-role", role, "-link-secret", "s", "-redis-addr", addr,
				"-kafka-brokers", "127.0.0.1:9092"}, noEnv, io.Discard)
			require.ErrorIs(t, err, ErrUsage, "role %s, -redis-addr %q", role, addr)
			require.Contains(t, err.Error(), "-redis-addr")
		}
	}
}

func TestParseRefusesBadValues(t *testing.T) {
	cluster := []string{"-redis-addr", "127.0.0.1:6379", "-kafka-brokers", "127.0.0.1:9092", "-link-secret", "s"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		flag string
	}{
		{"unknown role", []string{"-role", "gateway"}, nil, "-role"},
		{"logic without redis", []string{"-role", "logic", "-kafka-brokers", "127.0.0.1:9092"}, nil, "-redis-addr"},
		{"job without kafka", []string{"-role", "job", "-redis-addr", "127.0.0.1:6379", "-link-secret", "s"}, nil, "-kafka-brokers"},
		{"all with only redis", []string{"-redis-addr", "127.0.0.1:6379"}, nil, "-kafka-brokers"},
		{"bad listen address", []string{"-tcp-addr", "3101"}, nil, "-tcp-addr"},
		{"cluster without redis", []string{"-redis-cluster"}, nil, "-redis-cluster"},
		{"cluster with a db", append([]string{"-redis-cluster", "-redis-db", "1"}, cluster...), nil, "-redis-db"},
		{"bad redis shard", []string{"-redis-addr", "127.0.0.1:6379,redis", "-kafka-brokers", "127.0.0.1:9092", "-link-secret", "s"}, nil, "-redis-addr"},
		{"bad broker", []string{"-redis-addr", "127.0.0.1:6379", "-kafka-brokers", "kafka", "-link-secret", "s"}, nil, "-kafka-brokers"},
		{"clustered without link secret", []string{"-role", "cloud", "-redis-addr", "127.0.0.1:6379"}, nil, "-link-secret"},
		{"token without secret", []string{"-auth", "token"}, nil, "-token-secret"},
		{"unknown auth", []string{"-auth", "none"}, nil, "-auth"},
		{"negative history bound", []string{"-history-age", "-1s"}, nil, "-history"},
		{"cert without key", []string{"-tls-cert", "c.pem"}, nil, "-tls-key"},
		{"bad proxy cidr", append([]string{"-trusted-proxies", "10.0.0.1"}, cluster...), nil, "-trusted-proxies"},
		{"negative limit", []string{"-max-conns", "-1"}, nil, "-max-conns"},
		{"accept rate below -1", []string{"-accept-rate", "-2"}, nil, "-accept-rate"},
		{"negative queue length", nil, map[string]string{"IMCLOUD_QUEUE_LENGTH": "-1"}, "-queue-length"},
		{"bad log level", []string{"-log-level", "loud"}, nil, "-log-level"},
		{"bad env value", nil, map[string]string{"IMCLOUD_MAX_CONNS": "many"}, "-max-conns"},
		{"unknown flag", []string{"-nope"}, nil, "nope"},
		{"stray argument", []string{"extra"}, nil, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			require.Error(t, err)
			require.True(t, errors.Is(err, ErrUsage))
			require.Contains(t, err.Error(), tc.flag, "the error names the flag")
		})
	}
}

func TestHelpNamesEnvironmentVariables(t *testing.T) {
	var out strings.Builder
	_, err := Parse([]string{"-h"}, noEnv, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, out.String(), "[$IMCLOUD_REDIS_ADDR]")
	require.Contains(t, out.String(), "[$IMCLOUD_MAX_CONNS_PER_IP]")
}

func TestJSONLogsDurationsAsText(t *testing.T) {
	var out strings.Builder
	cfg := DefaultConfig()
	cfg.LogJSON = true
	cfg.Logger(&out).Info("x", "wait", 1500*time.Millisecond)
	require.Contains(t, out.String(), `"wait":"1.5s"`)
}

func TestParseRefusesAnOpenPushAPI(t *testing.T) {
	for _, args := range [][]string{
		{"-http-addr", ":3111"},
		{"-http-addr", "0.0.0.0:3111"},
		{"-http-addr", "192.0.2.1:3111"},
		{"-pprof", "-admin-addr", ":3119", "-api-key", "k"},
	} {
		_, err := Parse(args, noEnv, io.Discard)
		require.ErrorIs(t, err, ErrUsage, "%v", args)
	}
	for _, args := range [][]string{
		{"-http-addr", "127.0.0.1:3111"},
		{"-http-addr", "localhost:3111"},
		{"-http-addr", "[::1]:3111"},
		{"-http-addr", ":3111", "-api-key", "k"},
		{"-http-addr", ":3111", "-insecure-api"},
		{"-pprof", "-admin-addr", ":3119", "-api-key", "k", "-insecure-api"},
	} {
		_, err := Parse(args, noEnv, io.Discard)
		require.NoError(t, err, "%v", args)
	}
}

// TestCloudLimitsFromEnvironment: every cloud limit has a flag and so an
// environment variable.
func TestCloudLimitsFromEnvironment(t *testing.T) {
	env := map[string]string{
		"IMCLOUD_ACCEPT_RATE": "-1", "IMCLOUD_ACCEPT_RATE_PER_IP": "1500", "IMCLOUD_MAX_HANDSHAKES": "7",
		"IMCLOUD_MAX_HANDSHAKES_PER_IP": "8", "IMCLOUD_HANDSHAKE_TIMEOUT": "3s", "IMCLOUD_INBOUND_RATE": "9",
		"IMCLOUD_MAX_INBOUND_BODY": "10", "IMCLOUD_QUEUE_LENGTH": "11", "IMCLOUD_MAX_BROADCASTS": "12",
		"IMCLOUD_MAX_CONNS_PER_IP": "13",
	}
	cfg, err := Parse(nil, func(k string) string { return env[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []int{-1, 1500, 7, 8, 9, 10, 11, 12, 13}, []int{cfg.AcceptRate, cfg.AcceptRatePerIP, cfg.MaxHandshakes,
		cfg.MaxHandshakesPerIP, cfg.InboundRate, cfg.MaxInboundBody, cfg.QueueLength, cfg.MaxBroadcasts, cfg.MaxConnsPerIP})
	require.Equal(t, 3*time.Second, cfg.HandshakeTimeout)
}
