package logic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type kickData struct {
	ID          string `json:"id"`
	Connections int    `json:"connections"`
	Nodes       int    `json:"nodes"`
}

func TestHTTPKick(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{APIKey: "s3cret"})
	u := srv.URL + "/goim/kick"
	key := []string{"X-Api-Key", "s3cret"}
	cases := []struct {
		name, query string
		want        kickData
		reason      string
		revoked     []int64
	}{
		{"mids", "?mids=1,2&reason=banned+for+spam", kickData{Connections: 3, Nodes: 2}, "banned for spam", nil},
		{"mids repeated", "?mids=1&mids=404", kickData{Connections: 2, Nodes: 2}, "", nil},
		{"keys", "?keys=k1,k3&keys=gone", kickData{Connections: 2, Nodes: 1}, "", nil},
		{"revoke", "?mids=2&revoke=1", kickData{Connections: 1, Nodes: 1}, "", []int64{2}},
		{"revoke=false", "?mids=1&revoke=false", kickData{Connections: 2, Nodes: 2}, "", nil},
		{"offline", "?mids=404&revoke=true", kickData{}, "", []int64{404}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, r := call(t, http.MethodPost, u+tc.query, "", "", key...)
			require.Equal(t, http.StatusOK, status, r.Message)
			assert.Equal(t, 0, r.Code)
			var got kickData
			require.NoError(t, json.Unmarshal(r.Data, &got))
			assert.Len(t, got.ID, 32)
			id := got.ID
			got.ID = ""
			assert.Equal(t, tc.want, got)
			msgs := e.kicks(t)
			assert.Len(t, msgs, tc.want.Nodes)
			for _, m := range msgs {
				assert.Equal(t, id, m.ID.String())
				assert.Equal(t, tc.reason, m.Reason)
			}
			revoked, err := e.router.RevokedBefore(context.Background(), []int64{1, 2, 404})
			require.NoError(t, err)
			assert.NotContains(t, revoked, int64(1), "mid 1 is never kicked with revoke")
			for _, mid := range tc.revoked {
				assert.Contains(t, revoked, mid)
			}
		})
	}
}

// TestHTTPKickBadInput: every bad request is a clear 4xx (or 501 or 503)
// with nothing kicked and nothing revoked.
func TestHTTPKickBadInput(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{APIKey: "s3cret"})
	u := srv.URL + "/goim/kick"
	key := []string{"X-Api-Key", "s3cret"}
	var many strings.Builder
	for i := 1; i <= logic.MaxKickTargets+1; i++ {
		fmt.Fprintf(&many, "%d,", i)
	}
	cases := []struct {
		name, method, query string
		hdr                 []string
		status              int
		msg                 string
	}{
		{"nothing named", "POST", "", key, 400, "name mids or keys"},
		{"empty lists", "POST", "?mids=&keys=,", key, 400, "name mids or keys"},
		{"both", "POST", "?mids=1&keys=k1", key, 400, "name mids or keys"},
		{"mid not a number", "POST", "?mids=1,x", key, 400, "mids: not a list of integers"},
		{"mid 0", "POST", "?mids=1,0&revoke=1", key, 400, "mid 0 is not above 0"},
		{"negative mid", "POST", "?mids=-2", key, 400, "mid -2 is not above 0"},
		{"key too long", "POST", "?keys=" + strings.Repeat("k", 300), key, 400, "longer than 256 bytes"},
		{"key with a control character", "POST", "?keys=k1%00", key, 400, "not printable"},
		{"too many mids", "POST", "?revoke=1&mids=" + many.String(), key, 400, "at most 10000"},
		{"reason too long", "POST", "?mids=1&reason=" + strings.Repeat("r", logic.MaxKickReason+1), key, 400, "at most 128"},
		{"reason with a newline", "POST", "?mids=1&reason=a%0Ab", key, 400, "control characters"},
		{"revoke by keys", "POST", "?keys=k1&revoke=1", key, 400, "kick by mids"},
		{"revoke not a boolean", "POST", "?mids=1&revoke=maybe", key, 400, "revoke \"maybe\""},
		{"no API key", "POST", "?mids=1", nil, 401, "API key"},
		{"wrong API key", "POST", "?mids=1", []string{"X-Api-Key", "nope"}, 401, "API key"},
		{"GET", "GET", "?mids=1", key, 405, "method not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, r := call(t, tc.method, u+tc.query, "", "", tc.hdr...)
			assert.Equal(t, tc.status, status, r.Message)
			assert.Equal(t, -tc.status, r.Code)
			assert.Contains(t, r.Message, tc.msg)
			assert.Zero(t, e.queue.Len(), "nothing kicked")
			revoked, err := e.router.RevokedBefore(context.Background(), []int64{1, 2})
			require.NoError(t, err)
			assert.Empty(t, revoked, "nothing revoked")
		})
	}
}

// TestHTTPKickRevokeUnsupported: a revoke on a router without
// revocations is 501, nothing kicked; a plain kick still works.
func TestHTTPKickRevokeUnsupported(t *testing.T) {
	e := newEnv(t, logic.Config{})
	p, err := logic.New(logic.Config{Router: routerOnly{e.router}, Queue: e.queue})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	srv := httptest.NewServer(logic.NewHandler(p, logic.HandlerConfig{}))
	t.Cleanup(srv.Close)
	status, r := call(t, http.MethodPost, srv.URL+"/goim/kick?mids=1&revoke=1", "", "")
	assert.Equal(t, http.StatusNotImplemented, status)
	assert.Equal(t, -501, r.Code)
	assert.Contains(t, r.Message, "revocations")
	assert.Zero(t, e.queue.Len())
	status, _ = call(t, http.MethodPost, srv.URL+"/goim/kick?mids=1", "", "")
	assert.Equal(t, http.StatusOK, status)
}

// TestHTTPKickRouterRebuilding: while the router rebuilds a kick answers
// 503 with Retry-After, as the pushes do, and publishes nothing.
func TestHTTPKickRouterRebuilding(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	e.router.Wipe()
	for _, q := range []string{"?mids=1", "?keys=k1"} {
		resp, err := http.Post(srv.URL+"/goim/kick"+q, "text/plain", nil)
		require.NoError(t, err)
		var r apiReply
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, q)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Contains(t, r.Message, "rebuilding")
	}
	assert.Zero(t, e.queue.Len())
}
