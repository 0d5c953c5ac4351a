package job

import (
	"testing"
	"time"

	"github.com/imcloud/imcloud/internal/linktest"
)

// TestLinkClientConformance runs the Link suite on LinkClient over TCP to a
// real gateway's link listener; cloud's tests run it on *cloud.Server in
// process.
func TestLinkClientConformance(t *testing.T) {
	linktest.Run(t, func(t *testing.T) linktest.Harness {
		n := startCloudNode(t, "node-a", 0)
		lc := NewLinkClient(n.linkAddr, secret, LinkOptions{
			ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
		t.Cleanup(func() { lc.Close() })
		return linktest.Harness{
			Link:       lc,
			Node:       n.node().ID,
			ClientAddr: n.tcpAddr,
			Shutdown:   n.srv.Shutdown,
			// ClosedErr unset: the client sees its connection lost or
			// refused, not why.
		}
	})
}
