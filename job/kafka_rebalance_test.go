package job

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// recordPos is where a published record landed.
type recordPos struct {
	partition int32
	offset    int64
}

// numberedStream publishes room messages whose bodies are their sequence
// numbers 0, 1, 2, ... spread over rooms (and so over partitions), and
// remembers the partition and offset of each.
type numberedStream struct {
	t     *testing.T
	pub   *saramaPublisher
	rooms int

	mu    sync.Mutex
	where []recordPos       // by number
	byPos map[recordPos]int // number by position
	count map[int32]int64   // records per partition
}

func newNumberedStream(t *testing.T, pub *saramaPublisher, rooms int) *numberedStream {
	return &numberedStream{t: t, pub: pub, rooms: rooms, byPos: map[recordPos]int{}, count: map[int32]int64{}}
}

// publish sends the next n numbers as one batch.
func (s *numberedStream) publish(n int) {
	s.t.Helper()
	s.mu.Lock()
	from := len(s.where)
	s.mu.Unlock()
	batch := make([]*sarama.ProducerMessage, 0, n)
	for i := from; i < from+n; i++ {
		room := fmt.Sprint("live://", i%s.rooms)
		b, err := roomMsg(room, strconv.Itoa(i)).MarshalBinary()
		require.NoError(s.t, err)
		batch = append(batch, &sarama.ProducerMessage{Topic: s.pub.topic,
			Key: sarama.StringEncoder(room), Value: sarama.ByteEncoder(b)})
	}
	require.NoError(s.t, s.pub.p.SendMessages(batch))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, pm := range batch {
		pos := recordPos{pm.Partition, pm.Offset}
		_, dup := s.byPos[pos]
		require.False(s.t, dup, "two records at %+v", pos)
		s.where = append(s.where, pos)
		s.byPos[pos] = from + i
		s.count[pm.Partition]++
	}
}

// published is the number of records published so far.
func (s *numberedStream) published() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.where)
}

// number is the sequence number of the record at pos, -1 if unknown.
func (s *numberedStream) number(pos recordPos) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.byPos[pos]; ok {
		return n
	}
	return -1
}

// until publishes a batch every few milliseconds until cond holds.
func (s *numberedStream) until(cond func() bool, timeout time.Duration, what string) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not within %v (%d records published)", what, timeout, s.published())
		}
		s.publish(s.rooms)
		time.Sleep(5 * time.Millisecond)
	}
}

// recordingSource is a Source that remembers what it handed out.
type recordingSource struct {
	Source
	mu  sync.Mutex
	got []recordPos
}

func (r *recordingSource) Receive(ctx context.Context) (imcloud.Record, error) {
	rec, err := r.Source.Receive(ctx)
	if err == nil {
		r.mu.Lock()
		r.got = append(r.got, recordPos{rec.Partition, rec.Offset})
		r.mu.Unlock()
	}
	return rec, err
}

func (r *recordingSource) received() []recordPos {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recordPos(nil), r.got...)
}

// commitRequest is one partition of an OffsetCommit request as the broker
// received it, with how many messages the node had accepted by then.
type commitRequest struct {
	member     string
	generation int32
	partition  int32
	offset     int64 // the next offset to consume
	accepted   int   // len(node.got) when the request arrived
}

// watchCommits records every OffsetCommit request of group for topic that
// reaches the broker, before the broker handles it.
func watchCommits(c *kfake.Cluster, group, topic string, n *testNode) func() []commitRequest {
	var mu sync.Mutex
	var log []commitRequest
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r, ok := req.(*kmsg.OffsetCommitRequest)
		if !ok || r.Group != group {
			return nil, nil, false
		}
		n.mu.Lock()
		accepted := len(n.got)
		n.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		for _, tp := range r.Topics {
			if tp.Topic != topic {
				continue
			}
			for _, p := range tp.Partitions {
				log = append(log, commitRequest{member: r.MemberID, generation: r.Generation,
					partition: p.Partition, offset: p.Offset, accepted: accepted})
			}
		}
		return nil, nil, false // observe only: the broker handles it
	})
	return func() []commitRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]commitRequest(nil), log...)
	}
}

// TestJobKafkaRebalance runs two jobs in one consumer group on a steady
// stream: the second joins mid-stream and takes half the partitions from
// the first, while the node acknowledges slowly enough that the first has
// records of the partitions it loses in flight. It checks that
//   - every record is delivered at least once;
//   - after the rebalance both members consume, each partition's new
//     records going to one member only;
//   - no commit that reaches the broker moves a partition's offset
//     backwards or past a record the node has not accepted yet (so a
//     revoked partition's late commits cannot skip or rewind);
//   - in the end the group's committed offsets are the partitions' ends.
func TestJobKafkaRebalance(t *testing.T) {
	k := testenv.StartKafka(t)
	topic, group := uniqueName("rebal"), uniqueName("g")
	node := startTestNode(t, "n0", secret)
	dir := newMemDir(node.node())
	commits := watchCommits(k.Cluster(), group, topic, node)
	stream := newNumberedStream(t, newSaramaPublisher(t, k.Brokers, topic), 16)
	stream.publish(16)
	stream.mu.Lock()
	require.Len(t, stream.count, testenv.DefaultPartitions, "the rooms cover every partition")
	stream.mu.Unlock()

	src1 := &recordingSource{Source: openKafkaSource(t, k.Brokers, group, topic)}
	defer src1.Source.(*kafka.Source).Close()
	j1 := startJob(t, fastConfig(src1, dir))
	stream.until(func() bool { return j1.Stats().Delivered >= 200 }, 20*time.Second, "first job delivers")

	// The node slows down: the first job holds unacknowledged records of
	// every partition when the second member joins.
	node.set(func(n *testNode) { n.ackDelay = 5 * time.Millisecond })
	src2 := &recordingSource{Source: openKafkaSource(t, k.Brokers, group, topic)}
	defer src2.Source.(*kafka.Source).Close()
	j2 := startJob(t, fastConfig(src2, dir))
	stream.until(func() bool { return len(src2.received()) > 0 }, 20*time.Second, "second job receives")
	node.set(func(n *testNode) { n.ackDelay = 0 })
	mark := stream.published() // every record from here on is published after the rebalance

	after := func(r *recordingSource) map[int32]int {
		per := map[int32]int{}
		for _, pos := range r.received() {
			if stream.number(pos) >= mark {
				per[pos.partition]++
			}
		}
		return per
	}
	total := func(per map[int32]int) (n int) {
		for _, c := range per {
			n += c
		}
		return n
	}
	stream.until(func() bool { return total(after(src1)) >= 50 && total(after(src2)) >= 50 },
		20*time.Second, "both jobs consume after the rebalance")
	published := stream.published()

	// Every record reaches the node at least once.
	eventually(t, func() bool {
		seen := make([]bool, published)
		missing := published
		for _, m := range node.messages() {
			if i, err := strconv.Atoi(string(m.Body)); err == nil && i < published && !seen[i] {
				seen[i] = true
				missing--
			}
		}
		return missing == 0
	}, 20*time.Second, "every record delivered")

	// Both members took part after the rebalance, on disjoint partitions.
	a1, a2 := after(src1), after(src2)
	t.Logf("published %d (rebalance at %d); after it: job 1 partitions %v, job 2 %v; node got %d (duplicates from revoked partitions); discarded %d/%d",
		published, mark, a1, a2, len(node.messages()),
		src1.Source.(*kafka.Source).Discarded(), src2.Source.(*kafka.Source).Discarded())
	require.NotEmpty(t, a1)
	require.NotEmpty(t, a2)
	for p := range a1 {
		require.NotContains(t, a2, p, "partition %d consumed by both members after the rebalance", p)
	}

	// Everything was committed: stop both jobs (they commit their final
	// watermarks), then close the sources (flushing the marks).
	eventually(t, func() bool { return j1.Stats().Pending == 0 && j2.Stats().Pending == 0 }, 10*time.Second, "drained")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, j1.Shutdown(sctx))
	require.NoError(t, j2.Shutdown(sctx))
	require.NoError(t, src1.Source.(*kafka.Source).Close())
	require.NoError(t, src2.Source.(*kafka.Source).Close())

	// Commits never go backwards and never pass a record the node had not
	// accepted when the commit reached the broker.
	msgs := node.messages()
	firstAccepted := make(map[int]int, published) // number -> index in node's log
	for i, m := range msgs {
		if n, err := strconv.Atoi(string(m.Body)); err == nil {
			if _, ok := firstAccepted[n]; !ok {
				firstAccepted[n] = i
			}
		}
	}
	log := commits()
	require.NotEmpty(t, log)
	members := map[string]bool{}
	last := map[int32]int64{}
	for _, c := range log {
		members[c.member] = true
		assert.GreaterOrEqual(t, c.offset, last[c.partition],
			"commit of partition %d by %s (generation %d) moves back", c.partition, c.member, c.generation)
		last[c.partition] = max(last[c.partition], c.offset)
		for off := int64(0); off < c.offset; off++ {
			n := stream.number(recordPos{c.partition, off})
			i, ok := firstAccepted[n]
			if !assert.True(t, n >= 0 && ok && i < c.accepted,
				"commit of partition %d up to %d by %s (generation %d) skips offset %d (record %d) not yet accepted",
				c.partition, c.offset, c.member, c.generation, off, n) {
				break
			}
		}
	}
	require.Len(t, members, 2, "both members committed")

	// The group's committed offsets are the partitions' ends.
	admin, err := sarama.NewClusterAdmin(k.Brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer admin.Close()
	parts := make([]int32, 0, testenv.DefaultPartitions)
	for p := range int32(testenv.DefaultPartitions) {
		parts = append(parts, p)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	require.NoError(t, err)
	stream.mu.Lock()
	defer stream.mu.Unlock()
	var got, want []string
	for _, p := range parts {
		b := resp.GetBlock(topic, p)
		require.NotNil(t, b)
		got = append(got, fmt.Sprintf("%d:%d", p, b.Offset))
		want = append(want, fmt.Sprintf("%d:%d", p, stream.count[p]))
	}
	sort.Strings(got)
	require.Equal(t, want, got, "committed offsets are the partitions' ends")
}
