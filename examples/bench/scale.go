package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud/protocol"
)

// The scale mode (-mode scale) is one generator process of the scale
// scenario (scripts/bench-scale.sh, coordinated by `bench scale`, see
// scalectl.go). It holds -conns authenticated WebSocket connections
// spread over the gateways of -gateways (connection i on gateway
// (i+gen) mod len), all in one room, read by the epoll readers (no
// goroutine per connection: a dial pool of a few goroutines, timers for
// the waits, one heartbeat goroutine). Connections are numbered
// globally: generator -gen-index k holds mids k*conns+1 onwards; source
// addresses start at the -first-ip'th 127.x address, -per-ip per
// address, so several generators never share one.
//
// Every connection records, per push tag (1-7), when each push arrived in
// its socket (kernel receive time, from the push's scheduled send).
// A connection the server closes reconnects to the same gateway: after a
// drain's op 6 at a random point in the second half of its reconnect
// hint, without a hint after 0.5-1.5 s, and when a dial fails after a
// jittered backoff doubling from 0.5 s to at most 8 s. Each connection
// gets a new key (scale-<mid>-<n>), so a route left behind by an old one
// shows as stale.
//
// The coordinator drives it over HTTP on -ctl: POST /start begins the
// ramp; GET /state, /got?tag=N and /conns report (scaleState, scaleGot,
// one "mid key gateway" line per live connection).

// scaleTags is how many push tags a connection records (tags 1..scaleTags-1).
const scaleTags = 8

// tagDisconnect marks op 6 among a read's deliveries (its lat is the
// reconnect hint); never a push.
const tagDisconnect = -1

// disconnectHint reads reconnect_ms from an op 6 body (0: none).
func disconnectHint(body []byte) time.Duration {
	var d struct {
		ReconnectMS int64 `json:"reconnect_ms"`
	}
	if json.Unmarshal(body, &d) != nil || d.ReconnectMS < 0 {
		return 0
	}
	return time.Duration(d.ReconnectMS) * time.Millisecond
}

// scaleSlot is one connection of the generator, across its reconnects.
type scaleSlot struct {
	i    int // index in the generator
	mid  int64
	gw   int
	c    atomic.Pointer[client]
	n    atomic.Int64 // connections made (the key's suffix)
	hint atomic.Int64 // last op 6 reconnect hint, ns
	got  [scaleTags]atomic.Int64
	fail int // consecutive failed dials (dial pool only)
}

// record notes the first arrival of each tag and op 6's hint.
func (s *scaleSlot) record(ds []delivery) {
	for _, d := range ds {
		switch {
		case d.tag == tagDisconnect:
			s.hint.Store(int64(d.lat))
		case d.tag > 0 && d.tag < scaleTags:
			at := d.arr
			if at < 0 {
				at = d.lat
			}
			s.got[d.tag].CompareAndSwap(0, int64(max(at, 1)))
		}
	}
}

// scaleGen is the generator.
type scaleGen struct {
	cfg   *config
	fl    *fleet
	slots []*scaleSlot
	dials chan *scaleSlot

	started, rampDone, fullAt atomic.Int64 // Unix ns
	lost, dialErrs, refused   atomic.Int64
	startOnce                 sync.Once
	start                     chan struct{}
}

// scaleState is GET /state.
type scaleState struct {
	Gen      int     `json:"gen"`
	Target   int     `json:"target"`
	Live     int64   `json:"live"`
	PerGW    []int64 `json:"per_gateway"`
	Lost     int64   `json:"lost"`
	DialErrs int64   `json:"dial_errors"`
	Refused  int64   `json:"refused"`
	Started  int64   `json:"started_ns"`
	RampDone int64   `json:"ramp_done_ns"`
	FullAt   int64   `json:"full_at_ns"`
}

// scaleGot is GET /got?tag=N: which connections have push N, and when it
// arrived (ns from its scheduled send).
type scaleGot struct {
	Target  int      `json:"target"`
	Have    int      `json:"have"`
	Arrived []int64  `json:"arrived_ns"`
	Missing []string `json:"missing,omitempty"` // the first 20 mids without it
}

func runScale(ctx context.Context, cfg *config, out io.Writer) (bool, error) {
	if len(cfg.gateways) == 0 {
		return false, errors.New("bench: -mode scale needs -gateways")
	}
	g := &scaleGen{cfg: cfg, dials: make(chan *scaleSlot, cfg.conns), start: make(chan struct{})}
	g.fl = newFleet(cfg, newRecorder(64))
	var err error
	if g.fl.polls, err = newPollers(g.fl, cfg.pollers, false); err != nil {
		return false, err
	}
	defer g.fl.close()
	g.fl.onLost = g.onLost
	for i := 0; i < cfg.conns; i++ {
		g.slots = append(g.slots, &scaleSlot{i: i, mid: int64(cfg.genIndex*cfg.conns + i + 1),
			gw: (i + cfg.genIndex) % len(cfg.gateways)})
	}
	ln, err := net.Listen("tcp", cfg.ctl)
	if err != nil {
		return false, err
	}
	srv := &http.Server{Handler: g.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintf(out, "bench: scale generator %d: %d connections over %d gateways, control on %s\n",
		cfg.genIndex, cfg.conns, len(cfg.gateways), ln.Addr())
	for w := 0; w < 64; w++ {
		go g.dialer(ctx)
	}
	select {
	case <-g.start:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	g.started.Store(time.Now().UnixNano())
	go g.heartbeat(ctx)
	go g.ramp(ctx)
	<-ctx.Done()
	return true, nil
}

// ramp queues every connection's first dial, -connect-rate per second.
func (g *scaleGen) ramp(ctx context.Context) {
	t0 := time.Now()
	for i, s := range g.slots {
		if d := time.Until(t0.Add(time.Duration(float64(i) * float64(time.Second) / float64(g.cfg.connectRate)))); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		g.dials <- s
	}
}

// dialer is one of the dial pool's goroutines.
func (g *scaleGen) dialer(ctx context.Context) {
	for {
		var s *scaleSlot
		select {
		case s = <-g.dials:
		case <-ctx.Done():
			return
		}
		c, err := g.dial(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errAuthRefused) {
				g.refused.Add(1)
			}
			if g.dialErrs.Add(1) <= 5 {
				fmt.Fprintf(stderr, "bench: connection %d: %v\n", s.mid, err)
			}
			s.fail++
			back := min(8*time.Second, 250*time.Millisecond<<min(s.fail, 5))
			g.later(s, back/2+rand.N(back))
			continue
		}
		s.fail = 0
		s.c.Store(c)
		if g.fl.live.Add(1) == int64(len(g.slots)) {
			now := time.Now().UnixNano()
			g.rampDone.CompareAndSwap(0, now)
			g.fullAt.Store(now)
		}
		g.fl.roomLive[0].Add(1)
		var ahead []byte
		if c.br != nil {
			ahead, _ = c.br.Peek(c.br.Buffered())
		}
		if err := g.fl.polls.add(c, ahead); err != nil {
			g.fl.lost(c, err)
		}
	}
}

// later queues s's dial after d (a timer, not a goroutine, waits).
func (g *scaleGen) later(s *scaleSlot, d time.Duration) {
	time.AfterFunc(d, func() { g.dials <- s })
}

// onLost reconnects a lost connection within its op 6 hint.
func (g *scaleGen) onLost(c *client, _ error) {
	s := c.slot
	if s == nil || !s.c.CompareAndSwap(c, nil) || g.fl.closing.Load() {
		return
	}
	g.lost.Add(1)
	d := 500*time.Millisecond + rand.N(time.Second)
	if h := time.Duration(s.hint.Swap(0)); h > 0 {
		d = h/2 + rand.N(h/2+1)
	}
	g.later(s, d)
}

// dial opens and authenticates s's next connection (auth ver 2: op 6 on
// drain).
func (g *scaleGen) dial(ctx context.Context, s *scaleSlot) (*client, error) {
	cfg := g.cfg
	n := s.n.Add(1)
	c := &client{id: s.i, mid: s.mid, key: "scale-" + strconv.FormatInt(s.mid, 10) + "-" + strconv.FormatInt(n, 10),
		ws: cfg.proto == "ws", sh: g.fl.rec.shards[s.i%len(g.fl.rec.shards)], fd: -1, slot: s}
	src := sourceIP(cfg.firstIP*cfg.perIP+s.i, cfg.perIP)
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var (
		conn net.Conn
		br   *bufio.Reader
		err  error
	)
	if c.ws {
		wd := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}}
		conn, br, _, err = wd.Dial(dctx, "ws://"+cfg.gateways[s.gw]+cfg.wsPath)
	} else {
		conn, err = d.DialContext(dctx, "tcp", cfg.gateways[s.gw])
	}
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 4096)
	}
	c.conn, c.br = conn, br
	auth, _ := json.Marshal(map[string]any{"mid": c.mid, "key": c.key, "room_id": cfg.scaleRoom,
		"platform": "bench", "accepts": []int32{int32(cfg.op)}})
	if err := c.write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpAuth, Seq: 1, Body: auth})); err != nil {
		conn.Close()
		return nil, fmt.Errorf("auth: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.awaitAuthReply(); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	return c, nil
}

// heartbeat sends op 2 on every live connection once per -heartbeat,
// spread over it in 50 ms slices.
func (g *scaleGen) heartbeat(ctx context.Context) {
	beat := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpHeartbeat})
	const slice = 50 * time.Millisecond
	per := max(1, int(int64(len(g.slots))*int64(slice)/int64(g.cfg.heartbeat)))
	t := time.NewTicker(slice)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for k := 0; k < per; k++ {
			if c := g.slots[next].c.Load(); c != nil {
				_ = c.write(append([]byte(nil), beat...))
			}
			next = (next + 1) % len(g.slots)
		}
	}
}

func (g *scaleGen) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, _ *http.Request) {
		g.startOnce.Do(func() { close(g.start) })
	})
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		st := scaleState{Gen: g.cfg.genIndex, Target: len(g.slots), Live: g.fl.live.Load(),
			PerGW: make([]int64, len(g.cfg.gateways)), Lost: g.lost.Load(), DialErrs: g.dialErrs.Load(),
			Refused: g.refused.Load(), Started: g.started.Load(), RampDone: g.rampDone.Load(), FullAt: g.fullAt.Load()}
		for _, s := range g.slots {
			if s.c.Load() != nil {
				st.PerGW[s.gw]++
			}
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /got", func(w http.ResponseWriter, r *http.Request) {
		tag, err := strconv.Atoi(r.URL.Query().Get("tag"))
		if err != nil || tag <= 0 || tag >= scaleTags {
			http.Error(w, "tag: 1 to 7", http.StatusBadRequest)
			return
		}
		got := scaleGot{Target: len(g.slots)}
		for _, s := range g.slots {
			if at := s.got[tag].Load(); at > 0 {
				got.Have++
				got.Arrived = append(got.Arrived, at)
			} else if len(got.Missing) < 20 {
				got.Missing = append(got.Missing, strconv.FormatInt(s.mid, 10))
			}
		}
		slices.Sort(got.Arrived)
		_ = json.NewEncoder(w).Encode(got)
	})
	mux.HandleFunc("GET /conns", func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		for _, s := range g.slots {
			if c := s.c.Load(); c != nil {
				fmt.Fprintf(&b, "%d %s %d\n", s.mid, c.key, s.gw)
			}
		}
		_, _ = io.WriteString(w, b.String())
	})
	return mux
}
