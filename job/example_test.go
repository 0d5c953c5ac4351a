package job_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/logic"
)

// The whole system in one process, as a library: a gateway, a job
// delivering straight into it, and a Pusher, over the in-memory router
// and queue.
func Example_oneProcess() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
	defer queue.Close()

	gateway, err := cloud.New(cloud.Config{Store: router, Authenticator: cloud.DevAuthenticator()})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go gateway.ServeTCP(ln)
	defer gateway.Shutdown(context.Background())

	j, err := job.New(job.Config{
		Source:    queue,
		Directory: router,
		// In one process the gateway itself is the link.
		Connect: func(context.Context, imcloud.Node) (job.Link, error) { return gateway, nil },
	})
	if err != nil {
		panic(err)
	}
	go j.Run(ctx)
	defer j.Shutdown(context.Background())

	pusher, err := logic.New(logic.Config{Router: router, Queue: queue})
	if err != nil {
		panic(err)
	}
	defer pusher.Shutdown(context.Background())

	c, err := client.Dial(ctx, client.Config{Addr: ln.Addr().String(), Mid: 42, Room: "live://1000", Accepts: []int32{1000}})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	if _, err := pusher.PushRoom(ctx, 1000, "live://1000", []byte("hello, room")); err != nil {
		panic(err)
	}
	m := <-c.Messages()
	fmt.Println(m.Op, string(m.Body))
	// Output: 1000 hello, room
}
