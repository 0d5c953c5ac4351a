package node

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDemoWebSocket(t *testing.T) {
	tests := []struct {
		advertised, bound string
		tls               bool
		want              string
	}{
		{"", "127.0.0.1:4102", false, "ws://127.0.0.1:4102/sub"},
		{"", "0.0.0.0:3102", false, "ws://:3102/sub"},
		{"", "[::]:3102", true, "wss://:3102/sub"},
		{"", "[::1]:4102", false, "ws://[::1]:4102/sub"},
		{"push.example.com:443", "0.0.0.0:3102", true, "wss://push.example.com:443/sub"},
		{"push.example.com:80", "", false, "ws://push.example.com:80/sub"},
		{"", "", false, ""},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, demoWebSocket(tc.advertised, tc.bound, tc.tls), "%+v", tc)
	}
}

// TestDemoFollowsTheServer: the page served by a server whose WebSocket
// listener is not on :3102 is told the listener's address.
func TestDemoFollowsTheServer(t *testing.T) {
	app := startAllInOne(t)
	resp, err := http.Get("http://" + app.Addr("http") + "/config.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	var cfg struct {
		WS string `json:"ws"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&cfg))
	assert.Equal(t, "ws://"+app.Addr("ws")+"/sub", cfg.WS)
}
