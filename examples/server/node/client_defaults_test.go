package node

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// TestDefaultClientReceivesREADMEPushes: a Go client dialled with the
// default config receives the README's first pushes, to its user and to
// everyone (op 1000), on both transports: the API's "keys: 1" means a
// delivery.
func TestDefaultClientReceivesREADMEPushes(t *testing.T) {
	app := startAllInOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := client.Dial(ctx, client.Config{Network: "ws", Addr: app.Addr("ws"), Mid: 42})
	require.NoError(t, err)
	defer ws.Close()
	tcp, err := client.Dial(ctx, client.Config{Addr: app.Addr("tcp"), Mid: 42})
	require.NoError(t, err)
	defer tcp.Close()

	r := post(t, app, "/goim/push/mids?operation=1000&mids=42", "hi 42")
	var sent struct {
		Keys int `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &sent))
	require.Equal(t, 2, sent.Keys, "the API counts both connections")
	receive(t, ws, 1000, "hi 42")
	receive(t, tcp, 1000, "hi 42")

	post(t, app, "/goim/push/all?operation=1000", "all")
	receive(t, ws, 1000, "all")
	receive(t, tcp, 1000, "all")
}
