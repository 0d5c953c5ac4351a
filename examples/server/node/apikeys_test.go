package node

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAPIKeyRotation: -api-key takes several keys, comma-separated, all
// valid at once, so a key rotates without downtime; the startup hint
// sends the first one; a list without a key is no key.
func TestAPIKeyRotation(t *testing.T) {
	_, err := Parse([]string{"-http-addr", ":3111", "-api-key", " , "}, noEnv, io.Discard)
	require.ErrorIs(t, err, ErrUsage, "blank keys are no key")

	cfg, err := Parse([]string{"-tcp-addr", "", "-ws-addr", "", "-http-addr", "127.0.0.1:0", "-api-key", "old-key, new-key"}, noEnv, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []string{"old-key", "new-key"}, cfg.APIKeys())
	app, out := runLogged(t, cfg)
	require.Contains(t, out.String(), `-H \"X-Api-Key: ${IMCLOUD_API_KEY%%,*}\"`)
	require.NotContains(t, out.String(), "old-key")

	push := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+app.Addr("http")+"/goim/push/room?operation=1000&type=live&room=1000", strings.NewReader("hello"))
		req.Header.Set("X-Api-Key", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, push("old-key"))
	require.Equal(t, http.StatusOK, push("new-key"))
	require.Equal(t, http.StatusUnauthorized, push("old-key, new-key"))
	require.Equal(t, http.StatusUnauthorized, push(""))
}

// runLogged runs an App of cfg until the test ends, logging to the log it
// returns, and waits for its startup hint (the curl line).
func runLogged(t *testing.T, cfg Config) (*App, *syncLog) {
	t.Helper()
	out := new(syncLog)
	app := runWith(t, cfg, slog.New(slog.NewTextHandler(out, nil)))
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "curl") }, 10*time.Second, 10*time.Millisecond)
	return app, out
}
