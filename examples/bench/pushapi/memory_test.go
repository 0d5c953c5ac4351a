package pushapi_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// BenchmarkPushMidsMemory is Pusher.PushMids over the memory backends from
// 100 concurrent callers, one online mid per push: the Pusher's own cost
// (validation, the pool, the work context, message building) with the
// backends as cheap as they get.
func BenchmarkPushMidsMemory(b *testing.B) {
	router := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	for mid := int64(1); mid <= benchMids; mid++ {
		_ = router.PutSessions(ctx, []imcloud.Session{{Mid: mid, Key: fmt.Sprint("key-", mid), Node: fmt.Sprint("node-", mid%8), Gen: 1}}, time.Hour)
	}
	queue := logic.NewMemoryQueue(logic.MemoryQueueConfig{Capacity: 1 << 24})
	defer queue.Close()
	p, err := logic.New(logic.Config{Router: router, Queue: queue})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var next atomic.Int64
	body := []byte("hello, world")
	b.ReportAllocs()
	b.SetParallelism(100 / max(1, runtimeProcs()))
	b.ResetTimer()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		mids := make([]int64, 1)
		for pb.Next() {
			mids[0] = next.Add(1)%benchMids + 1
			if res, err := p.PushMids(ctx, 1000, mids, body); err != nil || res.Keys != 1 {
				b.Errorf("push: %v %+v", err, res)
				return
			}
		}
	})
	b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/push")
}
