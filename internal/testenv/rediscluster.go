package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisCluster is a Redis Cluster of masters only (no replicas), every
// node a redis-server owned by one test with no persistence, on loopback.
// The nodes are stopped when the test ends.
type RedisCluster struct {
	// Addrs are the masters' host:port, in the order they were started.
	Addrs []string
	// Nodes are the masters' processes.
	Nodes []*Redis
}

// StartRedisCluster starts masters redis-servers in cluster mode (each
// with its cluster bus on a free port of its own) and joins them into one
// Redis Cluster with redis-cli --cluster create, the 16384 slots split
// evenly, then waits until every node reports cluster_state:ok. A Cluster
// needs 3 masters or more, and redis-server 7 or later (--cluster-port).
// It skips (or fails, see BackendsRequired) when redis-server or
// redis-cli is not installed (Debian's redis-server package brings
// redis-cli, in redis-tools).
func StartRedisCluster(t testing.TB, masters int) *RedisCluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("testenv: a Redis Cluster needs 3 masters or more, not %d", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		missing(t, "redis-cli")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(t, "redis-server")
	}
	if major, version := redisMajor(); major < 7 {
		missing(t, "redis-server 7 or later (--cluster-port; installed: "+version+")")
	}
	c := &RedisCluster{}
	for range masters {
		n := startClusterNode(t)
		c.Nodes = append(c.Nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.Addrs {
		for {
			info, err := bulkCommand(addr, "CLUSTER INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: Redis Cluster node %s not ok within 20s: %q, %v", addr, info, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// StartRedisClusterNode starts one redis-server in cluster mode that has
// joined no Cluster: it serves no slot (CLUSTER SLOTS answers an empty
// list). It skips (or fails) as StartRedisCluster does.
func StartRedisClusterNode(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		missing(t, "redis-server")
	}
	if major, version := redisMajor(); major < 7 {
		missing(t, "redis-server 7 or later (--cluster-port; installed: "+version+")")
	}
	return startClusterNode(t)
}

// startClusterNode starts a redis-server in cluster mode, its cluster bus
// on a free port of its own.
func startClusterNode(t testing.TB) *Redis {
	return startRedis(t, func(port int) []string {
		p := strconv.Itoa(port)
		return []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes-" + p + ".conf",
			"--cluster-port", strconv.Itoa(FreePort(t)),
		}
	})
}

// redisMajor returns the major version of the redis-server installed, and
// its version as redis-server --version reports it (0 and the reason when
// that fails).
func redisMajor() (int, string) {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return 0, fmt.Sprintf("unknown (redis-server --version: %v)", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
			return major, v
		}
	}
	return 0, fmt.Sprintf("unknown (%q)", strings.TrimSpace(string(out)))
}

// bulkCommand sends one inline command whose reply is a bulk string and
// returns that string.
func bulkCommand(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	rd := bufio.NewReader(c)
	head, err := rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	head = strings.TrimRight(head, "\r\n")
	n, err := strconv.Atoi(strings.TrimPrefix(head, "$"))
	if !strings.HasPrefix(head, "$") || err != nil || n < 0 {
		return "", fmt.Errorf("%s: reply %q", cmd, head)
	}
	body := make([]byte, n)
	_, err = io.ReadFull(rd, body)
	return string(body), err
}
