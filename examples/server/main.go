// Command server is imcloud's reference server. With no flags it is the
// whole system in one process on in-memory backends (TCP clients on :3101,
// WebSocket on :3102/sub, the push API and demo page on 127.0.0.1:3111); with Redis
// and Kafka addresses and a -role it is one node of a cluster. Every flag
// has an environment variable: -redis-addr is IMCLOUD_REDIS_ADDR.
//
//	go run ./examples/server
//	go run ./examples/server -h
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/imcloud/imcloud/examples/server/node"
)

// drainTimeout bounds graceful shutdown: draining clients and flushing the
// queue.
const drainTimeout = 30 * time.Second

func main() {
	cfg, err := node.Parse(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(2)
	}
	log := cfg.Logger(os.Stderr)

	app, err := node.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	runErr := app.Run(ctx)
	if runErr != nil {
		log.Error("stopped", "err", runErr)
	}
	log.Info("shutting down: draining clients and flushing the queue", "timeout", drainTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := app.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
	if runErr != nil {
		os.Exit(1)
	}
	log.Info("stopped cleanly")
}
