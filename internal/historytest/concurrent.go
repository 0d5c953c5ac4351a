package historytest

import (
	"testing"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// testConcurrent appends to several streams from as many goroutines while
// others read them: every stream ends with all its pushes, in order.
func testConcurrent(t *testing.T, h Harness) {
	const writers, batches, perBatch = 6, 25, 4
	ctx := ctxT(t)
	streams := make([]imcloud.Stream, writers)
	for i := range streams {
		streams[i] = imcloud.UserStream(int64(100 + i))
	}
	var g errgroup.Group
	for w, s := range streams {
		g.Go(func() error {
			off := int64(w)
			for b := 0; b < batches; b++ {
				items := make([]imcloud.HistoryAppend, perBatch)
				for i := range items {
					items[i] = imcloud.HistoryAppend{Stream: s, Entry: entry(off, h.Now())}
					off += writers
				}
				if err := h.Store.Append(ctx, items); err != nil {
					return err
				}
			}
			return nil
		})
		g.Go(func() error {
			for b := 0; b < batches; b++ {
				if _, err := h.Store.Last(ctx, s, 10); err != nil {
					return err
				}
				if _, err := h.Store.Read(ctx, s, imcloud.Position{Epoch: "x", Offset: 1}, 10); err != nil {
					return err
				}
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	for w, s := range streams {
		r := last(t, h.Store, s, 0)
		require.Len(t, r.Entries, batches*perBatch)
		for i, e := range r.Entries {
			assert.Equal(t, int64(w+i*writers), e.Offset)
		}
		assert.True(t, r.Complete)
	}
}
