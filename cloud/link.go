package cloud

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/protocol"
)

// linkReadTimeout closes a link connection idle for this long (job keeps
// its links busy or reconnects).
const linkReadTimeout = 10 * time.Minute

// ServeLink accepts job link connections on ln (internal/link format)
// until Shutdown. Each connection must open with a hello carrying
// Config.LinkSecret and the link version; then its pipelined OpDeliver
// requests are handed to Deliver in order and each is acknowledged with
// OpAck once accepted (an ack body names the reason it was not).
func (s *Server) ServeLink(ln net.Listener) error {
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if isTemporary(err) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			return ErrServerClosed
		}
		s.links[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveLinkConn(nc)
	}
}

func (s *Server) serveLinkConn(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.links, nc)
		s.mu.Unlock()
		_ = nc.Close()
	}()
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 16<<10)
	var f protocol.Frame

	_ = nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := protocol.ReadFrame(br, &f, 4096); err != nil || f.Op != link.OpHello {
		s.stats.linkRefused.Add(1)
		return
	}
	ack := link.HelloAck{Version: link.Version, Node: s.id}
	_, err := link.CheckHello(f.Body, s.cfg.LinkSecret)
	if err == nil && s.cfg.LinkSecret == "" && !s.cfg.InsecureLink {
		err = errors.New("link: no secret configured on the node")
	}
	if err != nil {
		ack.Error = err.Error()
	}
	body, _ := json.Marshal(ack)
	_ = protocol.WriteFrame(bw, &protocol.Frame{Ver: protocol.VerGoim, Op: link.OpHelloAck, Seq: f.Seq, Body: body})
	_ = bw.Flush()
	if err != nil {
		s.stats.linkRefused.Add(1)
		s.cfg.Logger.Warn("cloud: link hello refused", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	s.stats.linkConns.Add(1)
	defer s.stats.linkConns.Add(-1)

	var msgs []*imcloud.Message
	// Acks wait in bw while more requests are read already (pipelining);
	// before Deliver waits for the backlog they go out: their requests
	// were accepted, and an ack never waits for sockets to drain. A failed
	// flush fails the next ack's write too (bufio keeps the error).
	sendAcks := func() {
		if bw.Buffered() > 0 {
			_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
			_ = bw.Flush()
		}
	}
	for {
		_ = nc.SetReadDeadline(time.Now().Add(linkReadTimeout))
		if err := protocol.ReadFrame(br, &f, link.MaxFrameBody); err != nil {
			return
		}
		if f.Op != link.OpDeliver {
			continue // unknown link ops from a newer job are ignored
		}
		msgs = msgs[:0]
		reason := ""
		err := link.SplitMessages(f.Body, func(enc []byte) error {
			m := new(imcloud.Message)
			if err := m.UnmarshalBinary(enc); err != nil {
				return err
			}
			msgs = append(msgs, m)
			return nil
		})
		if err == nil {
			err = s.deliver(context.Background(), msgs, sendAcks)
		}
		if err != nil {
			reason = err.Error()
		}
		_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		if err := protocol.WriteFrame(bw, &protocol.Frame{Ver: protocol.VerGoim, Op: link.OpAck, Seq: f.Seq, Body: []byte(reason)}); err != nil {
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
		clear(msgs)
	}
}
