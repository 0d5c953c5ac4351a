package job

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestWatermarkContiguous(t *testing.T) {
	p := newPartition(0)
	var es []*entry
	for _, off := range []int64{10, 11, 13, 14, 20} { // gaps are fine: order of arrival counts
		e := &entry{p: p, offset: off}
		p.add(e)
		es = append(es, e)
	}
	_, ok := p.toCommit()
	require.False(t, ok)

	require.False(t, p.markDone(es[2]), "13 done before 10: nothing moves")
	require.False(t, p.markDone(es[1]))
	_, ok = p.toCommit()
	require.False(t, ok)

	require.True(t, p.markDone(es[0]))
	off, ok := p.toCommit()
	require.True(t, ok)
	require.Equal(t, int64(13), off, "10, 11 and 13 done")
	p.setCommitted(off)
	_, ok = p.toCommit()
	require.False(t, ok)

	require.True(t, p.markDone(es[3]))
	off, _ = p.toCommit()
	require.Equal(t, int64(14), off)
	require.Equal(t, 1, p.pending())
	require.True(t, p.markDone(es[4]))
	off, _ = p.toCommit()
	require.Equal(t, int64(20), off)
	require.Equal(t, 0, p.pending())
}

func TestWatermarkManyCompacts(t *testing.T) {
	p := newPartition(3)
	const n = 10000
	es := make([]*entry, n)
	for i := range es {
		es[i] = &entry{p: p, offset: int64(i)}
		p.add(es[i])
	}
	// Finish in reverse halves: the second half first, then the first.
	for i := n / 2; i < n; i++ {
		p.markDone(es[i])
	}
	_, ok := p.toCommit()
	require.False(t, ok)
	for i := 0; i < n/2; i++ {
		p.markDone(es[i])
	}
	off, ok := p.toCommit()
	require.True(t, ok)
	require.Equal(t, int64(n-1), off)
	require.Equal(t, 0, p.pending())
}

// TestPartitionCommitLag: a record counts as uncommitted from its receipt
// until a commit covers it, through the watermark and a failing commit.
func TestPartitionCommitLag(t *testing.T) {
	p := newPartition(0)
	base := time.Now().UnixNano()
	sec := int64(time.Second)
	var es []*entry
	for i := range 3 {
		e := &entry{p: p, offset: int64(10 + i), received: base + int64(i)*sec}
		p.add(e)
		es = append(es, e)
	}
	now := base + 10*sec
	require.Equal(t, PartitionStats{Uncommitted: 3, Oldest: 10 * time.Second}, p.stats(now))

	require.True(t, p.markDone(es[0]))
	require.Equal(t, PartitionStats{Uncommitted: 3, Oldest: 10 * time.Second}, p.stats(now),
		"behind the watermark but not committed (a commit that fails leaves it so)")
	off, _ := p.toCommit()
	p.setCommitted(off)
	require.Equal(t, PartitionStats{Uncommitted: 2, Oldest: 9 * time.Second}, p.stats(now))

	// The watermark moves on while a commit of an earlier offset runs: the
	// records settled meanwhile stay counted until the next commit.
	require.True(t, p.markDone(es[1]))
	off, _ = p.toCommit()
	require.True(t, p.markDone(es[2]))
	p.setCommitted(off)
	require.Equal(t, PartitionStats{Uncommitted: 2, Oldest: 9 * time.Second}, p.stats(now))
	off, _ = p.toCommit()
	p.setCommitted(off)
	require.Equal(t, PartitionStats{}, p.stats(now))
}
