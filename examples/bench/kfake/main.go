// Command kfake runs a one-broker Kafka-protocol cluster in memory
// (github.com/twmb/franz-go/pkg/kfake) on a loopback port, so that
// `make bench` can run the clustered scenario without a JVM. It is a
// benchmark fixture, not a Kafka: no persistence unless -data-dir, no
// replication.
//
//	go run ./examples/bench/kfake -addr 127.0.0.1:19092 -topic imcloud-push
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19092", "listen address (loopback only)")
	topic := flag.String("topic", "imcloud-push", "topic to create")
	partitions := flag.Int("partitions", 4, "partitions of the topic")
	dataDir := flag.String("data-dir", "", "persist to this directory (default: memory only)")
	flag.Parse()
	host, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		fail(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		fail(fmt.Errorf("-addr %s: only a loopback address", *addr))
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fail(err)
	}
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions), kfake.SeedTopics(int32(*partitions), *topic)}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "kfake: listening on %v, topic %s (%d partitions)\n", c.ListenAddrs(), *topic, *partitions)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kfake:", err)
	os.Exit(2)
}
