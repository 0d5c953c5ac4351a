package pushapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/require"
)

// BenchmarkHTTPOverloadLargeMids is the push API overloaded by large
// pushes, through Redis and kfake: for 5 s, 100 requests/s of 10,000
// online mids each (open loop: a request is sent on time whatever the
// others do), 50 requests/s of one mid, and a gateway's session writes
// (PutSessions of one session every 20 ms, through a Router of its own,
// as a cloud node's) against the same Redis. It reports the large pushes'
// answers by status and p99, the small pushes' failures and p99, and the
// registrations' failures and p99. The figures are of the whole run; b.N
// is ignored (run with -benchtime 1x).
func BenchmarkHTTPOverloadLargeMids(b *testing.B) {
	env := benchBackends(b)
	p, err := logic.New(logic.Config{Router: env.router, Queue: env.queue})
	require.NoError(b, err)
	defer p.Close()
	srv := httptest.NewServer(logic.NewHandler(p, logic.HandlerConfig{}))
	defer srv.Close()
	gateway, err := redis.NewRouter(redis.Config{Addr: env.redisAddr})
	require.NoError(b, err)
	defer gateway.Close()

	largeQuery := func(i int) string {
		var sb strings.Builder
		for j := 0; j < 10000; j++ {
			if j > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprint(&sb, (i*10000+j)%benchMids+1)
		}
		return sb.String()
	}
	queries := make([]string, 10)
	for i := range queries {
		queries[i] = largeQuery(i)
	}
	type answer struct {
		status int
		d      time.Duration
	}
	var (
		mu           sync.Mutex
		large, small []answer
		reg          []answer
		wg           sync.WaitGroup
	)
	client := &http.Client{Timeout: 30 * time.Second}
	// timed runs fn on its own goroutine and records its status and time
	// in dst.
	timed := func(dst *[]answer, fn func() int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			status := fn()
			mu.Lock()
			*dst = append(*dst, answer{status, time.Since(start)})
			mu.Unlock()
		}()
	}
	push := func(query, body string) int {
		resp, err := client.Post(srv.URL+"/goim/push/mids?operation=1000&mids="+query, "text/plain", strings.NewReader(body))
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	b.ResetTimer()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond) // 100/s large; 50/s small and 50/s writes, alternately
	defer tick.Stop()
	for i := 0; time.Now().Before(deadline); i++ {
		<-tick.C
		timed(&large, func() int { return push(queries[i%len(queries)], "large") })
		mid := int64(i%benchMids + 1)
		if i%2 == 0 {
			timed(&small, func() int { return push(fmt.Sprint(mid), "small") })
			continue
		}
		timed(&reg, func() int {
			s := imcloud.Session{Mid: mid, Key: fmt.Sprint("key-", mid), Node: fmt.Sprint("node-", mid%8), Gen: 1}
			if err := gateway.PutSessions(context.Background(), []imcloud.Session{s}, time.Hour); err != nil {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
	}
	wg.Wait()
	b.StopTimer()
	report := func(name string, as []answer) {
		byStatus := map[int]int{}
		ds := make([]time.Duration, 0, len(as))
		for _, a := range as {
			byStatus[a.status]++
			ds = append(ds, a.d)
		}
		slices.Sort(ds)
		for _, s := range []int{200, 500, 503, 0} {
			b.ReportMetric(float64(byStatus[s]), fmt.Sprintf("%s-%d", name, s))
		}
		if len(ds) > 0 {
			b.ReportMetric(float64(ds[len(ds)*99/100].Milliseconds()), name+"-p99-ms")
		}
	}
	report("large", large)
	report("small", small)
	report("reg", reg)
}
