package logic_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/historytest"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryHistoryConformance(t *testing.T) {
	historytest.Run(t, func(t *testing.T, cfg historytest.Config) historytest.Harness {
		clk := &fakeClock{now: time.Unix(1700000000, 0)}
		h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{MaxLen: cfg.MaxLen, MaxAge: cfg.MaxAge, Now: clk.Now})
		return historytest.Harness{Store: h, Now: clk.Now, Advance: clk.Advance}
	})
}

func histPush(s imcloud.Stream, off int64, body int, at time.Time) imcloud.HistoryAppend {
	return imcloud.HistoryAppend{Stream: s, Entry: imcloud.HistoryEntry{
		Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: make([]byte, body), Accepted: at}}
}

// TestMemoryHistoryMaxBytes checks that the byte bound evicts whole
// streams, least recently appended first, and that an evicted stream
// comes back under a new epoch.
func TestMemoryHistoryMaxBytes(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1700000000, 0)}
	const maxBytes = 64 << 10
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{MaxBytes: maxBytes, Now: clk.Now})
	epochs := map[imcloud.Stream]string{}
	for i := int64(1); i <= 100; i++ {
		s := imcloud.UserStream(i)
		items := []imcloud.HistoryAppend{histPush(s, 2*i, 1000, clk.Now()), histPush(s, 2*i+1, 1000, clk.Now())}
		require.NoError(t, h.Append(ctx, items))
		epochs[s] = items[0].Epoch
		clk.Advance(time.Millisecond)
		assert.LessOrEqual(t, h.Stats().Bytes, int64(maxBytes))
	}
	st := h.Stats()
	assert.Positive(t, st.Evicted)
	assert.Equal(t, 100, st.Streams+int(st.Evicted))
	assert.Equal(t, 2*st.Streams, st.Entries)

	// The newest streams are whole; the oldest were evicted and start
	// over under a new epoch.
	r, err := h.Read(ctx, imcloud.UserStream(100), imcloud.Position{Epoch: epochs[imcloud.UserStream(100)], Offset: 199}, 0)
	require.NoError(t, err)
	assert.True(t, r.Complete)
	assert.Len(t, r.Entries, 2)
	r, err = h.Read(ctx, imcloud.UserStream(1), imcloud.Position{Epoch: epochs[imcloud.UserStream(1)], Offset: 2}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonEpochChanged, r.Reason)
	assert.NotEqual(t, epochs[imcloud.UserStream(1)], r.Epoch)
	assert.Equal(t, int64(-1), r.Top)

	// A stream appended to again becomes the most recent: it outlives
	// streams appended to after it was first.
	s90 := imcloud.UserStream(90)
	require.NoError(t, h.Append(ctx, []imcloud.HistoryAppend{histPush(s90, 500, 10, clk.Now())}))
	for i := int64(101); i <= 120; i++ {
		s := imcloud.UserStream(i)
		require.NoError(t, h.Append(ctx, []imcloud.HistoryAppend{histPush(s, 2*i, 1000, clk.Now()), histPush(s, 2*i+1, 1000, clk.Now())}))
	}
	r, err = h.Read(ctx, s90, imcloud.Position{Epoch: epochs[s90], Offset: 181}, 0)
	require.NoError(t, err)
	assert.True(t, r.Complete, "%+v", r)
	assert.Len(t, r.Entries, 1)
	r, err = h.Read(ctx, imcloud.UserStream(91), imcloud.Position{Epoch: epochs[imcloud.UserStream(91)], Offset: 183}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonEpochChanged, r.Reason)
}

// TestMemoryHistoryOneStreamOverMaxBytes checks that a stream larger
// than the byte bound on its own loses its oldest pushes, not everything.
func TestMemoryHistoryOneStreamOverMaxBytes(t *testing.T) {
	ctx := context.Background()
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{MaxBytes: 10 << 10})
	s := imcloud.RoomStream("live://big")
	var epoch string
	for off := int64(0); off < 50; off++ {
		items := []imcloud.HistoryAppend{histPush(s, off, 1000, time.Now())}
		require.NoError(t, h.Append(ctx, items))
		if epoch == "" {
			epoch = items[0].Epoch
		}
		require.Equal(t, epoch, items[0].Epoch)
	}
	assert.LessOrEqual(t, h.Stats().Bytes, int64(10<<10))
	r, err := h.Read(ctx, s, imcloud.Position{Epoch: epoch, Offset: 0}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonTrimmed, r.Reason)
	require.NotEmpty(t, r.Entries)
	assert.Equal(t, int64(49), r.Entries[len(r.Entries)-1].Offset)
}

// TestMemoryHistorySweep checks that idle streams give their entries back
// after MaxAge and their metadata after MetaTTL, with no reads.
func TestMemoryHistorySweep(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Unix(1700000000, 0)}
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{MaxAge: time.Minute, MetaTTL: time.Hour, Now: clk.Now})
	for i := int64(1); i <= 10; i++ {
		require.NoError(t, h.Append(ctx, []imcloud.HistoryAppend{histPush(imcloud.UserStream(i), i, 100, clk.Now())}))
	}
	assert.Equal(t, 10, h.Stats().Entries)

	clk.Advance(2 * time.Minute)
	require.NoError(t, h.Append(ctx, []imcloud.HistoryAppend{histPush(imcloud.UserStream(99), 99, 100, clk.Now())}))
	st := h.Stats()
	assert.Equal(t, 1, st.Entries, "idle streams' entries aged out")
	assert.Equal(t, 11, st.Streams, "their metadata stays")

	clk.Advance(2 * time.Hour)
	require.NoError(t, h.Append(ctx, []imcloud.HistoryAppend{histPush(imcloud.UserStream(99), 100, 100, clk.Now())}))
	st = h.Stats()
	assert.Equal(t, 1, st.Streams, "metadata idle past MetaTTL is gone")
	assert.Equal(t, 1, st.Entries)
}

func BenchmarkMemoryHistoryAppend(b *testing.B) {
	historytest.BenchAppend(b, logic.NewMemoryHistory(logic.MemoryHistoryConfig{}))
}

func BenchmarkMemoryHistoryRead(b *testing.B) {
	historytest.BenchRead(b, logic.NewMemoryHistory(logic.MemoryHistoryConfig{}))
}

func ExampleMemoryHistory() {
	ctx := context.Background()
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
	s := imcloud.UserStream(42)
	items := []imcloud.HistoryAppend{
		{Stream: s, Entry: imcloud.HistoryEntry{Offset: 7, ID: imcloud.NewMessageID(), Op: 1000, Body: []byte("a")}},
		{Stream: s, Entry: imcloud.HistoryEntry{Offset: 9, ID: imcloud.NewMessageID(), Op: 1000, Body: []byte("b")}},
	}
	_ = h.Append(ctx, items) // job appends what it consumed, in offset order
	r, _ := h.Read(ctx, s, imcloud.Position{Epoch: items[0].Epoch, Offset: 7}, 0)
	for _, e := range r.Entries {
		fmt.Println(e.Offset, string(e.Body))
	}
	fmt.Println("complete:", r.Complete)
	// Output:
	// 9 b
	// complete: true
}
