package logic_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/logic"
)

// TestHTTPRouterRebuildingIs503: while the router rebuilds after losing
// its data, a mid push and a key push it cannot resolve answer 503 with
// Retry-After and publish nothing, rather than 200 "0 keys"; a key it
// resolves and a room push go through.
func TestHTTPRouterRebuildingIs503(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	e.router.Wipe()
	require.NoError(t, e.router.PutSessions(context.Background(), []imcloud.Session{{Mid: 2, Key: "k3", Node: "node-a", Gen: 1}}, time.Minute))

	for _, path := range []string{"/goim/push/mids?operation=1000&mids=1", "/goim/push/mids?operation=1000&mids=2", "/goim/push/keys?operation=1000&keys=k1,k3"} {
		resp, err := http.Post(srv.URL+path, "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		var r apiReply
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"), path)
		assert.Equal(t, -503, r.Code)
		assert.Contains(t, r.Message, "rebuilding")
	}
	assert.Zero(t, e.p.Stats().Messages, "nothing published")

	status, r := call(t, "POST", srv.URL+"/goim/push/keys?operation=1000&keys=k3", "", "x")
	assert.Equal(t, http.StatusOK, status, "every key found: the answer is complete")
	assert.Contains(t, string(r.Data), `"nodes":1,"keys":1,"messages":1}`)
	status, _ = call(t, "POST", srv.URL+"/goim/push/room?operation=1000&type=live&room=1", "", "x")
	assert.Equal(t, http.StatusOK, status, "room pushes do not resolve users")
}
