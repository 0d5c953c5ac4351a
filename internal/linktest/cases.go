package linktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

// errHung stands for a Deliver that did not return within Wait.
var errHung = errors.New("linktest: Deliver did not return")

// call runs Deliver and returns its error, or errHung (reported as a test
// error) if it has not returned within Wait. It may be called from any
// goroutine.
func (s *suite) call(ctx context.Context, msgs []*imcloud.Message) error {
	done := make(chan error, 1)
	go func() { done <- s.h.Link.Deliver(ctx, msgs) }()
	t := time.NewTimer(Wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		s.t.Errorf("Deliver of %d messages did not return within %v", len(msgs), Wait)
		return errHung
	}
}

// routed is what each of the suite's clients should receive from msgs,
// in order (paced broadcasts aside): keys messages reach their keys, room
// messages their room, broadcasts every client.
func (s *suite) routed(msgs []*imcloud.Message) map[*receiver][]string {
	out := map[*receiver][]string{}
	for _, m := range msgs {
		for _, r := range s.clients {
			switch {
			case m.Kind == imcloud.KindKeys && slices.Contains(m.Keys, r.key),
				m.Kind == imcloud.KindRoom && m.Room == r.room,
				m.Kind == imcloud.KindBroadcast:
				out[r] = append(out[r], string(m.Body))
			}
		}
	}
	return out
}

// requireRouted checks that every client received what routed says, in
// order, and nothing else.
func (s *suite) requireRouted(got map[*receiver][]string, msgs []*imcloud.Message) {
	s.t.Helper()
	want := s.routed(msgs)
	for _, r := range s.clients {
		require.Equal(s.t, want[r], got[r], "client %s (room %q)", r.key, r.room)
	}
}

// dialFour connects the clients most tests use: k1 and k2 in room
// live://1, k3 in live://2, k4 in no room.
func (s *suite) dialFour() {
	s.dial("k1", "live://1")
	s.dial("k2", "live://1")
	s.dial("k3", "live://2")
	s.dial("k4", "")
}

func testKeys(t *testing.T, s *suite) {
	s.dialFour()
	msgs := []*imcloud.Message{
		s.keys("to k1 and k3", "k1", "k3"),
		s.keys("to k2", "k2"),
		s.keys("to nobody here", "nobody"),
		s.keys("to k4 and nobody", "nobody", "k4"),
	}
	s.deliver(msgs[:2]...)
	s.deliver(msgs[2:]...)
	s.requireRouted(s.fence(), msgs)
}

func testRoom(t *testing.T, s *suite) {
	s.dialFour()
	msgs := []*imcloud.Message{
		room("live://1", "to room 1"),
		room("live://2", "to room 2"),
		room("live://3", "to an empty room"),
	}
	s.deliver(msgs...)
	s.requireRouted(s.fence(), msgs)
}

func testBroadcast(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	b := s.dial("k2", "live://2")
	c := s.dial("k3", "")
	s.deliver(broadcast("at once", 0), broadcast("paced", 50))
	for _, r := range []*receiver{a, b, c} {
		r.waitAll(t, "at once", "paced")
	}
	got := s.fence()
	for _, r := range []*receiver{a, b, c} {
		require.Equal(t, []string{"at once", "paced"}, sorted(got[r]), "client %s: each broadcast once", r.key)
	}
}

// mixed is n rounds of keys and room messages to the clients of
// testBatchInOrder and testCallsInOrder, with runs of one room's messages
// in a row (which the node may merge) and an unpaced broadcast.
func (s *suite) mixed(n int) []*imcloud.Message {
	var msgs []*imcloud.Message
	for i := 0; i < n; i++ {
		msgs = append(msgs,
			s.keys(fmt.Sprint("k1-", i), "k1"),
			room("live://1", fmt.Sprint("r1-", i)),
			s.keys(fmt.Sprint("k2k3-", i), "k2", "k3"),
			room("live://2", fmt.Sprint("r2-", i)),
			room("live://2", fmt.Sprint("r2b-", i)),
			room("live://1", fmt.Sprint("r1b-", i)),
		)
		if i%50 == 0 {
			msgs = append(msgs, broadcast(fmt.Sprint("all-", i), 0))
		}
	}
	return msgs
}

func testBatchInOrder(t *testing.T, s *suite) {
	s.dialFour()
	msgs := s.mixed(150) // 900 messages, up to 450 per connection
	s.deliver(msgs...)
	s.requireRouted(s.fence(), msgs)
}

func testCallsInOrder(t *testing.T, s *suite) {
	s.dialFour()
	msgs := s.mixed(50)
	for i := 0; i < len(msgs); i += 3 {
		s.deliver(msgs[i:min(i+3, len(msgs))]...)
	}
	s.requireRouted(s.fence(), msgs)
}

func testConcurrent(t *testing.T, s *suite) {
	const goroutines, calls = 8, 40
	rs := make([]*receiver, goroutines)
	for g := range rs {
		rs[g] = s.dial(fmt.Sprint("k", g), "live://all")
	}
	ctx := context.Background() // s.call bounds each call
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*calls)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				// Each goroutine's keys messages go to its own client, its
				// room messages to everyone.
				errs <- s.call(ctx, []*imcloud.Message{
					s.keys(fmt.Sprint(g, "-", i), fmt.Sprint("k", g)),
					room("live://all", fmt.Sprint(g, "-", i, "-room")),
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err, "every concurrent call acknowledged")
	}
	got := s.fence()
	seq := func(g int, suffix string) []string {
		out := make([]string, calls)
		for i := range out {
			out[i] = fmt.Sprint(g, "-", i, suffix)
		}
		return out
	}
	from := func(got []string, g int, room bool) []string {
		var out []string
		for _, b := range got {
			if strings.HasPrefix(b, fmt.Sprint(g, "-")) && strings.HasSuffix(b, "-room") == room {
				out = append(out, b)
			}
		}
		return out
	}
	for g, r := range rs {
		require.Len(t, got[r], calls*(goroutines+1), "client %s: nothing lost, nothing twice", r.key)
		require.Equal(t, seq(g, ""), from(got[r], g, false), "client %s: its keys messages, in order", r.key)
		for h := range rs {
			require.Equal(t, seq(h, "-room"), from(got[r], h, true),
				"client %s: goroutine %d's room messages, in order", r.key, h)
		}
	}
}

func testEmpty(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	require.NoError(t, s.call(s.ctx(), nil))
	require.NoError(t, s.call(s.ctx(), []*imcloud.Message{}))
	require.Empty(t, s.fence()[a])
}

// atMostOnce checks that got holds each body at most once, and only
// bodies of sent.
func atMostOnce(t *testing.T, got []string, sent ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, b := range got {
		require.Contains(t, sent, b, "only what was sent")
		require.False(t, seen[b], "%q arrived twice", b)
		seen[b] = true
	}
}

func testContextDone(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, s.call(ctx, []*imcloud.Message{room("live://1", "cancelled")}), context.Canceled)
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	require.ErrorIs(t, s.call(ctx, []*imcloud.Message{s.keys("expired", "k1")}), context.DeadlineExceeded)
	// The link still works, and what the failed calls delivered (the
	// contract does not say) arrives once, before what came after.
	s.deliver(room("live://1", "after"))
	got := s.fence()[a]
	require.NotEmpty(t, got)
	require.Equal(t, "after", got[len(got)-1])
	atMostOnce(t, got, "cancelled", "expired", "after")
}

func testCancelInFlight(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	const goroutines, batch = 4, 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var started, done sync.WaitGroup
	results := make([]error, goroutines)
	var sent []string
	for g := 0; g < goroutines; g++ {
		msgs := make([]*imcloud.Message, batch)
		for i := range msgs {
			msgs[i] = room("live://1", fmt.Sprint(g, "-", i))
			sent = append(sent, string(msgs[i].Body))
		}
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			results[g] = s.call(ctx, msgs)
		}()
	}
	started.Wait()
	cancel()
	done.Wait()
	got := s.fence()[a]
	atMostOnce(t, got, sent...)
	for g, err := range results {
		var mine []int
		for _, b := range got {
			if rest, ok := strings.CutPrefix(b, fmt.Sprint(g, "-")); ok {
				i, _ := strconv.Atoi(rest)
				mine = append(mine, i)
			}
		}
		require.True(t, slices.IsSorted(mine), "call %d's messages in order", g)
		if err == nil {
			require.Len(t, mine, batch, "call %d returned nil: all of it accepted", g)
		} else {
			require.ErrorIs(t, err, context.Canceled, "call %d", g)
		}
	}
}

func clone(m *imcloud.Message) *imcloud.Message {
	c := *m
	c.Keys = slices.Clone(m.Keys)
	c.Body = slices.Clone(m.Body)
	return &c
}

func testNotModified(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	b := s.dial("k2", "live://2")
	keys := s.keys("keys", "k1", "k2")
	keys.Expires = time.Now().Add(time.Hour)
	msgs := []*imcloud.Message{keys, room("live://1", "room"), broadcast("at once", 0), broadcast("paced", 50)}
	held := slices.Clone(msgs)
	before := make([]*imcloud.Message, len(msgs))
	for i, m := range msgs {
		before[i] = clone(m)
	}
	s.deliver(msgs...)
	for i := range msgs {
		require.Same(t, held[i], msgs[i], "the slice is not modified")
		require.Equal(t, before[i], msgs[i], "message %d is not modified", i)
	}
	// Not retained: what the caller does with msgs afterwards (reuse
	// them for the next batch) changes nothing clients receive.
	for i, m := range msgs {
		for j := range m.Body {
			m.Body[j] = 'X'
		}
		for j := range m.Keys {
			m.Keys[j] = "nobody"
		}
		m.Room = "live://elsewhere"
		msgs[i] = room("live://2", "reused")
	}
	a.waitAll(t, "keys", "room", "at once", "paced")
	b.waitAll(t, "keys", "at once", "paced")
	got := s.fence()
	require.Equal(t, sorted([]string{"keys", "room", "at once", "paced"}), sorted(got[a]))
	require.Equal(t, sorted([]string{"keys", "at once", "paced"}), sorted(got[b]))
}

func testRedelivery(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	b := s.dial("k2", "live://2")
	batch := []*imcloud.Message{s.keys("keys", "k1", "k2"), room("live://1", "room"),
		broadcast("at once", 0), broadcast("paced", 50)}
	s.deliver(batch...)
	s.deliver(batch...) // a retry of the same batch
	again := make([]*imcloud.Message, len(batch))
	for i, m := range batch {
		again[i] = clone(m) // decoded again after a restart: the same ids
	}
	s.deliver(again...)
	twice := room("live://2", "twice")
	s.deliver(twice, clone(twice)) // one id twice in a call
	a.waitAll(t, "keys", "room", "at once", "paced")
	b.waitAll(t, "keys", "at once", "paced", "twice")
	got := s.fence()
	require.Equal(t, sorted([]string{"keys", "room", "at once", "paced"}), sorted(got[a]), "each once")
	require.Equal(t, sorted([]string{"keys", "at once", "paced", "twice"}), sorted(got[b]), "each once")
}

func testAfterShutdown(t *testing.T, s *suite) {
	a := s.dial("k1", "live://1")
	s.deliver(room("live://1", "before"))
	a.waitAll(t, "before")

	// Calls in flight while the node shuts down end, one way or the other.
	ctx := context.Background() // s.call bounds each call
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if s.call(ctx, []*imcloud.Message{room("live://1", fmt.Sprint(g, "-", i))}) != nil {
					return
				}
			}
		}()
	}
	sctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	_ = s.h.Shutdown(sctx)
	close(stop)
	wg.Wait()

	// Afterwards every call fails, by itself rather than by ctx's end.
	for i := 0; i < 3; i++ {
		err := s.call(s.ctx(), []*imcloud.Message{room("live://1", "after")})
		require.Error(t, err, "call %d after shutdown", i)
		require.NotErrorIs(t, err, errHung)
		require.NotErrorIs(t, err, context.DeadlineExceeded, "Deliver returned by itself")
		if s.h.ClosedErr != nil {
			require.ErrorIs(t, err, s.h.ClosedErr)
		}
	}
}
