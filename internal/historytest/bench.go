package historytest

import (
	"context"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
)

// BenchAppend measures appends of batches of 64 pushes of 100 bytes
// spread over 1,000 user streams, as job makes them: b.N batches, each
// one Append call. It reports appends/s.
func BenchAppend(b *testing.B, st Store) {
	ctx := context.Background()
	const batch = 64
	body := make([]byte, 100)
	items := make([]imcloud.HistoryAppend, batch)
	b.ReportAllocs()
	off := int64(0)
	for b.Loop() {
		for i := range items {
			items[i] = imcloud.HistoryAppend{Stream: imcloud.UserStream(1 + off%1000), Entry: imcloud.HistoryEntry{
				Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: body, Accepted: time.Now()}}
			off++
		}
		if err := st.Append(ctx, items); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "appends/s")
}

// BenchRead measures the read of a client that missed the last 750
// pushes of its stream (100 streams of 1,000 pushes of 100 bytes).
func BenchRead(b *testing.B, st Store) {
	ctx := context.Background()
	const streams, per, missed = 100, 1000, 750
	epochs := make([]string, streams)
	body := make([]byte, 100)
	for s := range epochs {
		items := make([]imcloud.HistoryAppend, per)
		for i := range items {
			items[i] = imcloud.HistoryAppend{Stream: imcloud.UserStream(int64(s + 1)), Entry: imcloud.HistoryEntry{
				Offset: int64(i), ID: imcloud.NewMessageID(), Op: 1000, Body: body, Accepted: time.Now()}}
		}
		if err := st.Append(ctx, items); err != nil {
			b.Fatal(err)
		}
		epochs[s] = items[0].Epoch
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s := i % streams
		i++
		since := imcloud.Position{Epoch: epochs[s], Offset: per - missed - 1}
		r, err := st.Read(ctx, imcloud.UserStream(int64(s+1)), since, 0)
		if err != nil || len(r.Entries) != missed || !r.Complete {
			b.Fatalf("%d entries, complete %v, %v", len(r.Entries), r.Complete, err)
		}
	}
}
