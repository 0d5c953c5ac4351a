package testenv

import (
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is a Kafka-protocol broker (kfake) running in the test's process on
// loopback, with its data in a temporary directory so that it can be
// stopped and started again without losing records or committed offsets
// (StartKafka), or in memory only (StartKafkaInMemory).
type Kafka struct {
	// Brokers are the broker addresses, host:port on 127.0.0.1.
	Brokers []string

	t       testing.TB
	port    int
	mu      sync.Mutex
	cluster *kfake.Cluster
	opts    []kfake.Opt
}

// DefaultPartitions is the partition count of topics the harness creates.
const DefaultPartitions = 4

// StartKafka starts a one-broker cluster on a free loopback port, with the
// given topics created (DefaultPartitions partitions each) and automatic
// topic creation allowed. It is closed when the test ends.
func StartKafka(t testing.TB, topics ...string) *Kafka {
	t.Helper()
	dir := t.TempDir()
	return startKafka(t, []kfake.Opt{kfake.DataDir(dir)}, topics)
}

// StartKafkaInMemory is StartKafka without the data directory: records
// live in memory only, so Stop loses them, and the broker writes no file
// per produce request (CPU a push benchmark's process would otherwise
// spend on the broker's files; a real broker runs elsewhere and writes to
// its page cache). For benchmarks.
func StartKafkaInMemory(t testing.TB, topics ...string) *Kafka {
	t.Helper()
	return startKafka(t, nil, topics)
}

func startKafka(t testing.TB, extra []kfake.Opt, topics []string) *Kafka {
	t.Helper()
	k := &Kafka{t: t}
	k.opts = append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(DefaultPartitions),
	}, extra...)
	if len(topics) > 0 {
		k.opts = append(k.opts, kfake.SeedTopics(DefaultPartitions, topics...))
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		k.port = FreePort(t)
		if err = k.start(); err == nil {
			t.Cleanup(k.Stop)
			return k
		}
	}
	t.Fatalf("testenv: kfake did not start: %v", err)
	return nil
}

func (k *Kafka) start() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		return nil
	}
	c, err := kfake.NewCluster(append(k.opts, kfake.Ports(k.port))...)
	if err != nil {
		return err
	}
	k.cluster = c
	k.Brokers = c.ListenAddrs()
	return nil
}

// Stop closes the broker; clients see connections refused until Start.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cluster != nil {
		k.cluster.Close()
		k.cluster = nil
	}
}

// Start brings the broker back on the same port with the data it had.
func (k *Kafka) Start() {
	k.t.Helper()
	if err := k.start(); err != nil {
		k.t.Fatalf("testenv: restart kfake: %v", err)
	}
}

// Cluster is the running kfake cluster, for tests that inject faults
// through its control API. Nil while stopped.
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cluster
}
