package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/imcloud/imcloud/protocol"
)

// client is one benchmark connection: a raw goim v2 reader, lighter than
// cloud/client (no channel per message, one buffer, one lock per read).
type client struct {
	id   int
	mid  int64
	key  string
	room int
	ws   bool
	conn net.Conn
	br   *bufio.Reader // WebSocket only
	wmu  sync.Mutex    // heartbeats and pongs
	sh   *shard
	// fd is the socket's descriptor once an epoll reader took it over
	// (detached: conn is closed then; writes go to fd).
	fd       int
	detached bool
	// slot is the scale mode's record of this connection (scale.go), nil
	// in the other modes.
	slot *scaleSlot
}

// fleet is every connection of a run.
type fleet struct {
	cfg *config
	rec *recorder

	mu      sync.Mutex
	clients []*client

	polls *pollers // epoll readers, or nil: a goroutine per connection

	live        atomic.Int64
	roomLive    []atomic.Int64
	disconnects atomic.Int64
	dialErrs    atomic.Int64
	closing     atomic.Bool
	wg          sync.WaitGroup
	// onLost, when set, runs after a connection was lost (the scale
	// mode reconnects it).
	onLost func(c *client, err error)
}

func newFleet(cfg *config, rec *recorder) *fleet {
	return &fleet{cfg: cfg, rec: rec, roomLive: make([]atomic.Int64, cfg.rooms)}
}

// sourceIP is the loopback address connection i dials from, so that no
// address carries more than perIP connections (the server's per-IP cap,
// and one address's ephemeral ports).
func sourceIP(i, perIP int) net.IP {
	n := i / perIP
	return net.IPv4(127, byte(n>>16), byte(n>>8), byte(n+1))
}

// roomName is the room key of room r.
func roomName(r int) string { return "live://" + strconv.Itoa(r+1) }

// connectTo dials until the fleet holds n connections (or ctx ends), at
// most cfg.connectRate per second with a few dials in flight.
func (f *fleet) connectTo(ctx context.Context, n int) {
	f.mu.Lock()
	from := len(f.clients)
	f.mu.Unlock()
	if n <= from {
		return
	}
	start := time.Now()
	next := atomic.Int64{}
	next.Store(int64(from))
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				at := start.Add(time.Duration(float64(i-from) * float64(time.Second) / float64(f.cfg.connectRate)))
				if d := time.Until(at); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				var c *client
				var err error
				for attempt := 0; attempt < 5; attempt++ {
					if c, err = f.dial(ctx, i); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
				}
				if err != nil {
					if f.dialErrs.Add(1) <= 5 {
						fmt.Fprintf(stderr, "bench: connection %d: %v\n", i, err)
					}
					continue
				}
				f.mu.Lock()
				f.clients = append(f.clients, c)
				f.mu.Unlock()
				f.live.Add(1)
				f.roomLive[c.room].Add(1)
				if f.polls != nil {
					var ahead []byte
					if c.br != nil {
						ahead, _ = c.br.Peek(c.br.Buffered())
					}
					if err := f.polls.add(c, ahead); err != nil {
						f.lost(c, err)
					}
					continue
				}
				f.wg.Add(1)
				go f.read(c)
			}
		}()
	}
	wg.Wait()
}

// dial opens connection i and authenticates it: user mid i+1, key
// "bench-<i>", room i mod rooms.
func (f *fleet) dial(ctx context.Context, i int) (*client, error) {
	cfg := f.cfg
	c := &client{id: i, mid: int64(i + 1), key: "bench-" + strconv.Itoa(i), room: i % cfg.rooms,
		ws: cfg.proto == "ws", sh: f.rec.shards[i%len(f.rec.shards)], fd: -1}
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: sourceIP(i, cfg.perIP)}}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if c.ws {
		wd := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}}
		conn, br, _, err := wd.Dial(dctx, "ws://"+cfg.wsAddr+cfg.wsPath)
		if err != nil {
			return nil, err
		}
		c.conn = conn
		if br == nil {
			br = bufio.NewReaderSize(conn, 4096)
		}
		c.br = br
	} else {
		conn, err := d.DialContext(dctx, "tcp", cfg.tcpAddr)
		if err != nil {
			return nil, err
		}
		c.conn = conn
	}
	auth, _ := json.Marshal(map[string]any{"mid": c.mid, "key": c.key, "room_id": roomName(c.room),
		"platform": "bench", "accepts": []int32{int32(cfg.op)}})
	if err := c.write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpAuth, Seq: 1, Body: auth})); err != nil {
		c.conn.Close()
		return nil, fmt.Errorf("auth: %w", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.awaitAuthReply(); err != nil {
		c.conn.Close()
		return nil, err
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	return c, nil
}

// write sends one goim frame (already encoded), as a masked binary message
// on WebSocket.
func (c *client) write(frame []byte) error {
	c.wmu.Lock()
	if c.detached {
		c.wmu.Unlock()
		if c.ws {
			frame = maskedBinary(frame)
		}
		return c.writeFd(frame)
	}
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if c.ws {
		return ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewBinaryFrame(frame)))
	}
	_, err := c.conn.Write(frame)
	return err
}

var errAuthRefused = errors.New("bench: no auth reply")

func (c *client) awaitAuthReply() error {
	var buf []byte
	for {
		var msg []byte
		var err error
		if c.ws {
			msg, buf, err = c.readWS(buf)
		} else {
			// Exactly one frame at a time, so nothing after the reply
			// is read here.
			var h [protocol.HeaderLen]byte
			if _, err = io.ReadFull(c.conn, h[:]); err == nil {
				size := int(uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3]))
				if size < protocol.HeaderLen || size > 1<<20 {
					return fmt.Errorf("%w: frame of %d bytes", errAuthRefused, size)
				}
				msg = make([]byte, size)
				copy(msg, h[:])
				_, err = io.ReadFull(c.conn, msg[protocol.HeaderLen:])
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errAuthRefused, err)
		}
		var f protocol.Frame
		if _, err := protocol.ParseFrame(msg, &f, 0); err == nil && f.Op == protocol.OpAuthReply {
			return nil
		}
	}
}

// readWS reads one WebSocket data message into buf, answering pings.
func (c *client) readWS(buf []byte) (msg, grown []byte, err error) {
	buf = buf[:0]
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return nil, buf, err
		}
		if h.Length > 1<<24 {
			return nil, buf, fmt.Errorf("bench: WebSocket frame of %d bytes", h.Length)
		}
		start := len(buf)
		need := start + int(h.Length)
		if cap(buf) < need {
			nb := make([]byte, start, need+need/2)
			copy(nb, buf)
			buf = nb
		}
		buf = buf[:need]
		if _, err := io.ReadFull(c.br, buf[start:]); err != nil {
			return nil, buf, err
		}
		if h.Masked {
			ws.Cipher(buf[start:], h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			p := append([]byte(nil), buf[start:]...)
			buf = buf[:start]
			c.wmu.Lock()
			_ = ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewPongFrame(p)))
			c.wmu.Unlock()
			continue
		case ws.OpPong:
			buf = buf[:start]
			continue
		case ws.OpClose:
			return nil, buf, io.EOF
		}
		if h.Fin {
			return buf, buf, nil
		}
	}
}

// read is the connection's receive loop until it fails or the fleet
// closes.
func (f *fleet) read(c *client) {
	defer f.wg.Done()
	var err error
	if c.ws {
		err = f.readWSLoop(c)
	} else {
		err = f.readTCPLoop(c)
	}
	f.lost(c, err)
}

// lost accounts for a connection that ended with err.
func (f *fleet) lost(c *client, err error) {
	f.live.Add(-1)
	f.roomLive[c.room].Add(-1)
	if !f.closing.Load() {
		if f.disconnects.Add(1) <= 5 {
			fmt.Fprintf(stderr, "bench: connection %d lost: %v\n", c.id, err)
		}
	}
	if f.onLost != nil {
		f.onLost(c, err)
	}
}

// consume walks the frames in b (whole frames only) and records pushes;
// it returns how many bytes it used.
func consume(b []byte, rx rxTime, ds []delivery, bad *int) (int, []delivery, error) {
	used := 0
	var fr protocol.Frame
	for used < len(b) {
		n, err := protocol.ParseFrame(b[used:], &fr, 0)
		if errors.Is(err, protocol.ErrTruncated) {
			break
		}
		if err != nil {
			return used, ds, err
		}
		used += n
		if fr.Op == protocol.OpRaw {
			it := protocol.NewBatchIter(fr.Body)
			var in protocol.Frame
			for it.Next(&in) {
				ds = push(ds, &in, rx, bad)
			}
			if err := it.Err(); err != nil {
				return used, ds, err
			}
			continue
		}
		ds = push(ds, &fr, rx, bad)
	}
	return used, ds, nil
}

func push(ds []delivery, f *protocol.Frame, rx rxTime, bad *int) []delivery {
	if f.Op == protocol.OpDisconnect {
		// The server's op 6 (drain, refusal): its reconnect hint, for
		// the scale mode's reconnects; never counted as a push.
		return append(ds, delivery{tag: tagDisconnect, lat: disconnectHint(f.Body), arr: -1})
	}
	if f.Op < protocol.OpPushMin {
		return ds // heartbeat replies and other control frames
	}
	tag, sched, ok := parseBody(f.Body)
	if !ok {
		*bad++
		return ds
	}
	d := delivery{tag: tag, lat: time.Duration(rx.read - sched), arr: -1}
	if rx.kernel != 0 {
		d.arr = max(0, time.Duration(rx.kernel-sched))
		// Data that arrived after the poller took its clock was read
		// later still.
		d.lat = max(d.lat, d.arr)
	}
	return append(ds, d)
}

func (f *fleet) readTCPLoop(c *client) error {
	buf := make([]byte, 4096)
	have := 0
	var ds []delivery
	for {
		if have == len(buf) {
			nb := make([]byte, 2*len(buf))
			copy(nb, buf[:have])
			buf = nb
		}
		n, err := c.conn.Read(buf[have:])
		if err != nil {
			return err
		}
		have += n
		bad := 0
		used, out, perr := consume(buf[:have], rxTime{read: time.Now().UnixNano()}, ds[:0], &bad)
		ds = out
		if len(ds) > 0 || bad > 0 {
			c.sh.add(ds, bad)
		}
		if perr != nil {
			return perr
		}
		have = copy(buf, buf[used:have])
	}
}

func (f *fleet) readWSLoop(c *client) error {
	var buf []byte
	var ds []delivery
	for {
		msg, grown, err := c.readWS(buf)
		buf = grown
		if err != nil {
			return err
		}
		bad := 0
		used, out, perr := consume(msg, rxTime{read: time.Now().UnixNano()}, ds[:0], &bad)
		ds = out
		if len(ds) > 0 || bad > 0 {
			c.sh.add(ds, bad)
		}
		if perr == nil && used != len(msg) {
			perr = protocol.ErrTruncated
		}
		if perr != nil {
			return perr
		}
	}
}

// heartbeat sends op 2 on every connection once per interval, spread
// evenly over it, until ctx ends.
func (f *fleet) heartbeat(ctx context.Context, interval time.Duration) {
	beat := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpHeartbeat, Seq: 0})
	for ctx.Err() == nil {
		f.mu.Lock()
		cs := append([]*client(nil), f.clients...)
		f.mu.Unlock()
		start := time.Now()
		if len(cs) == 0 {
			cs = nil
		}
		for i, c := range cs {
			at := start.Add(time.Duration(int64(interval) * int64(i) / int64(len(cs))))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			_ = c.write(append([]byte(nil), beat...)) // masking works in place
		}
		if d := time.Until(start.Add(interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
	}
}

// close ends every connection and waits for the readers.
func (f *fleet) close() {
	f.closing.Store(true)
	if f.polls != nil {
		f.polls.close()
	}
	f.mu.Lock()
	for _, c := range f.clients {
		c.conn.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// snapshot returns the connected clients.
func (f *fleet) snapshot() []*client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*client(nil), f.clients...)
}
