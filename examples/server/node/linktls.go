package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLS on the link (job -> cloud) takes three flags, the same in each role:
//
//   - -link-tls-cert and -link-tls-key: this process's certificate. A
//     cloud node serves its link over TLS with it; job presents it to the
//     nodes as its client certificate.
//   - -link-tls-ca: the CA that verifies the other side. job dials the
//     links over TLS, verifying the nodes' certificates with it; a cloud
//     node requires job's client certificate, verified with it.
//
// So a node with a certificate and no CA serves TLS to any job that knows
// the link secret; with the CA too, only to a job holding a certificate
// the CA signed. job uses TLS when it has the CA. In role all, clustered,
// the process is both: its certificate must allow server and client
// authentication.

func (c *Config) validateLinkTLS() error {
	if (c.LinkTLSCert == "") != (c.LinkTLSKey == "") {
		return usageErr("link-tls-key", "-link-tls-cert and -link-tls-key go together")
	}
	if c.Role == RoleCloud && c.LinkTLSCA != "" && c.LinkTLSCert == "" {
		return usageErr("link-tls-cert", "a cloud node verifies job's certificate (-link-tls-ca) only over TLS: give it its own certificate")
	}
	if c.Role == RoleJob && c.LinkTLSCert != "" && c.LinkTLSCA == "" {
		return usageErr("link-tls-ca", "job dials the links over TLS when it has the CA that verifies the nodes")
	}
	return nil
}

// linkTLS returns the TLS configs of the link: the node's listener's and
// job's dialer's, nil where the flags ask for none.
func (c *Config) linkTLS() (server, client *tls.Config, err error) {
	var certs []tls.Certificate
	if c.LinkTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.LinkTLSCert, c.LinkTLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -link-tls-cert: %v", ErrUsage, err)
		}
		certs = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if c.LinkTLSCA != "" {
		pem, err := os.ReadFile(c.LinkTLSCA)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -link-tls-ca: %v", ErrUsage, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("%w: -link-tls-ca: no PEM certificate in %s", ErrUsage, c.LinkTLSCA)
		}
	}
	if certs != nil {
		server = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
		if pool != nil {
			server.ClientAuth, server.ClientCAs = tls.RequireAndVerifyClientCert, pool
		}
	}
	if pool != nil {
		client = &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	return server, client, nil
}
