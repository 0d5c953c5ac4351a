package cloud_test

import (
	"testing"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/linktest"
)

// TestLinkConformance runs job's Link suite on *cloud.Server called in
// process (the one-process mode); job's tests run it on the link client
// over TCP.
func TestLinkConformance(t *testing.T) {
	linktest.Run(t, func(t *testing.T) linktest.Harness {
		n := startNode(t, cloud.Config{NodeID: "node-a", InboundRate: -1, AcceptRate: -1})
		return linktest.Harness{
			Link:       n.srv,
			Node:       n.srv.ID(),
			ClientAddr: n.tcpAddr,
			Shutdown:   n.srv.Shutdown,
			ClosedErr:  cloud.ErrServerClosed,
		}
	})
}
