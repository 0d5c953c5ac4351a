package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// postKey posts a push with an Idempotency-Key and returns the id the
// answer reports.
func postKey(t *testing.T, app *App, path, key, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+app.Addr("http")+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var r apiReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, http.StatusOK, resp.StatusCode, "push %s: %+v", path, r)
	var data struct{ ID string }
	require.NoError(t, json.Unmarshal(r.Data, &data))
	require.Len(t, data.ID, 32, "the answer carries the id used")
	return data.ID
}

// TestAllInOneRetriedPushReachesClientOnce: a push retried with the same
// idempotency key (the client did not see the first answer) reaches the
// client once, through logic, the queue, job and the gateway; the push
// after it, without a key, is the next thing the client receives.
func TestAllInOneRetriedPushReachesClientOnce(t *testing.T) {
	app := startAllInOne(t)
	ws, err := client.Dial(t.Context(), client.Config{Network: "ws", Addr: app.Addr("ws"), Mid: 42, Room: "live://1000", Accepts: []int32{1000}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })

	for _, path := range []string{"/goim/push/mids?operation=1000&mids=42", "/goim/push/room?operation=1000&type=live&room=1000"} {
		key := "retry-" + path[len("/goim/push/"):len("/goim/push/")+4]
		first := postKey(t, app, path, key, "once "+key)
		again := postKey(t, app, path, key, "once "+key)
		require.Equal(t, first, again, "a retry carries the same id")
		require.Equal(t, again, postKey(t, app, path, first, "once "+key), "the answered id sent back is the same id")
		post(t, app, path, "after "+key)
		receive(t, ws, 1000, "once "+key)
		receive(t, ws, 1000, "after "+key) // not the retry's copy
	}
}

// TestParseMaxPushCost: -max-push-cost and its environment variable set
// the Pusher's large budget.
func TestParseMaxPushCost(t *testing.T) {
	cfg, err := Parse([]string{"-max-push-cost", "7"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, int64(7), cfg.MaxPushCost)
	cfg, err = Parse(nil, func(k string) string { return map[string]string{"IMCLOUD_MAX_PUSH_COST": "-1"}[k] }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, int64(-1), cfg.MaxPushCost, "negative: no bound")
}
