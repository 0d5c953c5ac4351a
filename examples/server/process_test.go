package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/internal/testenv"
)

// buildServer compiles this command once per test binary.
var buildServer = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "imcloud-server-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "server")
	out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// proc is one server process started by a test.
type proc struct {
	t    *testing.T
	name string
	args []string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc runs the server binary with args; its log is printed if the
// test fails. It is killed when the test ends.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	_, err := buildServer()
	require.NoError(t, err)
	p := &proc{t: t, name: name, args: args}
	p.start()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", p.name, p.out.String())
		}
	})
	return p
}

func (p *proc) start() {
	bin, _ := buildServer()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	require.NoError(p.t, p.cmd.Start())
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
}

// kill ends the process at once (SIGKILL): nothing is flushed or drained.
func (p *proc) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop within 30s", p.name)
	}
	require.Equal(p.t, 0, p.cmd.ProcessState.ExitCode(), "%s exits cleanly on SIGTERM", p.name)
}

// boundProc is a process started on listen addresses that args picks
// afresh on each call (returning the flags and the admin address). A port
// FreePort found free can be taken before the process binds it, by any
// socket on the machine (outgoing connections included): wait starts a
// process that exited saying so again, on new ports.
type boundProc struct {
	*proc
	args  func() (argv []string, admin string)
	admin string
}

func startBound(t *testing.T, name string, args func() ([]string, string)) *boundProc {
	t.Helper()
	argv, admin := args()
	return &boundProc{proc: startProc(t, name, argv...), args: args, admin: admin}
}

// wait polls the admin /readyz until it answers 200, restarting the
// process on new ports (at most twice) if it could not bind its own.
func (b *boundProc) wait(t *testing.T) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		if b.ready() {
			return
		}
		if attempt == 2 || !strings.Contains(b.out.String(), "address already in use") {
			t.Fatalf("%s not ready", b.name)
		}
		t.Logf("%s: a port was taken before it bound it; starting it on new ports", b.name)
		argv, admin := b.args()
		b.proc, b.admin = startProc(t, b.name, argv...), admin
	}
}

// ready polls the admin /readyz for 30 s until it answers 200; false if
// the process exits first or it never does.
func (b *boundProc) ready() bool {
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: time.Second} // the port's thief may never answer
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return false
		default:
		}
		if resp, err := hc.Get("http://" + b.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// waitReady polls an admin /readyz until it answers 200.
func waitReady(t *testing.T, adminAddr string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "%s ready", adminAddr)
}

func addr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
}

type pushReply struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    struct {
		Nodes int `json:"nodes"`
		Keys  int `json:"keys"`
	} `json:"data"`
}

// push POSTs to the push API and returns the HTTP status and reply.
func push(t *testing.T, api, path, body string) (int, pushReply) {
	t.Helper()
	code, r, err := tryPush(api, path, body)
	require.NoError(t, err)
	return code, r
}

// tryPush is push for use inside require.Eventually (no t).
func tryPush(api, path, body string) (int, pushReply, error) {
	resp, err := http.Post("http://"+api+path, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, pushReply{}, err
	}
	defer resp.Body.Close()
	var r pushReply
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &r); err != nil {
		return resp.StatusCode, r, fmt.Errorf("reply %q: %w", raw, err)
	}
	return resp.StatusCode, r, nil
}

// rawClient is a goim-style TCP client written from the wire layout alone
// (no project code): auth with goim's JSON, then read frames.
type rawClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, tcpAddr string, mid int64, room string, accepts []int32) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	body, _ := json.Marshal(map[string]any{"mid": mid, "room_id": room, "platform": "linux", "accepts": accepts})
	_, err = c.Write(rawFrame(1, 7, 1, body))
	require.NoError(t, err)
	rc := &rawClient{c: c, r: bufio.NewReader(c)}
	op, _ := rc.read(t)
	require.EqualValues(t, 8, op, "auth reply")
	return rc
}

func rawFrame(ver int16, op, seq int32, body []byte) []byte {
	b := make([]byte, 16+len(body))
	putU32(b[0:], uint32(16+len(body)))
	b[4], b[5] = 0, 16
	b[6], b[7] = byte(ver>>8), byte(ver)
	putU32(b[8:], uint32(op))
	putU32(b[12:], uint32(seq))
	copy(b[16:], body)
	return b
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
func getU32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (rc *rawClient) read(t *testing.T) (int32, []byte) {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [16]byte
	_, err := io.ReadFull(rc.r, h[:])
	require.NoError(t, err)
	body := make([]byte, getU32(h[0:])-16)
	_, err = io.ReadFull(rc.r, body)
	require.NoError(t, err)
	return int32(getU32(h[8:])), body
}

// expect reads the next push and checks it.
func (rc *rawClient) expect(t *testing.T, op int32, body string) {
	t.Helper()
	gotOp, got := rc.read(t)
	require.Equal(t, op, gotOp)
	require.Equal(t, body, string(got))
}

// quiet asserts nothing arrives for a moment.
func (rc *rawClient) quiet(t *testing.T) {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	n, err := rc.r.Read(b[:])
	require.Zero(t, n, "nothing more arrives")
	require.Error(t, err)
}
