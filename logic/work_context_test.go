package logic_test

import (
	"context"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type traceKey struct{}

// publishCtx is a Queue that hands each Publish's context to the test and
// holds the Publish until release is closed.
func publishCtx(ctxs chan<- context.Context, release <-chan struct{}) funcQueue {
	return funcQueue{func(ctx context.Context, _ []*imcloud.Message) error {
		ctxs <- ctx
		<-release
		return nil
	}}
}

// TestPushKeepsContextValues: a synchronous push's work sees the caller's
// context values (a trace id reaches the Queue), is bounded by
// Config.Timeout, and goes on when the caller stops waiting.
func TestPushKeepsContextValues(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	release := make(chan struct{})
	e := newEnv(t, logic.Config{Queue: publishCtx(ctxs, release), Timeout: time.Hour})

	caller, cancel := context.WithCancel(context.WithValue(context.Background(), traceKey{}, "trace-1"))
	errc := make(chan error, 1)
	go func() {
		_, err := e.p.Push(caller, logic.ToRoom("live://1"), 1000, nil)
		errc <- err
	}()
	work := <-ctxs
	assert.Equal(t, "trace-1", work.Value(traceKey{}), "the caller's value reaches Publish")
	deadline, ok := work.Deadline()
	require.True(t, ok, "the work is bounded")
	assert.WithinDuration(t, time.Now().Add(time.Hour), deadline, time.Minute, "by Config.Timeout")

	cancel()
	require.ErrorIs(t, <-errc, context.Canceled, "the caller stops waiting")
	require.NoError(t, work.Err(), "the work goes on without the caller")
	assert.NoError(t, context.Cause(work), "the caller's cause is not the work's")
	close(release)
	require.NoError(t, e.p.Close())
	assert.Equal(t, uint64(1), e.p.Stats().Pushes, "the push completed after its caller left")
}

// TestPushWorkContextEnds: the work context ends at Config.Timeout, and
// so does a context a backend derives from it; the caller gets the
// Queue's error.
func TestPushWorkContextEnds(t *testing.T) {
	derived := make(chan error, 1)
	q := funcQueue{func(ctx context.Context, _ []*imcloud.Message) error {
		child, cancel := context.WithCancel(ctx)
		defer cancel()
		<-child.Done()
		derived <- context.Cause(child)
		return ctx.Err()
	}}
	e := newEnv(t, logic.Config{Queue: q, Timeout: 20 * time.Millisecond})
	ctx := context.WithValue(context.Background(), traceKey{}, "trace-2")
	_, err := e.p.Push(ctx, logic.ToAll(), 1000, nil)
	require.ErrorIs(t, err, logic.ErrQueue)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, <-derived, context.DeadlineExceeded)
}

// TestPushAsyncKeepsContextValues: an asynchronous push's work runs under
// the ctx it was given, values and all.
func TestPushAsyncKeepsContextValues(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	release := make(chan struct{})
	close(release)
	e := newEnv(t, logic.Config{Queue: publishCtx(ctxs, release)})
	ctx := context.WithValue(context.Background(), traceKey{}, "trace-3")
	done := make(chan error, 1)
	require.NoError(t, e.p.PushAsync(ctx, logic.ToMids(1), 1000, nil, func(_ logic.Result, err error) { done <- err }))
	assert.Equal(t, "trace-3", (<-ctxs).Value(traceKey{}))
	require.NoError(t, <-done)
}
