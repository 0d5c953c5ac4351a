// Package historytest is the conformance suite for imcloud's stream
// history stores (docs/design.md, recovery): logic's MemoryHistory and the
// Redis history both run it, so job (which appends) and cloud and logic
// (which read) rely on one set of semantics:
//
//   - an append of an offset already held with the same ID is a no-op (a
//     redelivery), also when it was trimmed since; another ID at a held
//     offset, an older offset never held and newer than the stream's
//     pushes (a queue reset), or another partition restarts the stream
//     under a new epoch holding only the new push;
//   - reads return the pushes after a position in offset order, at most
//     a limit; bounded by count and by age, a stream reports what it
//     dropped (trimmed) and returns what it still holds;
//   - pushes past their expiry are skipped, and not counted as missing;
//   - a position from the future, below -1, or of another epoch is
//     reported as such, with no entries; a first connect (no epoch) gets
//     the stream's epoch and top; an unknown stream gets an epoch that
//     later appends keep;
//   - a stream's metadata outlives its entries: an idle stream keeps its
//     epoch, and a client at its last offset missed nothing;
//   - streams are independent; the store is safe for concurrent use.
//
// Losing the store's data (a Redis restarted empty, the memory store's
// byte bound) is the implementations' own tests: it must show as a new
// epoch.
package historytest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Store is a history store under test.
type Store interface {
	Append(ctx context.Context, items []imcloud.HistoryAppend) error
	Read(ctx context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error)
	Last(ctx context.Context, s imcloud.Stream, n int) (imcloud.HistoryRead, error)
}

// Config is the bounds a subtest asks of its store; zero fields mean the
// store's defaults.
type Config struct {
	MaxLen int
	MaxAge time.Duration
}

// Harness is one fresh, empty store under test.
type Harness struct {
	Store Store
	// Now is the store's clock; the suite's pushes are accepted at it.
	Now func() time.Time
	// Advance lets time pass by d for the store's age bound: a fake clock
	// moved forward, or a real sleep for a real backend.
	Advance func(d time.Duration)
}

// Run runs the suite; newHarness is called once per subtest and must
// return an empty store with cfg's bounds.
func Run(t *testing.T, newHarness func(t *testing.T, cfg Config) Harness) {
	tests := []struct {
		name string
		cfg  Config
		fn   func(*testing.T, Harness)
	}{
		{"Redelivery", Config{}, testRedelivery},
		{"NewEpochOnOtherID", Config{}, testOtherID},
		{"NewEpochOnQueueReset", Config{}, testQueueReset},
		{"NewEpochOnPartitionChange", Config{}, testPartitionChange},
		{"Order", Config{}, testOrder},
		{"CountBound", Config{MaxLen: 5}, testCountBound},
		{"RedeliveryOfTrimmed", Config{MaxLen: 3}, testRedeliveryOfTrimmed},
		{"AgeBound", Config{MaxAge: ageBound}, testAgeBound},
		{"ExpiredSkipped", Config{}, testExpired},
		{"UnknownPosition", Config{}, testUnknownPosition},
		{"EpochChanged", Config{}, testEpochChanged},
		{"FirstConnect", Config{}, testFirstConnect},
		{"Last", Config{MaxLen: 10}, testLast},
		{"ReadLimit", Config{}, testReadLimit},
		{"StreamsIndependent", Config{}, testIndependent},
		{"InvalidInput", Config{}, testInvalid},
		{"Concurrent", Config{}, testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t, tc.cfg)) })
	}
}

// ageBound is the AgeBound subtest's MaxAge: short, since a real backend
// sleeps through it, with margins that a loaded machine keeps.
const ageBound = 500 * time.Millisecond

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	user = imcloud.UserStream(42)
	room = imcloud.RoomStream("live://1")
)

// entry is a push at off, accepted at acc.
func entry(off int64, acc time.Time) imcloud.HistoryEntry {
	return imcloud.HistoryEntry{Offset: off, ID: imcloud.NewMessageID(), Op: 1000,
		Body: []byte(fmt.Sprintf(`{"push":%d}`, off)), Accepted: acc}
}

// entries are pushes at offs, accepted at acc.
func entries(acc time.Time, offs ...int64) []imcloud.HistoryEntry {
	out := make([]imcloud.HistoryEntry, len(offs))
	for i, off := range offs {
		out[i] = entry(off, acc)
	}
	return out
}

// appendTo appends es to s from partition 0 and returns the epochs the
// store set.
func appendTo(t *testing.T, st Store, s imcloud.Stream, es ...imcloud.HistoryEntry) []string {
	t.Helper()
	items := make([]imcloud.HistoryAppend, len(es))
	for i, e := range es {
		items[i] = imcloud.HistoryAppend{Stream: s, Entry: e}
	}
	require.NoError(t, st.Append(ctxT(t), items))
	epochs := make([]string, len(items))
	for i, it := range items {
		require.NotEmpty(t, it.Epoch, "Append sets every item's epoch")
		epochs[i] = it.Epoch
	}
	return epochs
}

// oneEpoch appends and checks that every item got the same epoch.
func oneEpoch(t *testing.T, st Store, s imcloud.Stream, es ...imcloud.HistoryEntry) string {
	t.Helper()
	epochs := appendTo(t, st, s, es...)
	for _, e := range epochs {
		require.Equal(t, epochs[0], e)
	}
	return epochs[0]
}

func read(t *testing.T, st Store, s imcloud.Stream, epoch string, off int64, limit int) imcloud.HistoryRead {
	t.Helper()
	r, err := st.Read(ctxT(t), s, imcloud.Position{Epoch: epoch, Offset: off}, limit)
	require.NoError(t, err)
	return r
}

func last(t *testing.T, st Store, s imcloud.Stream, n int) imcloud.HistoryRead {
	t.Helper()
	r, err := st.Last(ctxT(t), s, n)
	require.NoError(t, err)
	return r
}

// assertEntries checks got against want: every field, times to the
// millisecond (the Redis store keeps milliseconds).
func assertEntries(t *testing.T, want, got []imcloud.HistoryEntry) {
	t.Helper()
	require.Len(t, got, len(want), "offsets %v, want %v", offsets(got), offsets(want))
	for i := range want {
		w, g := want[i], got[i]
		assert.Equal(t, w.Offset, g.Offset)
		assert.Equal(t, w.ID, g.ID, "offset %d", w.Offset)
		assert.Equal(t, w.Op, g.Op)
		assert.Equal(t, string(w.Body), string(g.Body))
		assert.Equal(t, w.Accepted.UnixMilli(), g.Accepted.UnixMilli(), "offset %d accepted", w.Offset)
		assert.Equal(t, w.Expires.IsZero(), g.Expires.IsZero(), "offset %d expires", w.Offset)
		if !w.Expires.IsZero() {
			assert.Equal(t, w.Expires.UnixMilli(), g.Expires.UnixMilli())
		}
	}
}

// assertRefused checks a read that returned nothing, for reason, with the
// stream's epoch and top.
func assertRefused(t *testing.T, r imcloud.HistoryRead, reason, epoch string, top int64) {
	t.Helper()
	assert.False(t, r.Complete)
	assert.Equal(t, reason, r.Reason)
	assert.Empty(t, r.Entries)
	assert.Equal(t, epoch, r.Epoch)
	assert.Equal(t, top, r.Top)
}

func offsets(es []imcloud.HistoryEntry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.Offset
	}
	return out
}

func testRedelivery(t *testing.T, h Harness) {
	es := entries(h.Now(), 10, 11, 12)
	epoch := oneEpoch(t, h.Store, user, es...)

	// A job restarted before committing redelivers, with the same offsets
	// and IDs: the store keeps one copy and the epoch.
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, es[1:]...))
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, es...))
	more := entry(13, h.Now())
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, es[2], more))

	r := read(t, h.Store, user, epoch, 9, 0)
	assert.True(t, r.Complete)
	assert.Equal(t, epoch, r.Epoch)
	assert.Equal(t, int64(13), r.Top)
	assertEntries(t, append(es, more), r.Entries)
}

func testOtherID(t *testing.T, h Harness) {
	es := entries(h.Now(), 10, 11, 12)
	old := oneEpoch(t, h.Store, user, es...)

	// Offset 11 again with another ID: the queue was reset. The stream
	// starts over with only the new push.
	other := entry(11, h.Now())
	epoch := oneEpoch(t, h.Store, user, other)
	require.NotEqual(t, old, epoch)

	assertRefused(t, read(t, h.Store, user, old, 12, 0), imcloud.ReasonEpochChanged, epoch, 11)
	assertEntries(t, []imcloud.HistoryEntry{other}, last(t, h.Store, user, 0).Entries)
}

func testQueueReset(t *testing.T, h Harness) {
	acc := h.Now()
	old := oneEpoch(t, h.Store, user, entries(acc, 500, 700)...)
	// Offset 3 was never this stream's, and its push is newer than the
	// stream's: the queue restarted its offsets.
	reset := entry(3, acc.Add(time.Second))
	epoch := oneEpoch(t, h.Store, user, reset)
	require.NotEqual(t, old, epoch)
	r := last(t, h.Store, user, 0)
	assert.Equal(t, int64(3), r.Top)
	assertEntries(t, []imcloud.HistoryEntry{reset}, r.Entries)
}

func testPartitionChange(t *testing.T, h Harness) {
	ctx := ctxT(t)
	first := entry(10, h.Now())
	items := []imcloud.HistoryAppend{{Stream: room, Partition: 2, Entry: first}}
	require.NoError(t, h.Store.Append(ctx, items))
	old := items[0].Epoch
	require.NotEmpty(t, old)

	// The partition count changed: the room's pushes now come from
	// another partition, whose offsets are not comparable.
	moved := entry(11, h.Now())
	items = []imcloud.HistoryAppend{{Stream: room, Partition: 5, Entry: moved}}
	require.NoError(t, h.Store.Append(ctx, items))
	require.NotEqual(t, old, items[0].Epoch)

	r := read(t, h.Store, room, old, 10, 0)
	assert.Equal(t, imcloud.ReasonEpochChanged, r.Reason)
	assertEntries(t, []imcloud.HistoryEntry{moved}, last(t, h.Store, room, 0).Entries)
}

func testOrder(t *testing.T, h Harness) {
	ctx := ctxT(t)
	var wantUser, wantRoom []imcloud.HistoryEntry
	off := int64(0)
	for batch := 0; batch < 10; batch++ {
		var items []imcloud.HistoryAppend
		for i := 0; i < 7; i++ {
			off += 1 + int64(i%3) // offsets grow, not by one: streams share partitions
			e := entry(off, h.Now())
			s := user
			if i%2 == 1 {
				s, wantRoom = room, append(wantRoom, e)
			} else {
				wantUser = append(wantUser, e)
			}
			items = append(items, imcloud.HistoryAppend{Stream: s, Entry: e})
		}
		require.NoError(t, h.Store.Append(ctx, items))
	}
	ru := read(t, h.Store, user, last(t, h.Store, user, 1).Epoch, -1, 0)
	assert.True(t, ru.Complete)
	assertEntries(t, wantUser, ru.Entries)
	rr := read(t, h.Store, room, last(t, h.Store, room, 1).Epoch, -1, 0)
	assert.True(t, rr.Complete)
	assertEntries(t, wantRoom, rr.Entries)
}

func testCountBound(t *testing.T, h Harness) {
	offs := []int64{10, 13, 17, 20, 21, 30, 31, 35}
	es := entries(h.Now(), offs...)
	epoch := oneEpoch(t, h.Store, user, es[:4]...)
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, es[4:]...))
	held := es[3:] // MaxLen 5: 10, 13 and 17 were dropped

	for _, since := range []int64{13, 16} {
		r := read(t, h.Store, user, epoch, since, 0)
		assert.False(t, r.Complete, "17 was dropped after %d", since)
		assert.Equal(t, imcloud.ReasonTrimmed, r.Reason)
		assertEntries(t, held, r.Entries)
	}

	// A client that saw 17 (or anything up to the next held push) missed
	// nothing.
	for _, since := range []int64{17, 18, 19} {
		r := read(t, h.Store, user, epoch, since, 0)
		assert.True(t, r.Complete, "since %d", since)
		assert.Empty(t, r.Reason)
		assertEntries(t, held, r.Entries)
	}
	r := read(t, h.Store, user, epoch, 30, 0)
	assert.True(t, r.Complete)
	assertEntries(t, es[6:], r.Entries)
	r = read(t, h.Store, user, epoch, -1, 0)
	assert.Equal(t, imcloud.ReasonTrimmed, r.Reason)
	assertEntries(t, held, r.Entries)
	assertEntries(t, held, last(t, h.Store, user, 0).Entries)
}

func testRedeliveryOfTrimmed(t *testing.T, h Harness) {
	es := entries(h.Now(), 1, 2, 3, 4, 5)
	epoch := oneEpoch(t, h.Store, user, es...)
	// A redelivery reaching back past what the bound kept: 1 and 2 are no
	// longer held, but they are older than what is, so they are taken for
	// what they are, not for a queue reset.
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, es...))
	assertEntries(t, es[2:], last(t, h.Store, user, 0).Entries)
}

func testAgeBound(t *testing.T, h Harness) {
	now := h.Now()
	old := entry(10, now.Add(-ageBound+100*time.Millisecond))
	young := entry(11, now)
	epoch := oneEpoch(t, h.Store, user, old, young)

	h.Advance(200 * time.Millisecond) // old is 600 ms old, young 200
	r := read(t, h.Store, user, epoch, 9, 0)
	assert.False(t, r.Complete)
	assert.Equal(t, imcloud.ReasonTrimmed, r.Reason)
	assertEntries(t, []imcloud.HistoryEntry{young}, r.Entries)
	r = read(t, h.Store, user, epoch, 10, 0)
	assert.True(t, r.Complete)
	assertEntries(t, []imcloud.HistoryEntry{young}, r.Entries)

	// Everything aged out; the stream's metadata stays: same epoch and
	// top, a client at the last offset missed nothing, one before it
	// missed what aged.
	h.Advance(ageBound + 100*time.Millisecond)
	r = read(t, h.Store, user, epoch, 11, 0)
	assert.True(t, r.Complete)
	assert.Equal(t, epoch, r.Epoch)
	assert.Equal(t, int64(11), r.Top)
	assert.Empty(t, r.Entries)
	r = read(t, h.Store, user, epoch, 10, 0)
	assert.False(t, r.Complete)
	assert.Equal(t, imcloud.ReasonTrimmed, r.Reason)
	assert.Empty(t, r.Entries)
	assert.Empty(t, last(t, h.Store, user, 0).Entries)

	// The stream goes on in the same epoch.
	next := entry(12, h.Now())
	assert.Equal(t, epoch, oneEpoch(t, h.Store, user, next))
	r = read(t, h.Store, user, epoch, 11, 0)
	assert.True(t, r.Complete)
	assertEntries(t, []imcloud.HistoryEntry{next}, r.Entries)
}

func testExpired(t *testing.T, h Harness) {
	now := h.Now()
	es := entries(now, 1, 2, 3, 4)
	es[1].Expires = now.Add(-time.Millisecond) // already past
	es[2].Expires = now.Add(time.Hour)
	epoch := oneEpoch(t, h.Store, user, es...)
	want := []imcloud.HistoryEntry{es[0], es[2], es[3]}

	r := read(t, h.Store, user, epoch, 0, 0)
	assert.True(t, r.Complete, "an expired push is not missing")
	assertEntries(t, want, r.Entries)
	r = read(t, h.Store, user, epoch, 1, 0)
	assert.True(t, r.Complete)
	assertEntries(t, want[1:], r.Entries)
	assertEntries(t, want, last(t, h.Store, user, 0).Entries)
	assertEntries(t, want[1:], last(t, h.Store, user, 2).Entries)
	// A limit counts what is returned, not what expired.
	r = read(t, h.Store, user, epoch, 0, 2)
	assertEntries(t, want[:2], r.Entries)
	assert.False(t, r.Complete)
}

func testUnknownPosition(t *testing.T, h Harness) {
	epoch := oneEpoch(t, h.Store, user, entries(h.Now(), 5, 6)...)
	for _, off := range []int64{7, 1 << 40, -2, -1 << 40} {
		assertRefused(t, read(t, h.Store, user, epoch, off, 0), imcloud.ReasonUnknownPosition, epoch, 6)
	}
	// -1 is the position before the first push: everything follows it.
	r := read(t, h.Store, user, epoch, -1, 0)
	assert.True(t, r.Complete)
	assert.Len(t, r.Entries, 2)
	// So is a position inside the stream between two pushes.
	r = read(t, h.Store, user, epoch, 0, 0)
	assert.True(t, r.Complete)
	assert.Len(t, r.Entries, 2)
}

func testEpochChanged(t *testing.T, h Harness) {
	epoch := oneEpoch(t, h.Store, user, entries(h.Now(), 5, 6)...)
	for _, other := range []string{"not-an-epoch", epoch + "x"} {
		assertRefused(t, read(t, h.Store, user, other, 5, 0), imcloud.ReasonEpochChanged, epoch, 6)
	}
}

func testFirstConnect(t *testing.T, h Harness) {
	epoch := oneEpoch(t, h.Store, user, entries(h.Now(), 5, 6)...)
	r := read(t, h.Store, user, "", 0, 0)
	assert.True(t, r.Complete, "a first connect asks for nothing")
	assert.Empty(t, r.Entries)
	assert.Equal(t, epoch, r.Epoch)
	assert.Equal(t, int64(6), r.Top)

	// A stream nobody pushed to yet: an epoch, kept by later reads and
	// appends, so a client that connected before the first push gets it
	// on reconnect.
	r = read(t, h.Store, room, "", 0, 0)
	assert.True(t, r.Complete)
	require.NotEmpty(t, r.Epoch)
	assert.NotEqual(t, epoch, r.Epoch)
	assert.Equal(t, int64(-1), r.Top)
	empty := r.Epoch
	r = read(t, h.Store, room, empty, -1, 0)
	assert.True(t, r.Complete)
	assert.Empty(t, r.Entries)
	assert.Equal(t, empty, r.Epoch)
	assert.Equal(t, empty, last(t, h.Store, room, 5).Epoch)

	first := entry(9, h.Now())
	assert.Equal(t, empty, oneEpoch(t, h.Store, room, first))
	r = read(t, h.Store, room, empty, -1, 0)
	assert.True(t, r.Complete)
	assertEntries(t, []imcloud.HistoryEntry{first}, r.Entries)
}

func testLast(t *testing.T, h Harness) {
	es := entries(h.Now(), 3, 4, 8, 9, 12)
	epoch := oneEpoch(t, h.Store, room, es...)
	r := last(t, h.Store, room, 2)
	assert.Equal(t, epoch, r.Epoch)
	assert.Equal(t, int64(12), r.Top)
	assertEntries(t, es[3:], r.Entries)
	assert.False(t, r.Complete, "older pushes were left out")
	r = last(t, h.Store, room, 5)
	assertEntries(t, es, r.Entries)
	assert.True(t, r.Complete)
	assertEntries(t, es, last(t, h.Store, room, 100).Entries)
	assertEntries(t, es, last(t, h.Store, room, 0).Entries)

	// Once the bound dropped pushes, nothing is the whole epoch.
	more := entries(h.Now(), 20, 21, 22, 23, 24, 25)
	oneEpoch(t, h.Store, room, more...)
	r = last(t, h.Store, room, 0)
	assertEntries(t, append(es[1:], more...), r.Entries)
	assert.False(t, r.Complete)
	r = last(t, h.Store, imcloud.UserStream(7), 3)
	assert.Empty(t, r.Entries)
	assert.Equal(t, int64(-1), r.Top)
	assert.NotEmpty(t, r.Epoch)
}

func testReadLimit(t *testing.T, h Harness) {
	es := entries(h.Now(), 1, 2, 3, 4, 5)
	epoch := oneEpoch(t, h.Store, user, es...)
	r := read(t, h.Store, user, epoch, 0, 2)
	assert.False(t, r.Complete, "the limit left pushes out")
	assert.Empty(t, r.Reason)
	assertEntries(t, es[:2], r.Entries)
	// Reading on from the last one returned gets the rest.
	r = read(t, h.Store, user, epoch, 2, 3)
	assert.True(t, r.Complete)
	assertEntries(t, es[2:], r.Entries)
	r = read(t, h.Store, user, epoch, 2, 10)
	assert.True(t, r.Complete)
	assertEntries(t, es[2:], r.Entries)
}

func testIndependent(t *testing.T, h Harness) {
	u := oneEpoch(t, h.Store, user, entries(h.Now(), 1, 3)...)
	rm := oneEpoch(t, h.Store, room, entries(h.Now(), 2)...)
	other := imcloud.UserStream(43)
	o := oneEpoch(t, h.Store, other, entries(h.Now(), 4)...)
	assert.NotEqual(t, u, rm)
	assert.NotEqual(t, u, o)

	// A reset of one stream leaves the others alone.
	oneEpoch(t, h.Store, user, entry(3, h.Now()))
	assert.Equal(t, []int64{2}, offsets(read(t, h.Store, room, rm, -1, 0).Entries))
	assert.Equal(t, []int64{4}, offsets(read(t, h.Store, other, o, -1, 0).Entries))
	assert.Equal(t, imcloud.ReasonEpochChanged, read(t, h.Store, user, u, 1, 0).Reason)
	// An epoch is not a key into another stream.
	assert.Equal(t, imcloud.ReasonEpochChanged, read(t, h.Store, other, rm, -1, 0).Reason)
}

func testInvalid(t *testing.T, h Harness) {
	ctx := ctxT(t)
	ok := imcloud.HistoryAppend{Stream: user, Entry: entry(1, h.Now())}
	for _, bad := range []imcloud.HistoryAppend{
		{Stream: "x:1", Entry: entry(1, h.Now())},
		{Stream: "u:0", Entry: entry(1, h.Now())},
		{Stream: "", Entry: entry(1, h.Now())},
		{Stream: user, Entry: entry(-1, h.Now())},
	} {
		err := h.Store.Append(ctx, []imcloud.HistoryAppend{ok, bad})
		assert.Error(t, err, "%+v", bad)
	}
	// Nothing of a refused batch was stored.
	assert.Equal(t, int64(-1), last(t, h.Store, user, 0).Top)

	_, err := h.Store.Read(ctx, "u:-1", imcloud.Position{}, 0)
	assert.ErrorIs(t, err, imcloud.ErrInvalidStream)
	_, err = h.Store.Last(ctx, "r:nokey", 1)
	assert.ErrorIs(t, err, imcloud.ErrInvalidStream)

	ended, cancel := context.WithCancel(ctx)
	cancel()
	assert.Error(t, h.Store.Append(ended, []imcloud.HistoryAppend{ok}))
	_, err = h.Store.Read(ended, user, imcloud.Position{}, 0)
	assert.Error(t, err)
	_, err = h.Store.Last(ended, user, 1)
	assert.Error(t, err)
	require.NoError(t, h.Store.Append(ctx, nil))
}
