package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/testenv"
)

// startAllInOne runs the zero-flag server, but on free loopback ports.
func startAllInOne(t *testing.T, args ...string) *App {
	t.Helper()
	base := []string{"-tcp-addr", "127.0.0.1:0", "-ws-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}
	cfg, err := Parse(append(base, args...), noEnv, io.Discard)
	require.NoError(t, err)
	return runWith(t, cfg, testLogger(t))
}

// runWith runs an App of cfg logging to log until the test ends.
func runWith(t *testing.T, cfg Config, log *slog.Logger) *App {
	t.Helper()
	app, err := New(cfg, log)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		require.NoError(t, app.Shutdown(sctx))
	})
	return app
}

type apiReply struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func post(t *testing.T, app *App, path, body string) apiReply {
	t.Helper()
	resp, err := http.Post("http://"+app.Addr("http")+path, "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var r apiReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, http.StatusOK, resp.StatusCode, "push %s: %+v", path, r)
	return r
}

func receive(t *testing.T, c *client.Client, wantOp int32, wantBody string) {
	t.Helper()
	select {
	case p := <-c.Messages():
		require.Equal(t, wantOp, p.Op)
		require.Equal(t, wantBody, string(p.Body))
	case <-time.After(10 * time.Second):
		t.Fatalf("no push %q within 10s", wantBody)
	}
}

func TestAllInOneDefaultMode(t *testing.T) {
	app := startAllInOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ws, err := client.Dial(ctx, client.Config{Network: "ws", Addr: app.Addr("ws"), Mid: 42, Room: "live://1000", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer ws.Close()
	tcp, err := client.Dial(ctx, client.Config{Network: "tcp", Addr: app.Addr("tcp"), Mid: 7, Room: "live://1000", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer tcp.Close()

	post(t, app, "/goim/push/room?operation=1000&type=live&room=1000", "to the room")
	receive(t, ws, 1000, "to the room")
	receive(t, tcp, 1000, "to the room")

	post(t, app, "/goim/push/mids?operation=1000&mids=42", "to user 42")
	receive(t, ws, 1000, "to user 42")

	post(t, app, "/goim/push/keys?operation=1000&keys="+tcp.Auth().Key, "to a key")
	receive(t, tcp, 1000, "to a key")

	post(t, app, "/goim/push/all?operation=1000", "to everyone")
	receive(t, ws, 1000, "to everyone")
	receive(t, tcp, 1000, "to everyone")

	select {
	case p := <-ws.Messages():
		t.Fatalf("unexpected push %q", p.Body)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestAllInOneAdminOnPushPort(t *testing.T) {
	app := startAllInOne(t)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "imcloud_cloud_", "/": "<html"} {
		resp, err := http.Get("http://" + app.Addr("http") + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, strings.ToLower(string(body)), strings.ToLower(want), path)
	}
}

// testLogger logs to the test's output when IMCLOUD_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("IMCLOUD_TEST_LOG") == "" {
		return nil
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Log(buf.String())
			mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestStartupHintWithAPIKey: with -api-key the printed curl sends the key
// (from its environment variable, so the key is not logged) and is
// answered.
func TestStartupHintWithAPIKey(t *testing.T) {
	cfg, err := Parse([]string{"-tcp-addr", "", "-ws-addr", "", "-http-addr", "127.0.0.1:0", "-api-key", "k3y"}, noEnv, io.Discard)
	require.NoError(t, err)
	app, out := runLogged(t, cfg)
	require.Contains(t, out.String(), `-H \"X-Api-Key: $IMCLOUD_API_KEY\"`)
	require.NotContains(t, out.String(), "k3y")

	req, _ := http.NewRequest(http.MethodPost, "http://"+app.Addr("http")+"/goim/push/room?operation=1000&type=live&room=1000", strings.NewReader("hello"))
	req.Header.Set("X-Api-Key", "k3y")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// syncLog is a log destination safe for the logger and the test at once.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestClientSettingsAgree: the gateway's auth reply and the push API's
// nodes/weighted tell a client the same heartbeat, and nodes/weighted
// only the ports a listener serves: no WSS port without -tls-cert; with
// it the WebSocket listener's port as the WSS port (and a wss client
// authenticates there) and no plain WebSocket port; no port for a
// disabled listener.
func TestClientSettingsAgree(t *testing.T) {
	ca := testenv.NewCA(t)
	cert, key := testenv.WritePEM(t, ca.Issue(t, "node", x509.ExtKeyUsageServerAuth))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name string
		args []string
		// dial is the client that authenticates; tcp, ws and wss the
		// ports nodes/weighted must report, by listener name ("" none).
		dial         func(app *App) client.Config
		tcp, ws, wss string
	}{
		{"plain", nil, func(app *App) client.Config {
			return client.Config{Network: "tcp", Addr: app.Addr("tcp"), Mid: 7}
		}, "tcp", "ws", ""},
		{"tls", []string{"-tls-cert", cert, "-tls-key", key}, func(app *App) client.Config {
			return client.Config{Network: "ws", Addr: "wss://" + app.Addr("ws") + "/sub", Mid: 7, TLS: tlsCfg}
		}, "tcp", "", "ws"},
		{"no websocket", []string{"-ws-addr", ""}, func(app *App) client.Config {
			return client.Config{Network: "tcp", Addr: app.Addr("tcp"), Mid: 7}
		}, "tcp", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := startAllInOne(t, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, tc.dial(app))
			require.NoError(t, err)
			defer c.Close()

			resp, err := http.Get("http://" + app.Addr("http") + "/goim/nodes/weighted")
			require.NoError(t, err)
			defer resp.Body.Close()
			var r struct {
				Data struct {
					TCPPort   int `json:"tcp_port"`
					WSPort    int `json:"ws_port"`
					WSSPort   int `json:"wss_port"`
					Heartbeat int `json:"heartbeat"`
				} `json:"data"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
			require.NotZero(t, c.Auth().Heartbeat)
			require.Equal(t, c.Auth().Heartbeat, r.Data.Heartbeat)
			port := func(name string) int {
				if name == "" {
					return 0
				}
				return portOf(app.Addr(name))
			}
			require.Equal(t, port(tc.tcp), r.Data.TCPPort, "tcp_port")
			require.Equal(t, port(tc.ws), r.Data.WSPort, "ws_port")
			require.Equal(t, port(tc.wss), r.Data.WSSPort, "wss_port")
		})
	}
}
