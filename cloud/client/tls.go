package client

import (
	"crypto/tls"
	"net"
)

// tlsClient wraps nc in TLS, naming addr's host as the server name unless
// cfg already does.
func tlsClient(nc net.Conn, cfg *tls.Config, addr string) net.Conn {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return tls.Client(nc, cfg)
}
