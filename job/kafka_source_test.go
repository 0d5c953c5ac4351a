package job

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// saramaPublisher is a small Kafka producer standing in for logic's queue
// in these tests: one record per message, keyed by node or room.
type saramaPublisher struct {
	topic string
	p     sarama.SyncProducer
}

func newSaramaPublisher(t testing.TB, brokers []string, topic string) *saramaPublisher {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Producer.Return.Successes = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewHashPartitioner
	p, err := sarama.NewSyncProducer(brokers, sc)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return &saramaPublisher{topic: topic, p: p}
}

func (s *saramaPublisher) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	batch := make([]*sarama.ProducerMessage, 0, len(msgs))
	for _, m := range msgs {
		b, _ := m.MarshalBinary()
		pm := &sarama.ProducerMessage{Topic: s.topic, Value: sarama.ByteEncoder(b)}
		pm.Key = sarama.StringEncoder(logic.PartitionKey(m))
		batch = append(batch, pm)
	}
	return s.p.SendMessages(batch)
}

func (s *saramaPublisher) publishRaw(t testing.TB, key string, value []byte) {
	t.Helper()
	_, _, err := s.p.SendMessage(&sarama.ProducerMessage{Topic: s.topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(value)})
	require.NoError(t, err)
}

var topicSeq atomic.Int64

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), topicSeq.Add(1))
}

func openKafkaSource(t testing.TB, brokers []string, group, topic string) *kafka.Source {
	t.Helper()
	s, err := kafka.NewSource(kafka.SourceConfig{
		Brokers: brokers, GroupID: group, Topic: topic,
		CommitInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second,
	})
	require.NoError(t, err)
	return s
}

// TestJobKafkaDeadLetterAndRestart runs the job on the Kafka source: a
// record of a newer major version lands on the dead-letter topic, and a
// job stopped mid-stream is followed by one that delivers the rest.
func TestJobKafkaDeadLetterAndRestart(t *testing.T) {
	k := testenv.StartKafka(t)
	topic, dlqTopic, group := uniqueName("q"), uniqueName("dlq"), uniqueName("g")
	pub := newSaramaPublisher(t, k.Brokers, topic)
	a := startTestNode(t, "a", secret)
	dir := newMemDir(a.node())
	dlq, err := kafka.NewDeadLetter(kafka.DeadLetterConfig{Brokers: k.Brokers, Topic: dlqTopic})
	require.NoError(t, err)
	defer dlq.Close()

	ctx := context.Background()
	newer, _ := keysMsg("a", "future").MarshalBinary()
	newer[0] = imcloud.MessageMajor + 1 // a major no reader knows
	pub.publishRaw(t, "a", newer)
	const n = 300
	var msgs []*imcloud.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs, keysMsg("a", fmt.Sprint(i)))
	}
	require.NoError(t, pub.Publish(ctx, msgs))

	src := openKafkaSource(t, k.Brokers, group, topic)
	cfg := fastConfig(src, dir)
	cfg.DeadLetter = dlq.Publish
	j, err := New(cfg)
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- j.Run(ctx) }()
	a.waitCount(t, n/2, 30*time.Second)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	require.NoError(t, j.Shutdown(sctx))
	cancel()
	require.NoError(t, <-runErr)
	require.EqualValues(t, 1, j.Stats().DeadLettered)
	require.NoError(t, src.Close())

	// A second job in the same group resumes after the committed offsets.
	src2 := openKafkaSource(t, k.Brokers, group, topic)
	defer src2.Close()
	startJob(t, fastConfig(src2, dir))
	got := a.waitCount(t, n, 30*time.Second)
	seen := map[string]bool{}
	for _, m := range got {
		seen[string(m.Body)] = true
	}
	for i := 0; i < n; i++ {
		require.True(t, seen[fmt.Sprint(i)], "message %d delivered", i)
	}

	// The dead-letter topic holds the record, byte for byte.
	dl := openKafkaSource(t, k.Brokers, uniqueName("dlq-reader"), dlqTopic)
	defer dl.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	rec, err := dl.Receive(rctx)
	require.NoError(t, err)
	require.Equal(t, newer, rec.Value)
}
