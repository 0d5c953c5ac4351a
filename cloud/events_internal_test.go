package cloud

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
)

// TestEventQueueFlushGivesUp: close waits for a stuck sink at most its
// timeout; what is left is dropped and counted, and an event emitted
// after close is dropped too.
func TestEventQueueFlushGivesUp(t *testing.T) {
	release := make(chan struct{})
	got := make(chan imcloud.Event, 10)
	q := newEventQueue(EventFunc(func(ev imcloud.Event) { <-release; got <- ev }), 10)
	for i := range 5 {
		q.emit(imcloud.Event{Key: string(rune('a' + i))})
	}
	start := time.Now()
	q.close(50 * time.Millisecond)
	require.Less(t, time.Since(start), 5*time.Second)
	q.emit(imcloud.Event{Key: "late"})
	close(release)
	<-q.done
	require.Len(t, got, 1, "the event the sink held")
	require.Equal(t, uint64(5), q.droppedCount(), "four left, one late")
}

// TestEventQueueFlush: close hands every queued event to the sink, in
// order, before it returns.
func TestEventQueueFlush(t *testing.T) {
	var got []string
	q := newEventQueue(EventFunc(func(ev imcloud.Event) { got = append(got, ev.Key) }), 1000)
	var want []string
	for i := range 500 {
		k := string(rune('a'+i%26)) + string(rune('0'+i%10))
		want = append(want, k)
		q.emit(imcloud.Event{Key: k})
	}
	q.close(5 * time.Second)
	require.Equal(t, want, got)
	require.Zero(t, q.droppedCount())
	var nilQ *eventQueue
	nilQ.emit(imcloud.Event{})
	nilQ.close(time.Second)
}
