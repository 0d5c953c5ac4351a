package logic_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHTTPPresence: every asked mid is in data, [] for a user offline;
// each connection with key, node, platform, room and since (RFC 3339,
// absent when unknown).
func TestHTTPPresence(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{APIKey: "s3cret"})
	require.NoError(t, e.router.PutSessions(context.Background(), []imcloud.Session{
		{Mid: 7, Key: "b", Node: "node-b", Gen: 9, Platform: "ios", Room: "live://1", Since: at.Add(time.Second)},
		{Mid: 7, Key: "a", Node: "node-a", Gen: 8, Platform: "web", Since: at},
	}, time.Minute))
	status, r := call(t, "GET", srv.URL+"/goim/presence?mids=7,1&mids=404", "", "", "X-Api-Key", "s3cret")
	require.Equal(t, http.StatusOK, status, r.Message)
	assert.JSONEq(t, `{
		"7":[{"key":"a","node":"node-a","platform":"web","room":"","since":"2023-11-14T22:13:20Z"},
		     {"key":"b","node":"node-b","platform":"ios","room":"live://1","since":"2023-11-14T22:13:21Z"}],
		"1":[{"key":"k1","node":"node-a","platform":"","room":""},{"key":"k2","node":"node-b","platform":"","room":""}],
		"404":[]}`, string(r.Data))

	status, _ = call(t, "GET", srv.URL+"/goim/presence?mids=7", "", "")
	assert.Equal(t, http.StatusUnauthorized, status, "under the API key")
}

// TestHTTPPresenceBadInput: missing, malformed, non-positive or too many
// mids are 400 with a message that says so; the wrong method 405.
func TestHTTPPresenceBadInput(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	u := srv.URL + "/goim/presence"
	many := make([]string, logic.MaxPresenceMids+1)
	for i := range many {
		many[i] = strconv.Itoa(i + 1)
	}
	cases := []struct{ query, msg string }{
		{"", "mids is required"},
		{"?mids=", "mids is required"},
		{"?mids=,", "mids is required"},
		{"?mids=1,x", "mids: not a list of integers"},
		{"?mids=1.5", "mids: not a list of integers"},
		{"?mids=99999999999999999999", "mids: not a list of integers"},
		{"?mids=1,0", "mid 0 is not above 0"},
		{"?mids=-3", "mid -3 is not above 0"},
		{"?mids=" + strings.Join(many, ","), "mids: 10001 users, at most 10000"},
	}
	for _, tc := range cases {
		status, r := call(t, "GET", u+tc.query, "", "")
		assert.Equal(t, http.StatusBadRequest, status, tc.query)
		assert.Equal(t, -400, r.Code)
		assert.Contains(t, r.Message, tc.msg, tc.query)
	}
	status, _ := call(t, "POST", u+"?mids=1", "", "")
	assert.Equal(t, http.StatusMethodNotAllowed, status)
}

// TestHTTPPresenceUnavailable: a Router without presence is 501, one
// rebuilding after it lost its data 503 with Retry-After.
func TestHTTPPresenceUnavailable(t *testing.T) {
	e := newEnv(t, logic.Config{})
	plain := newEnv(t, logic.Config{Router: plainRouter{e.router}})
	srv := httptest.NewServer(logic.NewHandler(plain.p, logic.HandlerConfig{}))
	t.Cleanup(srv.Close)
	status, r := call(t, "GET", srv.URL+"/goim/presence?mids=1", "", "")
	assert.Equal(t, http.StatusNotImplemented, status)
	assert.Equal(t, -501, r.Code)
	assert.Contains(t, r.Message, "presence")

	e2, srv2 := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	e2.router.Wipe()
	resp, err := http.Get(srv2.URL + "/goim/presence?mids=1")
	require.NoError(t, err)
	defer resp.Body.Close()
	var r2 apiReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r2))
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, r2.Message, "rebuilding")
}
