package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// apiClient is a minimal HTTP/1.1 keep-alive client for the push API: one
// connection, one request at a time, nothing allocated per request. The
// standard client costs several times more CPU per request, and the
// generator shares the machine with the server it measures.
type apiClient struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

// post sends one request and returns the HTTP status.
func (a *apiClient) post(pathQuery []byte, body []byte) (int, error) {
	if a.conn == nil {
		c, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		a.conn, a.br = c, bufio.NewReaderSize(c, 4096)
	}
	a.req = append(a.req[:0], "POST "...)
	a.req = append(a.req, pathQuery...)
	a.req = append(a.req, " HTTP/1.1\r\nHost: "...)
	a.req = append(a.req, a.addr...)
	a.req = append(a.req, "\r\nContent-Type: text/plain\r\nContent-Length: "...)
	a.req = strconv.AppendInt(a.req, int64(len(body)), 10)
	a.req = append(a.req, "\r\n\r\n"...)
	a.req = append(a.req, body...)
	_ = a.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := a.conn.Write(a.req); err != nil {
		a.close()
		return 0, err
	}
	status, keep, err := readResponse(a.br)
	if err != nil || !keep {
		a.close()
	}
	return status, err
}

func (a *apiClient) close() {
	if a.conn != nil {
		a.conn.Close()
		a.conn, a.br = nil, nil
	}
}

var errBadResponse = errors.New("bench: malformed HTTP response")

// readResponse reads one HTTP/1.1 response, discarding its body, and
// reports the status and whether the connection stays open.
func readResponse(br *bufio.Reader) (status int, keepAlive bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return status, false, fmt.Errorf("%w: header %q", errBadResponse, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: Content-Length %q", errBadResponse, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			}
		}
	}
	switch {
	case chunked:
		for {
			l, err := br.ReadSlice('\n')
			if err != nil {
				return status, false, err
			}
			l, _, _ = bytes.Cut(bytes.TrimRight(l, "\r\n"), []byte(";"))
			n, err := strconv.ParseInt(string(l), 16, 64)
			if err != nil || n < 0 {
				return status, false, fmt.Errorf("%w: chunk size %q", errBadResponse, l)
			}
			if _, err := br.Discard(int(n) + 2); err != nil {
				return status, false, err
			}
			if n == 0 {
				return status, keepAlive, nil // no trailers from net/http here
			}
		}
	case length >= 0:
		if _, err := br.Discard(int(length)); err != nil {
			return status, false, err
		}
		return status, keepAlive, nil
	default:
		_, err := io.Copy(io.Discard, br)
		return status, false, err
	}
}

// slotTime is when push i of a paced run is due: i/rate after start.
func slotTime(start time.Time, rate float64, i int64) time.Time {
	return start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
}

// pushCounters are the publishers' tallies for one tag.
type pushCounters struct {
	sent, accepted, rejected, errors, expected atomic.Uint64
	// answered is when the API answered each accepted push, from its
	// scheduled send: the part of the delivery latency spent before the
	// push was queued (publisher backlog, request, resolve, publish).
	answered latencyHist
}

// target is what one push addresses and how many deliveries it should make.
type target struct {
	path     []byte
	expected int64
}

// targeter builds push i's request path and its expected deliveries.
type targeter func(dst []byte, i int64) target

// newTargeter returns the targeter of the run's mode.
func newTargeter(cfg *config, fl *fleet) (targeter, error) {
	op := strconv.Itoa(cfg.op)
	switch cfg.mode {
	case "room":
		return func(dst []byte, i int64) target {
			r := int(i % int64(cfg.rooms))
			dst = append(dst, "/goim/push/room?operation="+op+"&type=live&room="...)
			dst = strconv.AppendInt(dst, int64(r+1), 10)
			return target{path: dst, expected: fl.roomLive[r].Load()}
		}, nil
	case "mids", "keys":
		cs := fl.snapshot()
		if len(cs) == 0 {
			return nil, errors.New("bench: no connections to push to")
		}
		k := int64(cfg.perPush)
		return func(dst []byte, i int64) target {
			if cfg.mode == "mids" {
				dst = append(dst, "/goim/push/mids?operation="+op+"&mids="...)
			} else {
				dst = append(dst, "/goim/push/keys?operation="+op+"&keys="...)
			}
			for j := int64(0); j < k; j++ {
				c := cs[(i*k+j)%int64(len(cs))]
				if j > 0 {
					dst = append(dst, ',')
				}
				if cfg.mode == "mids" {
					dst = strconv.AppendInt(dst, c.mid, 10)
				} else {
					dst = append(dst, c.key...)
				}
			}
			return target{path: dst, expected: min(k, int64(len(cs)))}
		}, nil
	case "all":
		return func(dst []byte, i int64) target {
			dst = append(dst, "/goim/push/all?operation="+op...)
			return target{path: dst, expected: fl.live.Load()}
		}, nil
	}
	return nil, fmt.Errorf("bench: mode %q cannot push", cfg.mode)
}

// publishStep pushes at rate per second (0: flat out) from publishers
// goroutines: tag 0 during warmup, then tag for window. It returns when
// the window ends or ctx does.
func publishStep(ctx context.Context, cfg *config, tg targeter, rate float64, warmup, window time.Duration,
	tag int, ctr *[maxTags]pushCounters) {
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(window)
	var next atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < cfg.publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := &apiClient{addr: cfg.api}
			defer api.close()
			var path, body []byte
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				var sched time.Time
				if rate > 0 {
					sched = slotTime(start, rate, i)
					if !sched.Before(end) || time.Now().After(end) {
						return // a publisher that fell behind does not stretch the window
					}
					if d := time.Until(sched); d > 0 {
						time.Sleep(d) // < publishers/rate, well inside -duration
					}
				} else {
					sched = time.Now()
					if !sched.Before(end) {
						return
					}
				}
				t := 0
				if !sched.Before(measureFrom) {
					t = tag
				}
				c := &ctr[t]
				tgt := tg(path[:0], i)
				path = tgt.path
				body = appendBody(body[:0], t, sched, cfg.bodySize)
				c.sent.Add(1)
				status, err := api.post(path, body)
				switch {
				case err != nil:
					c.errors.Add(1)
					if c.errors.Load() <= 3 {
						fmt.Fprintf(stderr, "bench: push: %v\n", err)
					}
					time.Sleep(10 * time.Millisecond)
				case status == 200:
					c.answered.record(time.Since(sched))
					c.accepted.Add(1)
					c.expected.Add(uint64(tgt.expected))
				case status == 503 || status == 429:
					// Backpressure: back off a little, as a publisher
					// should, rather than retry in a tight loop on the
					// CPU the server needs to catch up.
					c.rejected.Add(1)
					time.Sleep(10 * time.Millisecond)
				default:
					c.errors.Add(1)
					if c.errors.Load() <= 3 {
						fmt.Fprintf(stderr, "bench: push: HTTP %d\n", status)
					}
				}
			}
		}()
	}
	wg.Wait()
}
