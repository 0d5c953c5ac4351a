package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/stretchr/testify/require"
)

func openSource(t testing.TB, brokers []string, group, topic string) *kafka.Source {
	t.Helper()
	s, err := kafka.NewSource(kafka.SourceConfig{Brokers: brokers, GroupID: group, Topic: topic, CommitInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	return s
}

func TestNewSourceChecksConfig(t *testing.T) {
	for _, cfg := range []kafka.SourceConfig{
		{GroupID: "g", Topic: "t"},
		{Brokers: []string{"127.0.0.1:1"}, Topic: "t"},
		{Brokers: []string{"127.0.0.1:1"}, GroupID: "g"},
	} {
		_, err := kafka.NewSource(cfg)
		require.ErrorIs(t, err, kafka.ErrConfig)
	}
	_, err := kafka.NewDeadLetter(kafka.DeadLetterConfig{Brokers: []string{"x:1"}})
	require.ErrorIs(t, err, kafka.ErrConfig)
}

func TestSourceCommitOfUnownedPartitionIsDropped(t *testing.T) {
	k := testenv.StartKafka(t)
	q := newKafkaQueue(t, k.Brokers, "unowned")
	msg := &imcloud.Message{Kind: imcloud.KindRoom, Op: 1000, Room: "live://1", Body: []byte("x")}
	require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{msg}))
	s := openSource(t, k.Brokers, "unowned-group", "unowned")
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec, err := s.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Commit(ctx, 99, 5), "not ours: dropped, not an error")
	require.NoError(t, s.Commit(ctx, rec.Partition, rec.Offset))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "idempotent")
	_, err = s.Receive(ctx)
	require.ErrorIs(t, err, kafka.ErrSourceClosed)
}
