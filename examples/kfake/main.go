// Command kfake runs a Kafka-protocol broker in one process (franz-go's
// kfake), for trying a cluster of imcloud processes on one machine without
// installing Kafka. It is a development tool: use a real Kafka in
// production. It creates the push topic and the topics of the
// application's connection events and upstream messages, "<topic>.events"
// and "<topic>.upstream" (examples/server's -events).
//
//	go run ./examples/kfake -addr 127.0.0.1:9092 -topic imcloud-push
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
	addr := flag.String("addr", "127.0.0.1:9092", "listen address (loopback by default)")
	topic := flag.String("topic", "imcloud-push", "push topic to create, with <topic>.events and <topic>.upstream")
	partitions := flag.Int("partitions", 4, "partitions of the topic")
	dir := flag.String("data-dir", "", "keep records and offsets in this directory across restarts (default: in memory)")
	flag.Parse()

	host, portStr, err := net.SplitHostPort(*addr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || (host != "127.0.0.1" && host != "localhost") {
		fmt.Fprintln(os.Stderr, "kfake: -addr must be 127.0.0.1:<port> (kfake listens on loopback only)")
		os.Exit(2)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
		kfake.SeedTopics(int32(*partitions), *topic, *topic+".events", *topic+".upstream"),
	}
	if *dir != "" {
		opts = append(opts, kfake.DataDir(*dir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	fmt.Printf("kfake: Kafka-protocol broker on %v, topics %[2]s, %[2]s.events and %[2]s.upstream (%d partitions)\n", c.ListenAddrs(), *topic, *partitions)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}
