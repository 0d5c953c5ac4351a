package kafka

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// sender is the state of the Queue's one sending goroutine: the
// records waiting per partition and the requests in flight. Only that
// goroutine touches it, except answers, which sarama's response
// goroutines append to.
//
// The rules that keep each partition in order: a partition has at most one
// request in flight; a failed request's records go back to the head of
// their partition's queue; a broker has at most one request in flight.
// A partition that failed waits out its backoff alone: the others go on.
type sender struct {
	q           *Queue
	parts       map[int32]*partitionQueue
	order       []*partitionQueue // every partition seen, in first-seen order
	busy        map[*sarama.Broker]bool
	needRefresh bool // a partition failed: refresh metadata before retrying it

	mu      sync.Mutex
	answers []brokerAnswer
}

// partitionQueue is one partition's records waiting to be sent, in
// Publish order, and the ones in flight.
type partitionQueue struct {
	id       int32
	records  []*pendingRecord
	inFlight []*pendingRecord
	retries  int       // failed attempts in a row
	resume   time.Time // no sending before this (backoff after a failure)
}

// brokerRound is one produce request to a leader.
type brokerRound struct {
	broker *sarama.Broker
	req    *sarama.ProduceRequest
	parts  []*partitionQueue
	bytes  int
	count  int
}

// brokerAnswer is a broker's response to a request, or why there is none.
type brokerAnswer struct {
	round *brokerRound
	resp  *sarama.ProduceResponse
	err   error
}

// recordOverhead bounds a record's encoding beyond its key and value (its
// length, attributes, timestamp and offset deltas, key and value lengths
// and header count as varints), so a batch's size is never underestimated.
const recordOverhead = 1 + 5*binary.MaxVarintLen64

// requestOverhead is what sarama's producer leaves of MaxRequestSize for a
// request's headers and framing.
const requestOverhead = 10 << 10

// sender runs until the queue is closed and every record is finished.
func (q *Queue) sender() {
	defer close(q.stopped)
	s := &sender{q: q, parts: make(map[int32]*partitionQueue), busy: make(map[*sarama.Broker]bool)}
	var taken []*pendingRecord
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var closed bool
		taken, closed = s.take(taken)
		s.settleAnswers()
		s.dispatch()
		if closed && s.idle() {
			return
		}
		if wait, ok := s.nextResume(); ok {
			timer.Reset(wait)
		}
		select {
		case <-q.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// take moves what Publish queued into the partition queues, and reports
// whether the queue is closed. buf is the previous call's buffer, reused.
func (s *sender) take(buf []*pendingRecord) ([]*pendingRecord, bool) {
	q := s.q
	q.mu.Lock()
	recs, closed := q.pending, q.closed
	q.pending = buf[:0]
	q.mu.Unlock()
	for _, r := range recs {
		if err := q.assignPartition(r); err != nil {
			q.finish(r, err)
			continue
		}
		pq := s.parts[r.partition]
		if pq == nil {
			pq = &partitionQueue{id: r.partition}
			s.parts[r.partition] = pq
			s.order = append(s.order, pq)
		}
		pq.records = append(pq.records, r)
	}
	clear(recs)
	return recs, closed
}

// idle reports whether nothing waits and nothing is in flight.
func (s *sender) idle() bool {
	for _, pq := range s.order {
		if len(pq.records) > 0 || pq.inFlight != nil {
			return false
		}
	}
	return true
}

// nextResume is how long until the first partition waiting out a backoff
// may be sent again, if one is.
func (s *sender) nextResume() (time.Duration, bool) {
	var first time.Time
	for _, pq := range s.order {
		if len(pq.records) > 0 && pq.inFlight == nil && !pq.resume.IsZero() && (first.IsZero() || pq.resume.Before(first)) {
			first = pq.resume
		}
	}
	if first.IsZero() {
		return 0, false
	}
	return max(time.Until(first), time.Millisecond), true
}

// dispatch sends one request to every leader that has none in flight,
// with what its ready partitions hold: each partition's records in order,
// up to Producer.MaxMessageBytes of them per partition, sarama's
// MaxRequestSize and Flush.MaxMessages per request.
func (s *sender) dispatch() {
	q := s.q
	now := time.Now()
	ready := func(pq *partitionQueue) bool {
		return len(pq.records) > 0 && pq.inFlight == nil && !now.Before(pq.resume)
	}
	if s.needRefresh {
		for _, pq := range s.order {
			if pq.retries > 0 && ready(pq) {
				if err := q.client.RefreshMetadata(q.topic); err != nil {
					q.log.Warn("kafka: metadata refresh failed", "topic", q.topic, "err", err)
				}
				s.needRefresh = false
				break
			}
		}
	}
	var rounds []*brokerRound
	byBroker := map[*sarama.Broker]*brokerRound{}
	for _, pq := range s.order {
		if !ready(pq) {
			continue
		}
		leader, err := q.client.Leader(q.topic, pq.id)
		if err != nil {
			pq.inFlight, pq.records = pq.records, nil
			s.retry(pq, err)
			continue
		}
		if s.busy[leader] {
			continue
		}
		br := byBroker[leader]
		if br == nil {
			br = &brokerRound{broker: leader, req: q.newProduceRequest()}
			byBroker[leader] = br
			rounds = append(rounds, br)
		}
		n := s.fit(br, pq.records)
		if n == 0 {
			continue
		}
		pq.inFlight = append([]*pendingRecord(nil), pq.records[:n]...)
		pq.records = pq.records[n:]
		br.req.AddBatch(q.topic, pq.id, q.recordBatch(pq.inFlight))
		br.parts = append(br.parts, pq)
	}
	for _, br := range rounds {
		if len(br.parts) > 0 {
			s.busy[br.broker] = true
			s.produce(br)
		}
	}
}

// fit returns how many of recs (one partition's, in order) br can still
// carry, and counts them in.
func (s *sender) fit(br *brokerRound, recs []*pendingRecord) int {
	conf := s.q.conf
	maxRequest := int(sarama.MaxRequestSize) - requestOverhead
	batch := 0
	for i, r := range recs {
		size := r.encodedSizeBound()
		switch {
		case conf.Producer.Flush.MaxMessages > 0 && br.count >= conf.Producer.Flush.MaxMessages,
			i > 0 && batch+size > conf.Producer.MaxMessageBytes,
			br.count > 0 && br.bytes+size > maxRequest:
			return i
		}
		batch += size
		br.bytes += size
		br.count++
	}
	return len(recs)
}

// encodedSizeBound is at least the size of r's encoding in a batch.
func (r *pendingRecord) encodedSizeBound() int {
	n := len(r.key.b) + len(r.value.b) + recordOverhead
	for _, h := range r.pm.Headers {
		n += len(h.Key) + len(h.Value) + 2*binary.MaxVarintLen64
	}
	return n
}

// newProduceRequest is an empty request in the version sarama's producer
// uses for the configured Kafka version (at least 0.11: record batches).
func (q *Queue) newProduceRequest() *sarama.ProduceRequest {
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
// Each record's timestamp is when it was published, to the millisecond
// (wall clock: created carries no monotonic reading).
func (q *Queue) recordBatch(recs []*pendingRecord) *sarama.RecordBatch {
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

// produce sends br's request. sarama reads the response on the broker's
// own goroutine and runs the callback there, where the broker must not be
// used again, so the callback only queues the answer and wakes the sender.
func (s *sender) produce(br *brokerRound) {
	if s.q.conf.Producer.RequiredAcks == sarama.NoResponse {
		err := br.broker.AsyncProduce(br.req, nil) // no response will come
		s.settle(brokerAnswer{round: br, err: err})
		return
	}
	err := br.broker.AsyncProduce(br.req, func(resp *sarama.ProduceResponse, err error) {
		s.mu.Lock()
		s.answers = append(s.answers, brokerAnswer{round: br, resp: resp, err: err})
		s.mu.Unlock()
		select {
		case s.q.kick <- struct{}{}:
		default:
		}
	})
	if err != nil { // not sent: the callback will not run
		s.settle(brokerAnswer{round: br, err: err})
	}
}

func (s *sender) settleAnswers() {
	s.mu.Lock()
	answers := s.answers
	s.answers = nil
	s.mu.Unlock()
	for _, a := range answers {
		s.settle(a)
	}
}

// settle finishes the records of a broker's answer, or puts them back for
// a retry.
func (s *sender) settle(a brokerAnswer) {
	q := s.q
	delete(s.busy, a.round.broker)
	var encoding sarama.PacketEncodingError
	switch {
	case errors.As(a.err, &encoding):
		// The request could not be encoded: sending it again cannot help,
		// and the connection is fine (sarama's producer does the same).
		for _, pq := range a.round.parts {
			s.finishAll(pq, a.err)
		}
		return
	case a.err != nil:
		// The connection failed: drop it, so the retry reconnects (the
		// client's Leader opens it again), as sarama's producer does.
		q.log.Warn("kafka: produce request failed", "broker", a.round.broker.Addr(), "err", a.err)
		_ = a.round.broker.Close()
		for _, pq := range a.round.parts {
			s.retry(pq, a.err)
		}
		return
	}
	for _, pq := range a.round.parts {
		err := error(sarama.ErrNoError)
		if a.resp != nil {
			if block := a.resp.GetBlock(q.topic, pq.id); block == nil {
				err = sarama.ErrIncompleteResponse
			} else {
				err = block.Err
			}
		}
		switch {
		case err == sarama.ErrNoError:
			pq.retries, pq.resume = 0, time.Time{}
			s.finishAll(pq, nil)
		case retriableProduceError(err):
			s.retry(pq, err)
		default:
			s.finishAll(pq, err)
		}
	}
}

func (s *sender) finishAll(pq *partitionQueue, err error) {
	for _, r := range pq.inFlight {
		s.q.finish(r, err)
	}
	pq.inFlight = nil
}

// retry puts pq's records in flight back at the head of its queue, fails
// those out of retries (Producer.Retry.Max each), and holds the partition
// back for the retry backoff.
func (s *sender) retry(pq *partitionQueue, err error) {
	conf := s.q.conf
	kept := pq.inFlight[:0]
	for _, r := range pq.inFlight {
		if r.attempts >= conf.Producer.Retry.Max {
			s.q.finish(r, err)
			continue
		}
		r.attempts++
		kept = append(kept, r)
	}
	pq.records = append(kept, pq.records...)
	pq.inFlight = nil
	pq.retries++
	backoff := conf.Producer.Retry.Backoff
	if f := conf.Producer.Retry.BackoffFunc; f != nil {
		backoff = f(min(pq.retries, conf.Producer.Retry.Max), conf.Producer.Retry.Max)
	}
	pq.resume = time.Now().Add(backoff)
	s.needRefresh = true
	s.q.log.Warn("kafka: partition will be retried", "topic", s.q.topic, "partition", pq.id,
		"records", len(pq.records), "retries", pq.retries, "backoff", backoff, "err", err)
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
