package logic_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// A Pusher over the embedded memory backends. A cloud node would put its
// sessions into the router; here one user is put online by hand.
func ExampleNew() {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	p, err := logic.New(logic.Config{Router: router, Queue: queue})
	if err != nil {
		panic(err)
	}
	defer p.Shutdown(context.Background())

	ctx := context.Background()
	_ = router.PutSessions(ctx, []imcloud.Session{{Mid: 42, Key: "conn-1", Node: "node-a", Gen: 1}}, time.Minute)

	res, err := p.PushMids(ctx, 1000, []int64{42, 43}, []byte("hello"), logic.WithExpiry(time.Minute))
	fmt.Println(res.Nodes, res.Keys, err)
	// Output: 1 1 <nil>
}

// The goim-compatible REST API, mounted under its default prefix.
func ExampleNewHandler() {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	p, _ := logic.New(logic.Config{Router: router, Queue: queue})
	defer p.Close()
	srv := httptest.NewServer(logic.NewHandler(p, logic.HandlerConfig{}))
	defer srv.Close()

	// An idempotency key makes the push's id, so a retry is dropped by the
	// nodes that already have it; without one the answer's id is new.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/goim/push/room?operation=1000&type=live&room=1000", nil)
	req.Header.Set("Idempotency-Key", "order-42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 {"code":0,"message":"","data":{"id":"cf9d2761f670f3293477906329afeb94","nodes":0,"keys":0,"messages":1}}
}

// Push to each kind of Target: the named methods (PushMids, PushRoom, ...)
// are this call with the target spelled out.
func ExamplePusher_Push() {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	p, _ := logic.New(logic.Config{Router: router, Queue: queue})
	defer p.Close()
	ctx := context.Background()
	_ = router.PutSessions(ctx, []imcloud.Session{{Mid: 42, Key: "conn-1", Node: "node-a", Gen: 1}}, time.Minute)

	for _, t := range []logic.Target{logic.ToKeys("conn-1"), logic.ToMids(42), logic.ToRoom("live://1000"), logic.ToAll()} {
		res, err := p.Push(ctx, t, 1000, []byte("hello"), logic.WithExpiry(time.Minute))
		fmt.Println(t.Kind, res.Keys, res.Messages, err)
	}
	_, err := p.Push(ctx, logic.ToRoom("1000"), 1000, nil)
	fmt.Println(errors.Is(err, logic.ErrInvalidArgument))
	// Output:
	// keys 1 1 <nil>
	// mids 1 1 <nil>
	// room 0 1 <nil>
	// all 0 1 <nil>
	// true
}
