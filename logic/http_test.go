package logic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type apiReply struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

func newAPI(t *testing.T, pcfg logic.Config, hcfg logic.HandlerConfig) (*env, *httptest.Server) {
	t.Helper()
	e := newEnv(t, pcfg)
	ctx := context.Background()
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-a", Conns: 10, IPs: 4,
		PublicAddrs: []string{"tcp://a.example:3101", "ws://a.example:3102/sub"}}, time.Minute))
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-b", Conns: 5, IPs: 5,
		PublicAddrs: []string{"tcp://10.0.0.2:3101", "wss://b.example/sub"}}, time.Minute))
	require.NoError(t, e.router.PutRoomCounts(ctx, "node-a", map[string]int32{"live://1": 5, "live://2": 9}, time.Minute))
	require.NoError(t, e.router.PutRoomCounts(ctx, "node-b", map[string]int32{"live://1": 5}, time.Minute))
	srv := httptest.NewServer(logic.NewHandler(e.p, hcfg))
	t.Cleanup(srv.Close)
	return e, srv
}

func call(t *testing.T, method, url, contentType, body string, hdr ...string) (int, apiReply) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r apiReply
	if method != http.MethodHead {
		require.NoError(t, json.Unmarshal(raw, &r), "body %q", raw)
		assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, r
}

func TestHTTPPushRoutes(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	u := srv.URL + "/goim"
	cases := []struct {
		name, path, ctype, body string
		wantData                string
		wantMsgs                int
	}{
		{"keys repeated", "/push/keys?operation=1000&keys=k1&keys=k3", "", "hello", `{"nodes":1,"keys":2,"messages":1}`, 1},
		{"keys comma", "/push/keys?operation=1000&keys=k1,k2", "", "hello", `{"nodes":2,"keys":2,"messages":2}`, 2},
		{"mids", "/push/mids?operation=1000&mids=1", "", "hello", `{"nodes":2,"keys":2,"messages":2,"offline":[]}`, 2},
		{"mids comma and repeated", "/push/mids?operation=1000&mids=1,2&mids=3", "", "hello", `{"nodes":2,"keys":3,"messages":2,"offline":[3]}`, 2},
		{"mids offline", "/push/mids?operation=1000&mids=404", "", "hello", `{"nodes":0,"keys":0,"messages":0,"offline":[404]}`, 0},
		{"escaped names and values", "/push/keys?op%65ration=1%30%30%30&%6beys=k%31", "", "hello", `{"nodes":1,"keys":1,"messages":1}`, 1},
		{"first operation counts", "/push/mids?operation=1000&operation=x&mids=404", "", "hello", `{"nodes":0,"keys":0,"messages":0,"offline":[404]}`, 0},
		{"room with escapes", "/push/room?operation=1000&type=live&room=a+b%2Fc", "", "hello", `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"room", "/push/room?operation=1000&type=live&room=1000", "", "hello", `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"all", "/push/all?operation=1000&speed=10", "", "hello", `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"all no speed", "/push/all?operation=1000", "", "hello", `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"mids JSON", "/push/mids", "application/json", `{"operation":1000,"mids":[1,2],"msg":"hello"}`, `{"nodes":2,"keys":3,"messages":2,"offline":[]}`, 2},
		{"keys JSON", "/push/keys", "application/json; charset=utf-8", `{"operation":1000,"keys":["k2"],"msg":"hello"}`, `{"nodes":1,"keys":1,"messages":1}`, 1},
		{"room JSON", "/push/room", "application/json", `{"operation":1000,"type":"live","room":"7","msg":"hello"}`, `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"all JSON", "/push/all", "application/json", `{"operation":1000,"speed":5,"msg":"hello"}`, `{"nodes":0,"keys":0,"messages":1}`, 1},
		{"escaped comma list", "/push/mids?operation=1000&mid%73=1%2C2", "", "hello", `{"nodes":2,"keys":3,"messages":2,"offline":[]}`, 2},
		{"JSON with query targets", "/push/mids?mids=2", "application/json", `{"operation":1000,"msg":"hello"}`, `{"nodes":1,"keys":1,"messages":1,"offline":[]}`, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, r := call(t, http.MethodPost, u+tc.path, tc.ctype, tc.body)
			require.Equal(t, http.StatusOK, status, r.Message)
			assert.Equal(t, 0, r.Code)
			assert.Equal(t, "", r.Message)
			var data map[string]any
			require.NoError(t, json.Unmarshal(r.Data, &data))
			id, _ := data["id"].(string)
			delete(data, "id")
			got, _ := json.Marshal(data)
			assert.JSONEq(t, tc.wantData, string(got))
			msgs := e.drain(t)
			require.Len(t, msgs, tc.wantMsgs)
			for _, m := range msgs {
				assert.Equal(t, id, m.ID.String(), "the answer's id is the messages' id")
				assert.Equal(t, "hello", string(m.Body))
				assert.Equal(t, int32(1000), m.Op)
			}
		})
	}
}

// TestHTTPPushAnswerHasContentLength: the short push answer is sent with
// a Content-Length (net/http's, as the handler returns), not chunked.
func TestHTTPPushAnswerHasContentLength(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	resp, err := http.Post(srv.URL+"/goim/push/mids?operation=1000&mids=1", "text/plain", strings.NewReader("hello"))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.TransferEncoding, "not chunked")
	assert.Equal(t, int64(len(body)), resp.ContentLength)
}

func TestHTTPJSONMsgObject(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	status, _ := call(t, http.MethodPost, srv.URL+"/goim/push/room", "application/json",
		`{"operation":1000,"type":"live","room":"1","msg":{"text":"hi"}}`)
	require.Equal(t, http.StatusOK, status)
	msgs := e.drain(t)
	require.Len(t, msgs, 1)
	assert.JSONEq(t, `{"text":"hi"}`, string(msgs[0].Body), "a non-string msg is sent as its JSON")
	assert.Equal(t, "live://1", msgs[0].Room)
}

func TestHTTPBadInput(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{MaxBodyBytes: 64})
	u := srv.URL + "/goim"
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
	}{
		{"missing operation", "POST", "/push/mids?mids=1", "", "x", 400},
		{"zero operation", "POST", "/push/mids?operation=0&mids=1", "", "x", 400},
		{"negative operation", "POST", "/push/keys?operation=-5&keys=k1", "", "x", 400},
		{"protocol op 6 (disconnect)", "POST", "/push/room?operation=6&type=live&room=1", "", `{"reason":"x","reconnect_ms":86400000}`, 400},
		{"protocol op 9 (batch)", "POST", "/push/all?operation=9", "", "x", 400},
		{"protocol op 3 (heartbeat reply)", "POST", "/push/mids?operation=3&mids=1", "", "x", 400},
		{"op 999", "POST", "/push/keys?operation=999&keys=k1", "", "x", 400},
		{"non-numeric operation", "POST", "/push/all?operation=abc", "", "x", 400},
		{"operation overflows int32", "POST", "/push/all?operation=4294967296", "", "x", 400},
		{"non-numeric mids", "POST", "/push/mids?operation=1000&mids=1,x", "", "x", 400},
		{"empty mids", "POST", "/push/mids?operation=1000&mids=", "", "x", 400},
		{"missing mids", "POST", "/push/mids?operation=1000", "", "x", 400},
		{"empty keys", "POST", "/push/keys?operation=1000&keys=,", "", "x", 400},
		{"room without type", "POST", "/push/room?operation=1000&room=1", "", "x", 400},
		{"room without room", "POST", "/push/room?operation=1000&type=live", "", "x", 400},
		{"negative speed", "POST", "/push/all?operation=1000&speed=-1", "", "x", 400},
		{"bad JSON", "POST", "/push/mids", "application/json", `{"operation":`, 400},
		{"JSON mids not numbers", "POST", "/push/mids", "application/json", `{"operation":1,"mids":["a"]}`, 400},
		{"oversized body", "POST", "/push/mids?operation=1000&mids=1", "", strings.Repeat("x", 65), 413},
		{"wrong method push", "GET", "/push/mids?operation=1000&mids=1", "", "", 405},
		{"wrong method online", "POST", "/online/total", "", "", 405},
		{"unknown route", "GET", "/push/nothing", "", "", 404},
		{"outside prefix", "GET", "/../other", "", "", 404},
		{"top without type", "GET", "/online/top?limit=3", "", "", 400},
		{"top bad limit", "GET", "/online/top?type=live&limit=x", "", "", 400},
		{"top zero limit", "GET", "/online/top?type=live&limit=0", "", "", 400},
		{"room counts without rooms", "GET", "/online/room?type=live", "", "", 400},
		{"room counts without type", "GET", "/online/room?rooms=1", "", "", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, r := call(t, tc.method, u+tc.path, tc.ctype, tc.body)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, -tc.status, r.Code)
			assert.NotEmpty(t, r.Message)
		})
	}
	assert.Zero(t, e.queue.Len(), "no bad request published anything")
}

func TestHTTPOversizedChunkedBody(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{MaxBodyBytes: 16})
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/goim/push/all?operation=1000",
		io.MultiReader(strings.NewReader(strings.Repeat("y", 64))))
	require.NoError(t, err)
	req.ContentLength = -1 // chunked: the limit is enforced while reading
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

func TestHTTPOnlineAndNodes(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{Client: imcloud.ClientSettings{Domain: "conn.example", TCPPort: 4101, Heartbeat: time.Minute}})
	u := srv.URL + "/goim"

	status, r := call(t, "GET", u+"/online/top?type=live&limit=5", "", "")
	require.Equal(t, 200, status)
	assert.JSONEq(t, `[{"room_id":"1","count":10},{"room_id":"2","count":9}]`, string(r.Data))

	status, r = call(t, "GET", u+"/online/top?type=chat&limit=5", "", "")
	require.Equal(t, 200, status)
	assert.JSONEq(t, `[]`, string(r.Data))

	status, r = call(t, "GET", u+"/online/room?type=live&rooms=1,2&rooms=3", "", "")
	require.Equal(t, 200, status)
	assert.JSONEq(t, `{"1":10,"2":9,"3":0}`, string(r.Data))

	status, r = call(t, "GET", u+"/online/total", "", "")
	require.Equal(t, 200, status)
	assert.JSONEq(t, `{"ip_count":9,"conn_count":15}`, string(r.Data))

	status, r = call(t, "GET", u+"/nodes/weighted", "", "")
	require.Equal(t, 200, status)
	assert.JSONEq(t, `{"domain":"conn.example","tcp_port":4101,"ws_port":3102,"wss_port":0,
		"heartbeat":60,"heartbeat_max":2,
		"backoff":{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":1.3},
		"nodes":["10.0.0.2","a.example"]}`, string(r.Data), "least loaded node first, tcp hosts")

	status, r = call(t, "GET", u+"/nodes/weighted?platform=web", "", "")
	require.Equal(t, 200, status)
	var w struct{ Nodes []string }
	require.NoError(t, json.Unmarshal(r.Data, &w))
	assert.Equal(t, []string{"b.example", "a.example"}, w.Nodes)

	status, r = call(t, "GET", u+"/nodes/instances", "", "")
	require.Equal(t, 200, status)
	var inst []struct {
		ID    string   `json:"id"`
		Addrs []string `json:"addrs"`
		Conns int      `json:"conn_count"`
	}
	require.NoError(t, json.Unmarshal(r.Data, &inst))
	require.Len(t, inst, 2)
	assert.Equal(t, "node-a", inst[0].ID)
	assert.Equal(t, 10, inst[0].Conns)

	status, _ = call(t, "HEAD", u+"/online/total", "", "")
	assert.Equal(t, 200, status)
}

func TestHTTPNodesWeightedFallsBackToDomain(t *testing.T) {
	e := newEnv(t, logic.Config{})
	srv := httptest.NewServer(logic.NewHandler(e.p, logic.HandlerConfig{Client: imcloud.ClientSettings{Domain: "conn.example"}}))
	defer srv.Close()
	status, r := call(t, "GET", srv.URL+"/goim/nodes/weighted", "", "")
	require.Equal(t, 200, status)
	var w struct{ Nodes []string }
	require.NoError(t, json.Unmarshal(r.Data, &w))
	assert.Equal(t, []string{"conn.example"}, w.Nodes)
}

func TestHTTPAPIKey(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{APIKey: "s3cret"})
	u := srv.URL + "/goim/push/mids?operation=1000&mids=1"
	status, r := call(t, "POST", u, "", "x")
	assert.Equal(t, 401, status)
	assert.Equal(t, -401, r.Code)
	status, _ = call(t, "POST", u, "", "x", "X-Api-Key", "wrong")
	assert.Equal(t, 401, status)
	status, _ = call(t, "POST", u, "", "x", "Authorization", "Bearer wrong")
	assert.Equal(t, 401, status)
	assert.Zero(t, e.queue.Len())

	status, _ = call(t, "POST", u, "", "x", "X-Api-Key", "s3cret")
	assert.Equal(t, 200, status)
	status, _ = call(t, "POST", u, "", "x", "Authorization", "Bearer s3cret")
	assert.Equal(t, 200, status)
	for _, path := range []string{"/goim/online/total", "/goim/online/top?type=live&limit=3",
		"/goim/online/room?type=live&rooms=1", "/goim/nodes/instances"} {
		status, _ = call(t, "GET", srv.URL+path, "", "")
		assert.Equal(t, 401, status, "%s reveals the application's state: it needs the key", path)
		status, _ = call(t, "GET", srv.URL+path, "", "", "X-Api-Key", "s3cret")
		assert.Equal(t, 200, status, path)
	}
	status, _ = call(t, "GET", srv.URL+"/goim/nodes/weighted", "", "")
	assert.Equal(t, 200, status, "the clients' bootstrap needs no key")
}

func TestHTTPPrefix(t *testing.T) {
	e := newEnv(t, logic.Config{})
	srv := httptest.NewServer(logic.NewHandler(e.p, logic.HandlerConfig{Prefix: "/api/im/"}))
	defer srv.Close()
	status, _ := call(t, "POST", srv.URL+"/api/im/push/mids?operation=1000&mids=1", "", "x")
	assert.Equal(t, 200, status)
	status, _ = call(t, "POST", srv.URL+"/goim/push/mids?operation=1000&mids=1", "", "x")
	assert.Equal(t, 404, status)
}

func TestHTTPEarlyReply(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	e, srv := newAPI(t, logic.Config{Queue: blockingQueue(started, release)}, logic.HandlerConfig{EarlyReply: true})
	status, r := call(t, "POST", srv.URL+"/goim/push/room?operation=1000&type=live&room=1", "", "x")
	require.Equal(t, 200, status, "answered while the queue still holds the publish")
	assert.Equal(t, "accepted", r.Message)
	<-started
	close(release)
	require.NoError(t, e.p.Close())
	assert.Equal(t, uint64(1), e.p.Stats().Pushes)
}

func TestHTTPEarlyReplyOverloaded(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	defer close(release)
	_, srv := newAPI(t, logic.Config{Queue: blockingQueue(started, release), PoolSize: 1, MaxBlockingTasks: -1},
		logic.HandlerConfig{EarlyReply: true})
	status, _ := call(t, "POST", srv.URL+"/goim/push/all?operation=1000", "", "")
	require.Equal(t, 200, status)
	<-started // the one worker is busy
	status, r := call(t, "POST", srv.URL+"/goim/push/all?operation=1000", "", "")
	assert.Equal(t, 503, status, "early reply still refuses what the pool cannot take")
	assert.Equal(t, -503, r.Code)
}

func TestHTTPServerErrors(t *testing.T) {
	failing := funcQueue{func(context.Context, []*imcloud.Message) error { return errBackend }}
	_, srv := newAPI(t, logic.Config{Queue: failing}, logic.HandlerConfig{})
	status, r := call(t, "POST", srv.URL+"/goim/push/mids?operation=1000&mids=1", "", "x")
	assert.Equal(t, 500, status)
	assert.Equal(t, -500, r.Code)
	assert.Contains(t, r.Message, "backend down")
}

func TestHTTPOverloadIs503(t *testing.T) {
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	defer close(release)
	_, srv := newAPI(t, logic.Config{Queue: blockingQueue(started, release), PoolSize: 1, MaxBlockingTasks: -1}, logic.HandlerConfig{})
	go func() { _, _ = http.Post(srv.URL+"/goim/push/all?operation=1000", "", nil) }()
	<-started
	status, r := call(t, "POST", srv.URL+"/goim/push/all?operation=1000", "", "")
	assert.Equal(t, 503, status)
	assert.Equal(t, -503, r.Code)
	assert.Contains(t, r.Message, "overloaded")
}

// TestHTTPPushKeepsRequestValues: the request context's values (a trace
// id a middleware set) reach the Queue, whether the answer waits for it or
// not.
func TestHTTPPushKeepsRequestValues(t *testing.T) {
	for _, early := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "early reply"}[early], func(t *testing.T) {
			got := make(chan any, 1)
			q := funcQueue{func(ctx context.Context, _ []*imcloud.Message) error {
				got <- ctx.Value(traceKey{})
				return nil
			}}
			e := newEnv(t, logic.Config{Queue: q})
			api := logic.NewHandler(e.p, logic.HandlerConfig{EarlyReply: early})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), traceKey{}, "req-1")))
			}))
			defer srv.Close()
			status, _ := call(t, "POST", srv.URL+"/goim/push/room?operation=1000&type=live&room=1", "", "x")
			require.Equal(t, 200, status)
			assert.Equal(t, "req-1", <-got)
		})
	}
}

// TestHTTPDeclaredBodyNotAllocatedUpFront: clients that declare a large
// body and send one byte do not make the server hold the declared size.
func TestHTTPDeclaredBodyNotAllocatedUpFront(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{MaxBodyBytes: 1 << 20})
	const conns = 40
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = fmt.Fprintf(c, "POST /goim/push/mids?operation=1000&mids=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nx", 1<<20)
		require.NoError(t, err)
	}
	time.Sleep(300 * time.Millisecond) // the handlers are reading the bodies now
	grown := int64(heap()) - int64(before)
	require.Less(t, grown, int64(conns<<20)/4, "%d connections declaring 1 MiB grew the heap by %d bytes", conns, grown)
}
