package logic_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// largeGate is a Queue that holds every message whose body is over 1 KiB
// (a large push) until release is closed and hands the others to a memory
// queue at once.
func largeGate(mem *logic.MemoryQueue, started chan<- struct{}, release <-chan struct{}) funcQueue {
	return funcQueue{func(ctx context.Context, msgs []*imcloud.Message) error {
		if len(msgs[0].Body) <= 1024 {
			return mem.Publish(ctx, msgs)
		}
		started <- struct{}{}
		select {
		case <-release:
			return mem.Publish(ctx, msgs)
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
}

// TestLargePushesOverBudgetAre503 is a burst of large pushes over the cost
// budget: the ones past it are answered 503 with Retry-After at once,
// while the admitted ones still hold the budget (their queue is held),
// and small pushes keep going through meanwhile.
func TestLargePushesOverBudgetAre503(t *testing.T) {
	started := make(chan struct{}, 100)
	release := make(chan struct{})
	mem := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	t.Cleanup(func() { _ = mem.Close() })
	// A 400 KiB body to one user costs 401: two fit in 1000.
	e, srv := newAPI(t, logic.Config{Queue: largeGate(mem, started, release), MaxPushCost: 1000}, logic.HandlerConfig{})
	big := strings.Repeat("x", 400<<10)
	push := func(body string) (*http.Response, apiReply) {
		resp, err := http.Post(srv.URL+"/goim/push/mids?operation=1000&mids=2", "text/plain", strings.NewReader(body))
		require.NoError(t, err)
		defer resp.Body.Close()
		var r apiReply
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
		return resp, r
	}

	var wg sync.WaitGroup
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }); wg.Wait() }
	defer unblock()
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, r := push(big)
			assert.Equal(t, http.StatusOK, resp.StatusCode, r.Message)
		}()
	}
	<-started
	<-started // both admitted pushes hold their cost, blocked in the queue

	for i := 0; i < 5; i++ {
		resp, r := push(big)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "a large push past the budget is refused at once, not queued")
		assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		assert.Contains(t, r.Message, "overloaded")
	}
	for i := 0; i < 20; i++ {
		resp, r := push("small")
		require.Equal(t, http.StatusOK, resp.StatusCode, "small pushes keep moving: %s", r.Message)
	}
	st := e.p.Stats()
	assert.Equal(t, uint64(5), st.OverloadedCost)
	assert.Equal(t, uint64(5), st.Overloaded)
	assert.Zero(t, st.OverloadedSmallCost)
	assert.Equal(t, int64(802), st.Cost, "the two admitted pushes")

	unblock()
	resp, r := push(big)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the budget is back once the large pushes end: %s", r.Message)
	assert.Zero(t, e.p.Stats().Cost)
}

// TestSmallPushesHaveTheirOwnBudget: small pushes past the small budget
// are refused, and a push costing more than its whole budget still runs
// (alone).
func TestSmallPushesHaveTheirOwnBudget(t *testing.T) {
	started := make(chan struct{}, 100)
	release := make(chan struct{})
	var wg sync.WaitGroup
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }); wg.Wait() }
	e := newEnv(t, logic.Config{Queue: blockingQueue(started, release), SmallPushCost: 10, MaxSmallPushCost: 3, MaxPushCost: 50})
	defer unblock()
	ctx := context.Background()
	for i := 0; i < 3; i++ { // three room pushes of cost 1 fill the small budget
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = e.p.PushRoom(ctx, 1000, "live://1", nil) }()
		<-started
	}
	_, err := e.p.PushRoom(ctx, 1000, "live://1", nil)
	require.ErrorIs(t, err, logic.ErrOverloaded)
	assert.Equal(t, uint64(1), e.p.Stats().OverloadedSmallCost)

	// 100 KiB: cost 101, over the whole large budget of 50: admitted as 50.
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = e.p.PushRoom(ctx, 1000, "live://1", make([]byte, 100<<10)) }()
	<-started
	assert.Equal(t, int64(50), e.p.Stats().Cost)
	_, err = e.p.PushRoom(ctx, 1000, "live://1", make([]byte, 20<<10))
	require.ErrorIs(t, err, logic.ErrOverloaded, "the oversized push runs alone")
	unblock()
	st := e.p.Stats()
	assert.Zero(t, st.Cost)
	assert.Zero(t, st.SmallCost)
	assert.Equal(t, uint64(2), st.Overloaded)
}

// TestPushWithID: a push carries WithID's id on every message, and the
// Result reports it; without WithID each push gets a new one.
func TestPushWithID(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	id, err := imcloud.MessageIDForKey("order-42")
	require.NoError(t, err)
	res, err := e.p.PushMids(ctx, 1000, []int64{1}, []byte("x"), logic.WithID(id))
	require.NoError(t, err)
	assert.Equal(t, id, res.ID)
	msgs := e.drain(t)
	require.Len(t, msgs, 2)
	for _, m := range msgs {
		assert.Equal(t, id, m.ID)
	}
	a, err := e.p.PushRoom(ctx, 1000, "live://1", nil)
	require.NoError(t, err)
	b, err := e.p.PushRoom(ctx, 1000, "live://1", nil)
	require.NoError(t, err)
	assert.NotEqual(t, a.ID, b.ID)
	assert.NotEqual(t, id, a.ID)
}

// TestHTTPIdempotencyKey: the key (header, query or JSON field) makes the
// id the answer reports and the messages carry; a bad key is 400.
func TestHTTPIdempotencyKey(t *testing.T) {
	e, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	want, err := imcloud.MessageIDForKey("order-42")
	require.NoError(t, err)
	check := func(name string, status int, r apiReply) {
		t.Helper()
		require.Equal(t, http.StatusOK, status, name)
		var data struct{ ID string }
		require.NoError(t, json.Unmarshal(r.Data, &data))
		assert.Equal(t, want.String(), data.ID, name)
		msgs := e.drain(t)
		require.Len(t, msgs, 1, name)
		assert.Equal(t, want, msgs[0].ID, name)
	}
	u := srv.URL + "/goim/push/room?operation=1000&type=live&room=1"
	status, r := call(t, http.MethodPost, u, "", "x", "Idempotency-Key", "order-42")
	check("header", status, r)
	status, r = call(t, http.MethodPost, u+"&id=order-42", "", "x")
	check("query", status, r)
	status, r = call(t, http.MethodPost, srv.URL+"/goim/push/room", "application/json", `{"operation":1000,"type":"live","room":"1","id":"order-42"}`)
	check("JSON", status, r)
	status, r = call(t, http.MethodPost, u+"&id="+want.String(), "", "x")
	check("the answered id sent back", status, r)

	status, _ = call(t, http.MethodPost, u, "", "x", "Idempotency-Key", strings.Repeat("k", 129))
	assert.Equal(t, http.StatusBadRequest, status)
	status, _ = call(t, http.MethodPost, u+"&id=a%20b", "", "x")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Empty(t, e.drain(t))

	// Early replies report the id too, before the push is published.
	_, early := newAPI(t, logic.Config{}, logic.HandlerConfig{EarlyReply: true})
	status, r = call(t, http.MethodPost, early.URL+"/goim/push/room?operation=1000&type=live&room=1", "", "x", "Idempotency-Key", "order-42")
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"id":"`+want.String()+`"}`, string(r.Data))
}

// TestCostReleasedBeforeTheAnswer: a synchronous push gives its cost back
// before its caller gets the answer, so a caller that saw its push end
// never finds the budget still held by it.
func TestCostReleasedBeforeTheAnswer(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	for i := 0; i < 2000; i++ {
		_, err := e.p.PushMids(ctx, 1000, []int64{1}, []byte("x"))
		require.NoError(t, err)
		st := e.p.Stats()
		require.Zero(t, st.Cost+st.SmallCost, "push %d answered with its cost still held", i)
	}
}
