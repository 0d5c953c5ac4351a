package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// TestDefaultModeProcess runs the binary as a new user does, all roles in
// one process on in-memory backends, with only its listen addresses moved
// to free loopback ports (tests never bind public interfaces or fixed
// ports); then a WebSocket and a TCP client receive a push sent through
// the HTTP API.
func TestDefaultModeProcess(t *testing.T) {
	tcp, ws, api := addr(t), addr(t), addr(t)
	p := startProc(t, "server", "-tcp-addr", tcp, "-ws-addr", ws, "-http-addr", api)
	waitReady(t, api)
	// The startup lines are written after the listeners answer: wait for them.
	require.Eventually(t, func() bool { return strings.Contains(p.out.String(), "curl") }, 10*time.Second,
		10*time.Millisecond, "the startup log shows how to push a first message")
	require.Contains(t, p.out.String(), "dev mode", "the zero-config server says it trusts clients")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsc, err := client.Dial(ctx, client.Config{Network: "ws", Addr: ws, Mid: 1, Room: "live://1000", Accepts: []int32{1000}})
	require.NoError(t, err)
	defer wsc.Close()
	tcpc := dialRaw(t, tcp, 2, "live://1000", []int32{1000})

	code, r := push(t, api, "/goim/push/room?operation=1000&type=live&room=1000", "hello")
	require.Equal(t, http.StatusOK, code)
	require.Zero(t, r.Code)
	select {
	case m := <-wsc.Messages():
		require.Equal(t, "hello", string(m.Body))
	case <-ctx.Done():
		t.Fatal("the WebSocket client got no push")
	}
	tcpc.expect(t, 1000, "hello")

	p.stop()
	require.True(t, strings.Contains(p.out.String(), "stopped cleanly"), "graceful shutdown on SIGTERM")
}
