package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server process owned by one test. It is stopped when the
// test ends.
type Redis struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string

	t     testing.TB
	path  string
	port  int
	extra []string // more arguments for redis-server
	mu    sync.Mutex
	cmd   *exec.Cmd
}

// StartRedis starts a redis-server on a free loopback port with no
// persistence. It skips (or fails, see BackendsRequired) when redis-server
// is not installed.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, nil)
}

// startRedis is StartRedis with the extra arguments for redis-server
// that extra returns for the port chosen (none when nil).
func startRedis(t testing.TB, extra func(port int) []string) *Redis {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		missing(t, "redis-server")
	}
	r := &Redis{t: t, path: path}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r.port = FreePort(t)
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
		if extra != nil {
			r.extra = extra(r.port)
		}
		if lastErr = r.start(); lastErr == nil {
			t.Cleanup(r.Stop)
			return r
		}
	}
	t.Fatalf("testenv: redis-server did not start: %v", lastErr)
	return nil
}

// Start starts the server again on the same port after Stop.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("testenv: restart redis-server: %v", err)
	}
}

func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", r.t.TempDir(),
		"--daemonize", "no",
		"--protected-mode", "no",
		"--loglevel", "warning",
	}
	cmd := exec.Command(r.path, append(args, r.extra...)...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("redis-server exited: %v", err)
		default:
		}
		if ping(r.Addr) {
			r.cmd = cmd
			go func() { <-exited }()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("redis-server on %s did not answer PING within 5s", r.Addr)
}

// Pid is the running server's process id (0 when stopped), for reading
// its CPU time from /proc.
func (r *Redis) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Stop kills the server (as a crash would); Start brings it back empty.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	// Wait until the port is closed so a restart can bind it.
	for i := 0; i < 500 && ping(r.Addr); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	r.cmd = nil
}

// Restart kills the server and starts it again on the same port, empty:
// a Redis without persistence that crashed and came back.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.Start()
}

// FlushAll deletes every key (FLUSHALL) while the server keeps running.
func (r *Redis) FlushAll() {
	r.t.Helper()
	if reply, err := command(r.Addr, "FLUSHALL"); err != nil || reply != "+OK" {
		r.t.Fatalf("testenv: FLUSHALL: %q, %v", reply, err)
	}
}

// RedisWipe is one way for a Redis to lose its data under running clients.
type RedisWipe struct {
	Name string
	Wipe func(*Redis)
}

// RedisWipes are the ways tests make Redis lose its data: restarted
// empty, and FLUSHALL (a failover to an empty replica looks like either
// to the clients).
func RedisWipes() []RedisWipe {
	return []RedisWipe{{"restarted empty", (*Redis).Restart}, {"FLUSHALL", (*Redis).FlushAll}}
}

func ping(addr string) bool {
	reply, err := command(addr, "PING")
	return err == nil && reply == "+PONG"
}

// command sends one inline command and returns the first line of the
// reply.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}
