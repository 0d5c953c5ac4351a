package logic

import (
	"time"

	"github.com/IBM/sarama"
)

// sender is the KafkaQueue's one sending goroutine: it takes everything
// waiting in pending and delivers it, until the queue is closed and
// nothing waits. Publish calls that arrive meanwhile fill the next batch.
func (q *KafkaQueue) sender() {
	defer close(q.stopped)
	var recs []*kafkaRecord
	for {
		q.mu.Lock()
		for len(q.pending) == 0 {
			if q.closed {
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			<-q.kick
			q.mu.Lock()
		}
		recs, q.pending = q.pending, recs[:0] // two buffers, swapped
		q.mu.Unlock()
		q.deliver(recs)
		clear(recs)
	}
}

// deliver sends recs in rounds until each is acknowledged or has failed
// for good. A round that leaves partitions to retry is followed by the
// retry backoff and a metadata refresh, as in sarama's producer; a record
// is retried at most Producer.Retry.Max times.
func (q *KafkaQueue) deliver(recs []*kafkaRecord) {
	recs = q.assignPartitions(recs)
	for retries := 0; len(recs) > 0; {
		rest, retrying := q.round(recs)
		if !retrying {
			recs = rest
			continue
		}
		recs = rest[:0]
		for _, r := range rest {
			if r.err != nil {
				if r.attempts >= q.conf.Producer.Retry.Max {
					q.fail(r, r.err)
					continue
				}
				r.attempts++
			}
			recs = append(recs, r)
		}
		if len(recs) == 0 {
			return
		}
		retries++
		time.Sleep(q.retryBackoff(retries))
		if err := q.client.RefreshMetadata(q.topic); err != nil {
			q.log.Warn("logic: kafka metadata refresh failed", "topic", q.topic, "err", err)
		}
	}
}

// assignPartitions gives each new record of recs its partition and fails
// those that cannot have one, keeping the others in order.
func (q *KafkaQueue) assignPartitions(recs []*kafkaRecord) []*kafkaRecord {
	kept := recs[:0]
	for _, r := range recs {
		if !r.assigned {
			if err := q.assignPartition(r); err != nil {
				q.fail(r, err)
				continue
			}
			r.assigned = true
		}
		kept = append(kept, r)
	}
	return kept
}

func (q *KafkaQueue) retryBackoff(retries int) time.Duration {
	if f := q.conf.Producer.Retry.BackoffFunc; f != nil {
		return f(retries, q.conf.Producer.Retry.Max)
	}
	return q.conf.Producer.Retry.Backoff
}

// partitionRound is one partition's share of a round: its records in
// order, their leader, and how the round went for them.
type partitionRound struct {
	partition int32
	records   []*kafkaRecord
	bytes     int
	full      bool // the rest of this partition's records wait for the next round
	leader    *sarama.Broker
	retry     error // set when the records are to be retried
}

// brokerRound is one leader's produce request in a round.
type brokerRound struct {
	broker *sarama.Broker
	req    *sarama.ProduceRequest
	parts  []*partitionRound
}

// brokerAnswer is a broker's response to its request, or why there is
// none.
type brokerAnswer struct {
	round *brokerRound
	resp  *sarama.ProduceResponse
	err   error
}

// recordOverhead bounds a record's encoding beyond its key and value (its
// length, attributes, timestamp and offset deltas, key and value lengths
// and header count as varints), so a batch's size is never underestimated.
const recordOverhead = 1 + 5*10

// encodedSizeBound is at least the size of r's encoding in a batch.
func (r *kafkaRecord) encodedSizeBound() int {
	n := len(r.key.b) + len(r.value.b) + recordOverhead
	for _, h := range r.pm.Headers {
		n += len(h.Key) + len(h.Value) + 2*10
	}
	return n
}

// round sends one produce request per leader with what fits (each
// partition's records in order, up to Producer.MaxMessageBytes of them per
// partition, Flush.MaxMessages in all), waits for every answer and
// finishes each record acknowledged or failed for good. It returns what is
// left in order per partition (the records of partitions to retry, with
// their err set, then the records that did not fit) and whether any are
// to be retried.
func (q *KafkaQueue) round(recs []*kafkaRecord) (rest []*kafkaRecord, retrying bool) {
	var (
		parts    = make(map[int32]*partitionRound)
		order    []*partitionRound
		deferred []*kafkaRecord
		taken    int
		maxMsgs  = q.conf.Producer.Flush.MaxMessages
	)
	for _, r := range recs {
		pr := parts[r.partition]
		if pr == nil {
			pr = &partitionRound{partition: r.partition}
			pr.leader, pr.retry = q.client.Leader(q.topic, r.partition)
			parts[r.partition] = pr
			order = append(order, pr)
		}
		size := r.encodedSizeBound()
		if pr.full || (maxMsgs > 0 && taken >= maxMsgs) ||
			(len(pr.records) > 0 && pr.bytes+size > q.conf.Producer.MaxMessageBytes) {
			pr.full = true
			deferred = append(deferred, r)
			continue
		}
		pr.records = append(pr.records, r)
		pr.bytes += size
		taken++
	}

	brokers := make(map[*sarama.Broker]*brokerRound)
	var rounds []*brokerRound
	for _, pr := range order {
		if pr.retry != nil {
			continue // no leader: nothing to send it to
		}
		br := brokers[pr.leader]
		if br == nil {
			br = &brokerRound{broker: pr.leader, req: q.newProduceRequest()}
			brokers[pr.leader] = br
			rounds = append(rounds, br)
		}
		br.req.AddBatch(q.topic, pr.partition, q.recordBatch(pr.records))
		br.parts = append(br.parts, pr)
	}
	answers := make(chan brokerAnswer, len(rounds))
	for _, br := range rounds {
		q.produce(br, answers)
	}
	for range rounds {
		q.settle(<-answers)
	}

	for _, pr := range order {
		if pr.retry != nil {
			retrying = true
			for _, r := range pr.records {
				r.err = pr.retry
				rest = append(rest, r)
			}
		}
	}
	return append(rest, deferred...), retrying
}

// newProduceRequest is an empty request in the version sarama's producer
// uses for the configured Kafka version (at least 0.11: record batches).
func (q *KafkaQueue) newProduceRequest() *sarama.ProduceRequest {
	v := q.conf.Version
	req := &sarama.ProduceRequest{
		RequiredAcks: q.conf.Producer.RequiredAcks,
		Timeout:      int32(q.conf.Producer.Timeout / time.Millisecond),
		Version:      3,
	}
	for _, step := range [...]struct {
		since   sarama.KafkaVersion
		version int16
	}{
		{sarama.V1_0_0_0, 5}, {sarama.V2_0_0_0, 6}, {sarama.V2_1_0_0, 7},
		{sarama.V2_4_0_0, 8}, {sarama.V2_8_0_0, 9}, {sarama.V3_7_0_0, 10},
	} {
		if v.IsAtLeast(step.since) {
			req.Version = step.version
		}
	}
	return req
}

// recordBatch is one partition's records as a compressed record batch.
// Each record's timestamp is when it was published, to the millisecond.
func (q *KafkaQueue) recordBatch(recs []*kafkaRecord) *sarama.RecordBatch {
	first, last := recs[0].created, recs[0].created
	for _, r := range recs[1:] {
		if r.created.Before(first) {
			first = r.created
		}
		if r.created.After(last) {
			last = r.created
		}
	}
	first = first.Truncate(time.Millisecond)
	batch := &sarama.RecordBatch{
		Version:          2,
		Codec:            q.conf.Producer.Compression,
		CompressionLevel: q.conf.Producer.CompressionLevel,
		FirstTimestamp:   first,
		MaxTimestamp:     last.Truncate(time.Millisecond),
		LastOffsetDelta:  int32(len(recs) - 1),
		ProducerID:       -1,
		ProducerEpoch:    -1,
		Records:          make([]*sarama.Record, len(recs)),
	}
	for i, r := range recs {
		r.rec = sarama.Record{
			Key:            r.key.b,
			Value:          r.value.b,
			OffsetDelta:    int64(i),
			TimestampDelta: r.created.Sub(first),
		}
		if len(r.pm.Headers) > 0 { // an interceptor added them
			r.rec.Headers = make([]*sarama.RecordHeader, len(r.pm.Headers))
			for j := range r.pm.Headers {
				r.rec.Headers[j] = &r.pm.Headers[j]
			}
		}
		batch.Records[i] = &r.rec
	}
	return batch
}

// produce sends br's request; its answer arrives on answers. sarama reads
// the response on the broker's own goroutine and runs the callback there,
// where the broker must not be used again, so the callback only hands the
// response over.
func (q *KafkaQueue) produce(br *brokerRound, answers chan<- brokerAnswer) {
	if q.conf.Producer.RequiredAcks == sarama.NoResponse {
		err := br.broker.AsyncProduce(br.req, nil) // no response will come
		answers <- brokerAnswer{round: br, err: err}
		return
	}
	err := br.broker.AsyncProduce(br.req, func(resp *sarama.ProduceResponse, err error) {
		answers <- brokerAnswer{round: br, resp: resp, err: err}
	})
	if err != nil { // not sent: the callback will not run
		answers <- brokerAnswer{round: br, err: err}
	}
}

// settle finishes the records of a broker's answer, or marks them for a
// retry.
func (q *KafkaQueue) settle(a brokerAnswer) {
	if a.err != nil {
		// The connection failed: drop it, so the retry reconnects (the
		// client's Leader opens it again), as sarama's producer does.
		q.log.Warn("logic: kafka produce request failed", "broker", a.round.broker.Addr(), "err", a.err)
		_ = a.round.broker.Close()
		for _, pr := range a.round.parts {
			pr.retry = a.err
		}
		return
	}
	for _, pr := range a.round.parts {
		err := error(sarama.ErrNoError)
		if a.resp != nil {
			if block := a.resp.GetBlock(q.topic, pr.partition); block == nil {
				err = sarama.ErrIncompleteResponse
			} else {
				err = block.Err
			}
		}
		switch {
		case err == sarama.ErrNoError:
			for _, r := range pr.records {
				r.batch.finish(nil)
			}
		case retriableProduceError(err):
			pr.retry = err
		default:
			for _, r := range pr.records {
				q.fail(r, err)
			}
		}
	}
}

// retriableProduceError reports whether sarama's producer retries a
// partition that answered err.
func retriableProduceError(err error) bool {
	switch err {
	case sarama.ErrInvalidMessage, sarama.ErrUnknownTopicOrPartition, sarama.ErrLeaderNotAvailable,
		sarama.ErrNotLeaderForPartition, sarama.ErrRequestTimedOut, sarama.ErrNotEnoughReplicas,
		sarama.ErrNotEnoughReplicasAfterAppend, sarama.ErrKafkaStorageError:
		return true
	}
	return false
}

func (q *KafkaQueue) fail(r *kafkaRecord, err error) {
	q.failed.Add(1)
	r.batch.finish(err)
}
