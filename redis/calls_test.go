package redis

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stallingProxy forwards loopback connections to addr and counts them. On
// the first, it passes the server's first reply line and holds back the
// rest, as a server that stopped answering mid-pipeline would.
func stallingProxy(t *testing.T, addr string) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				_ = c.Close()
				continue
			}
			t.Cleanup(func() { _ = c.Close(); _ = s.Close() })
			go func() { _, _ = io.Copy(s, c) }()
			if accepted.Add(1) > 1 {
				go func() { _, _ = io.Copy(c, s) }()
				continue
			}
			go func() {
				br := bufio.NewReader(s)
				line, err := br.ReadString('\n')
				if err == nil {
					_, _ = c.Write([]byte(line))
				}
				_, _ = io.Copy(io.Discard, br)
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// TestPipelineTimeoutNotRetried: the first call of a pipeline answers
// NOSCRIPT, the second's reply never comes (the read times out and
// redigo closes the connection). The pipeline fails with the timeout and
// is not retried: the second call may have run. Before, the reload on the
// closed connection failed as a lost connection, and the whole pipeline
// ran again on another.
func TestPipelineTimeoutNotRetried(t *testing.T) {
	srv := testenv.StartRedis(t)
	addr, accepted := stallingProxy(t, srv.Addr)
	r := routerForTest(t, Config{Addr: addr, ReadTimeout: 300 * time.Millisecond})
	s := redigo.NewScript(1, `return redis.call('INCR', KEYS[1] .. 'n')`)
	_, err := r.scriptReplies(context.Background(), s, [][]any{{"t:"}, {"t:"}})
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Equal(t, int32(1), accepted.Load(), "not retried on another connection")
	assert.Nil(t, nodeDo(t, srv.Addr, "GET", "t:n"), "no call ran")
}
