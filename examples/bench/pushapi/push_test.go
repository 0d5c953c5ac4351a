package pushapi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Benchmarks of the push path end to end through a real redis-server and
// an in-process kfake broker. Run them one at a time, bounded, e.g.
//
//	go test ./examples/bench/pushapi -run '^$' -bench BenchmarkHTTPPushMids -benchtime 200000x
//
// The bare sarama producer benchmark measures the broker's own ceiling, so
// a push figure is never just the harness's.

const benchMids = 100000

// benchEnv is a benchmark's real backends, redis-server and kfake, and
// what they report beside the benchmark's own figures.
type benchEnv struct {
	router    *redis.Router
	queue     *kafka.Queue
	redisAddr string
	produce   produceCounter
}

// redisCPU returns the redis-server's CPU time (INFO cpu); 0 without a
// redis-server (e nil: memory backends).
func (e *benchEnv) redisCPU() time.Duration {
	if e == nil {
		return 0
	}
	c, err := redigo.Dial("tcp", e.redisAddr)
	if err != nil {
		return 0
	}
	defer c.Close()
	info, err := redigo.String(c.Do("INFO", "cpu"))
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// produceCounter counts, at the broker, the produce requests of the
// benchmark's producer and the records they carry. It is counted by kfake
// rather than read from sarama's metrics, which the KafkaQueue's default
// configuration turns off (they would cost the producer CPU of their own).
type produceCounter struct{ requests, records atomic.Int64 }

// count makes k's broker count every produce request from now on.
func (pc *produceCounter) count(k *testenv.Kafka) {
	c := k.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pc.requests.Add(1)
		for _, t := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				pc.records.Add(int64(recordsInBatches(p.Records)))
			}
		}
		return nil, nil, false // the broker handles it as usual
	})
}

// recordsInBatches counts the records of Kafka v2 record batches laid end
// to end: each batch's length is at byte 8 and its record count at 57.
func recordsInBatches(b []byte) int {
	n := 0
	for len(b) >= 61 {
		n += int(binary.BigEndian.Uint32(b[57:61]))
		size := 12 + int(binary.BigEndian.Uint32(b[8:12]))
		if size > len(b) {
			break
		}
		b = b[size:]
	}
	return n
}

// reportBatching reports how many lookups shared a Redis round trip and
// how many records a Kafka produce request carried, since the backends
// started (over every run of the benchmark so far).
func (e *benchEnv) reportBatching(b *testing.B) {
	st := e.router.Stats()
	b.ReportMetric(float64(st.Lookups)/float64(max(1, st.RoundTrips)), "lookups/redis-rt")
	if reqs := e.produce.requests.Load(); reqs > 0 {
		b.ReportMetric(float64(e.produce.records.Load())/float64(reqs), "records/kafka-req")
	}
}

// benchBackends starts Redis and kfake (in memory) and puts benchMids
// users online, one connection each, spread over 8 nodes.
func benchBackends(b *testing.B) *benchEnv {
	b.Helper()
	srv := testenv.StartRedis(b)
	e := &benchEnv{redisAddr: srv.Addr}
	k := testenv.StartKafkaInMemory(b, "bench")
	router, err := redis.NewRouter(redis.Config{Addr: srv.Addr})
	require.NoError(b, err)
	b.Cleanup(func() { _ = router.Close() })
	sessions := make([]imcloud.Session, 0, 1000)
	ctx := context.Background()
	for mid := int64(1); mid <= benchMids; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: fmt.Sprintf("key-%d", mid), Node: fmt.Sprintf("node-%d", mid%8), Gen: 1})
		if len(sessions) == cap(sessions) {
			require.NoError(b, router.PutSessions(ctx, sessions, time.Hour))
			sessions = sessions[:0]
		}
	}
	e.produce.count(k)
	q, err := kafka.NewQueue(kafka.QueueConfig{Brokers: k.Brokers, Topic: "bench"})
	require.NoError(b, err)
	b.Cleanup(func() { _ = q.Close() })
	e.router, e.queue = router, q
	return e
}

// BenchmarkSaramaProducerCeiling is the kfake broker's ceiling with a bare
// sarama async producer in the Kafka queue's configuration: b.N messages
// of a typical push's size, pipelined, waiting for every ack.
func BenchmarkSaramaProducerCeiling(b *testing.B) {
	k := testenv.StartKafkaInMemory(b, "ceiling")
	cfg := kafka.NewProducerConfig()
	cfg.Producer.Return.Successes = true
	p, err := sarama.NewAsyncProducer(k.Brokers, cfg)
	require.NoError(b, err)
	defer p.Close()
	m := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: "node-1",
		Keys: []string{"key-12345"}, Body: []byte("hello, world"), Accepted: time.Now()}
	v, _ := m.MarshalBinary()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := 0; i < b.N; i++ {
			p.Input() <- &sarama.ProducerMessage{Topic: "ceiling", Key: sarama.StringEncoder(fmt.Sprint("node-", i%8)), Value: sarama.ByteEncoder(v)}
		}
	}()
	for i := 0; i < b.N; i++ {
		select {
		case <-p.Successes():
		case err := <-p.Errors():
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPushMids is Pusher.PushMids through Redis and kfake, from 100
// concurrent callers, with 1 and with 100 online mids per push.
func BenchmarkPushMids(b *testing.B) {
	env := benchBackends(b)
	p, err := logic.New(logic.Config{Router: env.router, Queue: env.queue})
	require.NoError(b, err)
	defer p.Close()
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("mids=%d", n), func(b *testing.B) {
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(100 / max(1, runtimeProcs()))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				mids := make([]int64, n)
				for pb.Next() {
					base := next.Add(int64(n))
					for i := range mids {
						mids[i] = (base+int64(i))%benchMids + 1
					}
					res, err := p.PushMids(context.Background(), 1000, mids, []byte("hello, world"))
					if err != nil || res.Keys != n {
						b.Errorf("push: %v %+v", err, res)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pushes/s")
		})
	}
}

// BenchmarkHTTPPushMids is the goim API under load: 100 concurrent
// keep-alive clients POSTing /goim/push/mids with one online mid each,
// through Redis and kfake, reporting requests/s and the p99 latency.
func BenchmarkHTTPPushMids(b *testing.B) {
	env := benchBackends(b)
	benchHTTP(b, env.router, env.queue, env)
}

// BenchmarkHTTPPushMidsMemory is the same over the memory backends: the
// HTTP and Pusher overhead alone.
func BenchmarkHTTPPushMidsMemory(b *testing.B) {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	for mid := int64(1); mid <= benchMids; mid++ {
		_ = router.PutSessions(ctx, []imcloud.Session{{Mid: mid, Key: fmt.Sprint("key-", mid), Node: fmt.Sprint("node-", mid%8), Gen: 1}}, time.Hour)
	}
	benchHTTP(b, router, logic.NewMemoryQueue(logic.MemoryQueueConfig{Capacity: 1 << 24}), nil)
}

// benchHTTP runs the HTTP benchmark over router and q; env is their real
// backends, nil for the memory ones.
func benchHTTP(b *testing.B, router logic.Router, q logic.Queue, env *benchEnv) {
	b.Run("client=net-http", func(b *testing.B) { benchHTTPWith(b, router, q, env, false) })
	b.Run("client=raw", func(b *testing.B) { benchHTTPWith(b, router, q, env, true) })
}

func benchHTTPWith(b *testing.B, router logic.Router, q logic.Queue, env *benchEnv, raw bool) {
	p, err := logic.New(logic.Config{Router: router, Queue: q})
	require.NoError(b, err)
	defer p.Close()
	srv := httptest.NewUnstartedServer(logic.NewHandler(p, logic.HandlerConfig{}))
	srv.Start()
	defer srv.Close()
	const clients = 100
	tr := &http.Transport{
		MaxIdleConns: clients, MaxIdleConnsPerHost: clients,
		DialContext: (&net.Dialer{}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := []byte("hello, world")
	addr := srv.Listener.Addr().String()

	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.ReportAllocs()
	b.SetParallelism(clients / max(1, runtimeProcs()))
	b.ResetTimer()
	start := time.Now()
	cpu0, rcpu0 := processCPU(), env.redisCPU()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		var rc *rawClient
		if raw {
			var err error
			if rc, err = dialRaw(addr); err != nil {
				b.Error(err)
				return
			}
			defer rc.close()
		}
		target := make([]byte, 0, 64)
		for pb.Next() {
			mid := next.Add(1)%benchMids + 1
			target = strconv.AppendInt(append(target[:0], "/goim/push/mids?operation=1000&mids="...), mid, 10)
			var status int
			if raw {
				var d time.Duration
				var err error
				if status, d, err = rc.post(string(target), body); err != nil {
					b.Error(err)
					return
				}
				local = append(local, d)
			} else {
				t0 := time.Now()
				resp, err := client.Post(srv.URL+string(target), "text/plain", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				local = append(local, time.Since(t0))
				status = resp.StatusCode
			}
			if status != http.StatusOK {
				b.Errorf("status %d", status)
				return
			}
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
	if env != nil {
		b.ReportMetric(float64((env.redisCPU()-rcpu0).Microseconds())/float64(b.N), "redis-cpu-µs/req")
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	if env != nil {
		env.reportBatching(b)
	}
}
