package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcloud/imcloud/protocol"
)

// session is one live connection of a Client.
type session struct {
	c   *Client
	nc  net.Conn
	br  *bufio.Reader
	ws  bool
	wmu sync.Mutex

	mu      sync.Mutex
	pending map[int32]chan protocol.Frame // nil once ended

	closeOnce sync.Once
}

// lockedWriter serializes writes wsutil makes (pong, close replies) with
// ours.
type lockedWriter struct{ s *session }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.wmu.Lock()
	defer w.s.wmu.Unlock()
	return w.s.nc.Write(p)
}

func (s *session) write(f *protocol.Frame) error {
	b := protocol.AppendFrame(nil, f)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var err error
	if s.ws {
		err = wsutil.WriteClientBinary(s.nc, b)
	} else {
		_, err = s.nc.Write(b)
	}
	if err != nil {
		s.close()
		return fmt.Errorf("%w: %v", ErrDisconnected, err)
	}
	return nil
}

func (s *session) close() {
	s.closeOnce.Do(func() { _ = s.nc.Close() })
}

// readFrames reads the next transport unit and returns its frames: one
// frame on TCP, the frames of one message on WebSocket.
func (s *session) readFrames(dst []protocol.Frame) ([]protocol.Frame, error) {
	if !s.ws {
		var f protocol.Frame
		if err := protocol.ReadFrame(s.br, &f, 0); err != nil {
			return dst, err
		}
		return append(dst, f), nil
	}
	data, _, err := wsutil.ReadServerData(struct {
		io.Reader
		io.Writer
	}{s.br, lockedWriter{s}})
	if err != nil {
		return dst, err
	}
	for len(data) > 0 {
		var f protocol.Frame
		n, err := protocol.ParseFrame(data, &f, 0)
		if err != nil {
			return dst, err
		}
		dst = append(dst, f)
		data = data[n:]
	}
	return dst, nil
}

// connect dials, upgrades and authenticates a new session.
func (c *Client) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	token, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{c: c, ws: c.cfg.Network == "ws", pending: make(map[int32]chan protocol.Frame)}
	if s.ws {
		url := c.cfg.Addr
		if !strings.Contains(url, "://") {
			url = "ws://" + url + "/sub"
		}
		d := ws.Dialer{TLSConfig: c.cfg.TLS}
		if c.cfg.Header != nil {
			d.Header = ws.HandshakeHeaderHTTP(c.cfg.Header)
		}
		nc, br, _, err := d.Dial(ctx, url)
		if err != nil {
			return nil, err
		}
		s.nc = nc
		if br == nil {
			br = bufio.NewReader(nc)
		}
		s.br = br
	} else {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
		if err != nil {
			return nil, err
		}
		if c.cfg.TLS != nil {
			tc := tlsClient(nc, c.cfg.TLS, c.cfg.Addr)
			nc = tc
		}
		s.nc = nc
		s.br = bufio.NewReader(nc)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.nc.SetDeadline(dl)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.close()
		return nil, ErrClosed
	}
	auth := struct {
		Mid       int64               `json:"mid"`
		Key       string              `json:"key"`
		RoomID    string              `json:"room_id"`
		Platform  string              `json:"platform"`
		Accepts   []int32             `json:"accepts"`
		Token     string              `json:"token,omitempty"`
		Recover   bool                `json:"recover,omitempty"`
		Positions map[string]Position `json:"positions,omitempty"`
	}{Mid: c.cfg.Mid, Key: c.key, RoomID: c.room, Platform: c.cfg.Platform, Accepts: c.accepts, Token: token}
	if c.cfg.Recover {
		auth.Recover, auth.Positions = true, c.followedPositions()
	}
	body, _ := json.Marshal(auth)
	c.mu.Unlock()
	if err := s.write(&protocol.Frame{Ver: c.ver(), Op: protocol.OpAuth, Seq: c.seq.Add(1), Body: body}); err != nil {
		return nil, err
	}
	for {
		frames, err := s.readFrames(nil)
		if err != nil {
			s.close()
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, ErrAuthRefused
			}
			return nil, err
		}
		for _, f := range frames {
			if f.Op != protocol.OpAuthReply {
				continue
			}
			var info AuthInfo
			_ = json.Unmarshal(f.Body, &info)
			_ = s.nc.SetDeadline(time.Time{})
			c.mu.Lock()
			c.auth = info
			c.recoverySeen = false // this connection's node has not answered op 25 yet
			if info.Key != "" {
				c.key = info.Key
			}
			c.cur = s
			closed := c.closed
			c.mu.Unlock()
			if closed {
				s.close()
				return nil, ErrClosed
			}
			c.setToken(token)
			return s, nil
		}
	}
}

// serve reads the session until it ends, heartbeating meanwhile.
func (c *Client) serve(s *session) {
	stop := make(chan struct{})
	var hb sync.WaitGroup
	hb.Add(2)
	go func() {
		defer hb.Done()
		c.refreshes(stop)
	}()
	go func() {
		defer hb.Done()
		t := time.NewTicker(c.cfg.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = s.write(&protocol.Frame{Ver: c.ver(), Op: protocol.OpHeartbeat, Seq: c.seq.Add(1)})
			}
		}
	}()
	defer func() {
		close(stop)
		s.close()
		hb.Wait()
		s.mu.Lock()
		for _, ch := range s.pending {
			close(ch)
		}
		s.pending = nil
		s.mu.Unlock()
	}()
	var frames []protocol.Frame
	for {
		var err error
		frames, err = s.readFrames(frames[:0])
		if err != nil {
			return
		}
		now := time.Now()
		for i := range frames {
			c.dispatch(s, &frames[i], now)
		}
	}
}

func (c *Client) dispatch(s *session, f *protocol.Frame, now time.Time) {
	switch f.Op {
	case protocol.OpRaw:
		it := protocol.NewBatchIter(f.Body)
		var inner protocol.Frame
		for it.Next(&inner) {
			c.deliver(&inner, now)
		}
		return
	case protocol.OpHeartbeatReply:
		if n, err := protocol.HeartbeatOnline(f.Body); err == nil {
			c.online.Store(n)
		}
	case protocol.OpRecovery:
		c.recovery(f.Body)
		return
	case protocol.OpDisconnect:
		var d Disconnect
		_ = json.Unmarshal(f.Body, &d)
		c.mu.Lock()
		c.hint = time.Duration(d.ReconnectMS) * time.Millisecond
		c.mu.Unlock()
		select {
		case c.discs <- d:
		default:
		}
		return
	}
	if f.Seq != 0 && f.Op < protocol.OpPushMin {
		s.mu.Lock()
		ch := s.pending[f.Seq]
		s.mu.Unlock()
		if ch != nil {
			fr := *f
			fr.Body = append([]byte(nil), f.Body...)
			select {
			case ch <- fr:
			default:
			}
			return
		}
	}
	if f.Op == protocol.OpHeartbeatReply || f.Op == protocol.OpAuthReply {
		return
	}
	c.deliver(f, now)
}

func (c *Client) deliver(f *protocol.Frame, now time.Time) {
	if f.Op == protocol.OpPushAt && c.cfg.Recover {
		c.pushAt(f.Body, now)
		return
	}
	c.push(Push{Op: f.Op, Body: append([]byte(nil), f.Body...), Received: now})
}

func (c *Client) push(p Push) {
	select {
	case c.msgs <- p:
	default:
		c.dropped.Add(1)
	}
}
