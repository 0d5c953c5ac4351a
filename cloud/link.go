package cloud

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
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
// until Shutdown. Each connection must open with a hello, within
// HandshakeTimeout, in which job and the node prove to each other that
// they know Config.LinkSecret without sending it (an HMAC challenge; the
// previous release's hello, which carries the secret, is still accepted,
// counted in Stats.LinkLegacyHellos and logged as deprecated); then its
// pipelined OpDeliver requests are handed to Deliver in order and each is
// acknowledged with OpAck once accepted (an ack body names the reason it
// was not).
//
// For TLS, pass a listener from crypto/tls's NewListener; to require job's
// client certificate, set ClientAuth to tls.RequireAndVerifyClientCert and
// ClientCAs in its config. The TLS handshake runs within HandshakeTimeout
// too.
//
// Without Config.LinkSecret (and without InsecureLink) it closes ln and
// returns ErrNoLinkSecret at once instead of refusing every hello.
func (s *Server) ServeLink(ln net.Listener) error {
	if s.cfg.LinkSecret == "" && !s.cfg.InsecureLink {
		_ = ln.Close()
		return ErrNoLinkSecret
	}
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
	peer, err := link.Accepter{Secret: s.cfg.LinkSecret, Insecure: s.cfg.InsecureLink, Node: s.id}.Accept(br, nc)
	if err != nil {
		s.stats.linkRefused.Add(1)
		level := slog.LevelWarn
		if errors.Is(err, link.ErrNoHello) {
			level = slog.LevelDebug // not even a hello: a probe or a scan
		}
		s.cfg.Logger.Log(context.Background(), level, "cloud: link hello refused",
			"remote", nc.RemoteAddr().String(), "client", peer.Client, "err", err)
		return
	}
	if peer.Version == link.VersionLegacy {
		s.stats.linkLegacyHellos.Add(1)
		s.cfg.Logger.Warn("cloud: deprecated link hello (version 1): the link secret crossed the network; upgrade job",
			"remote", nc.RemoteAddr().String(), "client", peer.Client)
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
		if err := protocol.WriteFrame(bw, &protocol.Frame{Ver: int16(peer.Version), Op: link.OpAck, Seq: f.Seq, Body: []byte(reason)}); err != nil {
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
