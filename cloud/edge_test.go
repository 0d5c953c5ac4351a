package cloud_test

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// upgradeStatus sends req to a ServeWS listener, at most 1 MiB of it
// (the server may hang up sooner), and returns the response's status.
func upgradeStatus(t *testing.T, addr, req string) int {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = nc.Write([]byte(req)) }()
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestWSUpgradeSizeCap: the whole upgrade request is capped, so one long
// header line cannot grow the node; a request line over the cap is a bad
// request.
func TestWSUpgradeSizeCap(t *testing.T) {
	n := startNode(t, cloud.Config{})
	const ok = "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	big := strings.Repeat("a", 1<<20)

	require.Equal(t, http.StatusSwitchingProtocols, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+"X-Fine: "+strings.Repeat("a", 8<<10)+"\r\n\r\n"))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+"X-Big: "+big+"\r\n\r\n"))
	many := strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 40)
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, upgradeStatus(t, n.wsAddr, "GET /sub HTTP/1.1\r\n"+ok+many+"\r\n"))
	require.Equal(t, http.StatusBadRequest, upgradeStatus(t, n.wsAddr, "GET /sub?"+big+" HTTP/1.1\r\n"+ok+"\r\n"))
	waitFor(t, "refused sockets closed", func() bool { return n.srv.Stats().Conns == 0 })
}
