package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler(Config{WebSocket: "ws://:4000/sub"}))
	t.Cleanup(srv.Close)

	module, err := os.ReadFile("imcloud.js")
	require.NoError(t, err)
	codec, err := os.ReadFile("codec.js")
	require.NoError(t, err)
	recovery, err := os.ReadFile("recovery.js")
	require.NoError(t, err)
	rooms, err := os.ReadFile("rooms.js")
	require.NoError(t, err)
	token, err := os.ReadFile("token.js")
	require.NoError(t, err)
	reconnect, err := os.ReadFile("reconnect.js")
	require.NoError(t, err)

	tests := []struct {
		method, path string
		status       int
		contentType  string
		contains     string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"GET", "/index.html", 200, "text/html; charset=utf-8", "imcloud"},
		{"GET", "/imcloud.js", 200, "text/javascript; charset=utf-8", string(module)},
		{"GET", "/codec.js", 200, "text/javascript; charset=utf-8", string(codec)},
		{"GET", "/recovery.js", 200, "text/javascript; charset=utf-8", string(recovery)},
		{"GET", "/rooms.js", 200, "text/javascript; charset=utf-8", string(rooms)},
		{"GET", "/token.js", 200, "text/javascript; charset=utf-8", string(token)},
		{"GET", "/reconnect.js", 200, "text/javascript; charset=utf-8", string(reconnect)},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8", `from "./imcloud.js"`},
		{"GET", "/style.css", 200, "text/css; charset=utf-8", ":root"},
		{"HEAD", "/imcloud.js", 200, "text/javascript; charset=utf-8", ""},
		{"GET", "/config.json", 200, "application/json", `{"ws":"ws://:4000/sub"}`},
		{"GET", "/nope.js", 404, "", ""},
		{"GET", "/static/index.html", 404, "", ""},
		{"GET", "/../web.go", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.contentType != "" {
				assert.Equal(t, tc.contentType, resp.Header.Get("Content-Type"))
				assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			}
			assert.Contains(t, string(body), tc.contains)
		})
	}
}

func TestHandlerWithoutConfig(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler(Config{}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/config.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{}`, string(body), "the page falls back to its default address")
}

// TestPackageVersion: the npm package is released with the Go module, under
// the same version.
func TestPackageVersion(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("package.json")
	require.NoError(t, err)
	var pkg struct {
		Version string `json:"version"`
	}
	require.NoError(t, json.Unmarshal(b, &pkg))
	assert.Equal(t, imcloud.Version, pkg.Version, "examples/web/package.json's version")
}
