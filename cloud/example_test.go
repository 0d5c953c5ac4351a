package cloud_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
)

// A gateway with token auth on a TCP listener and a WebSocket endpoint
// mounted in the application's own mux; a message delivered to a room
// reaches the client in it.
func Example() {
	secret := []byte("a shared HS256 secret")
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.NewTokenAuthenticator(secret)})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.ServeTCP(tcp)
	mux := http.NewServeMux()
	mux.Handle("/sub", srv) // WebSocket clients, goim's path
	web, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(web, mux)

	token, _ := cloud.NewToken(secret, 42, time.Hour, "live://*") // may enter every live:// room
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Network: "ws", Addr: "ws://" + web.Addr().String() + "/sub",
		Token: token, Room: "live://1000"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println("authenticated as", c.Auth().Mid)

	err = srv.Deliver(ctx, []*imcloud.Message{{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom,
		Op: 1000, Room: "live://1000", Body: []byte("hello")}})
	if err != nil {
		panic(err)
	}
	m := <-c.Messages()
	fmt.Println(m.Op, string(m.Body))
	// Output:
	// authenticated as 42
	// 1000 hello
}
