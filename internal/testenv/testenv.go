// Package testenv starts the real backends that tests of every package
// share: a redis-server on a free loopback port with no persistence, and a
// Kafka-protocol broker (franz-go's kfake) in process on loopback.
//
// When redis-server is not installed, tests that need it are skipped with a
// clear message, unless IMCLOUD_REQUIRE_BACKENDS=1 (CI sets it), where a
// missing backend fails the test instead.
package testenv

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// RequireEnv is the environment variable that turns a missing backend from
// a skip into a failure.
const RequireEnv = "IMCLOUD_REQUIRE_BACKENDS"

// BackendsRequired reports whether a missing backend must fail the run.
func BackendsRequired() bool {
	v := os.Getenv(RequireEnv)
	return v != "" && v != "0" && v != "false"
}

// missing skips t, or fails it when backends are required.
func missing(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not available; install it (make test does) or unset %s", what, RequireEnv)
	if BackendsRequired() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
