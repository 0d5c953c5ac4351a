package historytest

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
)

// Shape is a footprint benchmark's size: Streams user streams holding Per
// pushes of FootprintBody bytes each.
type Shape struct{ Streams, Per int }

// FootprintShapes are the sizes BenchFootprint measures: the two of the
// recovery figures (100,000 streams of 10 pushes, 1,000 of 1,000) and a
// tenth of each, for slopes.
var FootprintShapes = []Shape{{100_000, 10}, {10_000, 10}, {1_000, 1_000}, {100, 1_000}}

// FootprintBody is the body size of the footprint benchmarks' pushes.
const FootprintBody = 100

// Footprint is how BenchFootprint opens and weighs a store.
type Footprint struct {
	// Open returns a fresh, empty store, unbounded enough to hold a whole
	// shape (nothing evicted or trimmed); it is called once per
	// iteration.
	Open func(b *testing.B) Store
	// Usage reads the memory the store uses, by name: each name N
	// becomes the metrics N-B/msg, N-B/stream and N-slope-B/stream.
	Usage func(b *testing.B, st Store) map[string]int64
}

// BenchFootprint measures the memory a store takes per stored push and
// per stream: for each shape (a sub-benchmark), it fills a fresh store
// with a tenth of the shape's streams, reads Usage, fills the other nine
// tenths, and reads Usage again. Pushes go in as job appends them:
// interleaved over the streams, in batches of 256. It reports, per Usage
// name N and averaged over b.N fills (run with -benchtime 1x):
//
//   - N-B/msg: the whole increase over the empty store, per push held;
//   - N-B/stream: the same per stream (its Per pushes included);
//   - N-slope-B/stream: the increase over the last nine tenths, per
//     stream added: the marginal cost of a stream of Per pushes, free of
//     what the store costs once.
//
// From the slopes of two shapes with the same stream count but Per p1
// and p2 pushes (10 and 1,000 here), the cost of one more push is
// (slope2 - slope1) / (p2 - p1) and a stream's own cost, without its
// pushes, is slope1 - p1 * that.
func BenchFootprint(b *testing.B, f Footprint) {
	for _, sh := range FootprintShapes {
		b.Run(fmt.Sprintf("streams=%d/per=%d", sh.Streams, sh.Per), func(b *testing.B) {
			sums := map[string]float64{}
			for i := 0; i < b.N; i++ {
				st := f.Open(b)
				base := f.Usage(b, st)
				tenth := sh.Streams / 10
				fill(b, st, 0, tenth, sh.Per)
				mid := f.Usage(b, st)
				fill(b, st, tenth, sh.Streams, sh.Per)
				full := f.Usage(b, st)
				checkHeld(b, st, sh)
				for name, v := range full {
					grew := float64(v - base[name])
					sums[name+"-B/msg"] += grew / float64(sh.Streams*sh.Per)
					sums[name+"-B/stream"] += grew / float64(sh.Streams)
					sums[name+"-slope-B/stream"] += float64(v-mid[name]) / float64(sh.Streams-tenth)
				}
			}
			for unit, sum := range sums {
				b.ReportMetric(sum/float64(b.N), unit)
			}
		})
	}
}

// fill appends per pushes to each of user streams from+1..to, round robin
// over the streams, each push of FootprintBody bytes at the stream's next
// offset.
func fill(b *testing.B, st Store, from, to, per int) {
	ctx := context.Background()
	body := make([]byte, FootprintBody)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	batch := make([]imcloud.HistoryAppend, 0, 256)
	flush := func() {
		if err := st.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	now := time.Now()
	for j := 0; j < per; j++ {
		for s := from; s < to; s++ {
			batch = append(batch, imcloud.HistoryAppend{Stream: imcloud.UserStream(int64(s + 1)), Entry: imcloud.HistoryEntry{
				Offset: int64(j), ID: imcloud.NewMessageID(), Op: 1000, Body: body, Accepted: now}})
			if len(batch) == cap(batch) {
				flush()
			}
		}
	}
	if len(batch) > 0 {
		flush()
	}
}

// checkHeld fails the benchmark unless the first and the last stream hold
// all their pushes: a footprint of a store that evicted or trimmed would
// be too small.
func checkHeld(b *testing.B, st Store, sh Shape) {
	for _, s := range []int64{1, int64(sh.Streams)} {
		r, err := st.Last(context.Background(), imcloud.UserStream(s), sh.Per)
		if err != nil || len(r.Entries) != sh.Per {
			b.Fatalf("stream %d holds %d pushes of %d (%v): the store dropped some", s, len(r.Entries), sh.Per, err)
		}
	}
}

// ProcessMemory returns this process's live heap and resident size,
// after a garbage collection that returned what it freed to the system
// (debug.FreeOSMemory): "heap" and, where /proc says, "rss".
func ProcessMemory() map[string]int64 {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := map[string]int64{"heap": int64(ms.HeapAlloc)}
	if rss, ok := selfRSS(); ok {
		m["rss"] = rss
	}
	return m
}

// selfRSS reads VmRSS from /proc/self/status.
func selfRSS() (int64, bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
