package pushapi_test

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"time"
)

// rawClient is a minimal HTTP/1.1 keep-alive load client, in the manner
// of wrk: it writes a request and reads the answer's status and
// Content-Length body, nothing more. On a 2-core machine the benchmark's
// client shares the CPU with the server, so net/http's client, which costs
// about as much CPU per request as the server, hides the server's own
// capacity; this one costs a fraction of it. The server side is the real
// net/http server either way.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
}

func dialRaw(addr string) (*rawClient, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &rawClient{conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

var errBadResponse = errors.New("bad response")

// post sends one request for target with body and returns the status code
// and the latency.
func (c *rawClient) post(target string, body []byte) (int, time.Duration, error) {
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, target...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: bench\r\nContent-Type: text/plain\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	t0 := time.Now()
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, 0, err
	}
	if len(line) < 12 {
		return 0, 0, errBadResponse
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, errBadResponse
	}
	n := -1
	for {
		line, err = c.r.ReadSlice('\n')
		if err != nil {
			return 0, 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return 0, 0, errBadResponse
	}
	if _, err := c.r.Discard(n); err != nil {
		return 0, 0, err
	}
	return status, time.Since(t0), nil
}

func (c *rawClient) close() { _ = c.conn.Close() }
