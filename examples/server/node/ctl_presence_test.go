package node

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud/client"
)

// presenceStaleness is the staleness the checks allow: a client whose
// Close returned this long before a presence read started must not be in
// it (logic/presence.go: a closed connection is gone after its node's
// next store flush). A connection whose AuthReply arrived before the read
// started, and still open when it ended, must be in it at once.
const presenceStaleness = time.Second

// churnClient is one client of a presence churn run, as the test knows it.
type churnClient struct {
	mid            int64
	key, node      string
	platform, room string
	cl             *client.Client
	// dialed, connected (Dial returned: the AuthReply arrived), closing
	// (Close called) and closed (Close returned), unix ns, 0 until then;
	// gone: the end of the first presence read that began after closed
	// and did not list it.
	dialed, connected, closing, closed, gone atomic.Int64
}

// churnClients tracks every client of a run by key.
type churnClients struct {
	mu  sync.Mutex
	all map[string]*churnClient
}

func (cs *churnClients) add(c *churnClient) {
	cs.mu.Lock()
	cs.all[c.key] = c
	cs.mu.Unlock()
}

func (cs *churnClients) get(key string) *churnClient {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.all[key]
}

// openAt returns the keys whose AuthReply arrived before t and whose
// Close had not been called at end.
func (cs *churnClients) openAt(t, end int64) []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var keys []string
	for k, c := range cs.all {
		if at := c.connected.Load(); at != 0 && at < t {
			if cl := c.closing.Load(); cl == 0 || cl > end {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// presenceRead is what one sampled presence read found wrong, and the
// longest a closed client was still in a read that started after its
// Close returned.
type presenceRead struct {
	missing, unknown, wrong []string
	stale                   time.Duration
	staleKeys               int
}

// checkPresence reads presence for mids and checks it against cs.
func checkPresence(ctx context.Context, c *roomsCluster, cs *churnClients, mids []int64) (presenceRead, error) {
	var r presenceRead
	start := time.Now().UnixNano()
	got, err := c.logic.pusher.Presence(ctx, mids)
	end := time.Now().UnixNano()
	if err != nil {
		return r, err
	}
	listed := map[string]bool{}
	for mid, sessions := range got {
		for _, s := range sessions {
			listed[s.Key] = true
			cc := cs.get(s.Key)
			if cc == nil || cc.dialed.Load() == 0 || cc.dialed.Load() > end {
				r.unknown = append(r.unknown, s.Key)
				continue
			}
			since := s.Since.Unix()
			if mid != cc.mid || s.Node != cc.node || s.Platform != cc.platform || s.Room != cc.room ||
				since < time.Unix(0, cc.dialed.Load()).Unix() || since > time.Now().Unix() {
				r.wrong = append(r.wrong, fmt.Sprintf("%+v for %s on %s (mid %d, %s, %s)", s, cc.key, cc.node, cc.mid, cc.platform, cc.room))
			}
			if closed := cc.closed.Load(); closed != 0 && closed < start {
				r.staleKeys++
				r.stale = max(r.stale, time.Duration(start-closed))
			}
		}
	}
	for _, k := range cs.openAt(start, end) {
		if !listed[k] {
			r.missing = append(r.missing, k)
		}
	}
	cs.markGone(listed, start, end)
	return r, nil
}

// markGone sets gone for the clients closed before start that a read
// between start and end did not list, the first time.
func (cs *churnClients) markGone(listed map[string]bool, start, end int64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, c := range cs.all {
		if closed := c.closed.Load(); closed != 0 && closed < start && !listed[k] {
			c.gone.CompareAndSwap(0, end)
		}
	}
}

// goneAfter returns, sorted, how long after its Close returned each
// closed client was first read gone: an upper bound of its staleness
// (the wait for the next read and the read itself included).
func (cs *churnClients) goneAfter() []time.Duration {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []time.Duration
	for _, c := range cs.all {
		if gone := c.gone.Load(); gone != 0 {
			out = append(out, time.Duration(gone-c.closed.Load()))
		}
	}
	slices.Sort(out)
	return out
}

// TestPresenceDuringChurn: while clients connect to and disconnect from
// two cloud nodes (behind redis-server and the Kafka protocol) at about
// 500 a second, logic's presence reads match the connections the test
// holds: every client whose AuthReply arrived before a read and still
// open after it is there, with its node, platform, room and since; no
// client closed longer than presenceStaleness ago is; nothing else is.
// Then, quiet, a mids push through the HTTP API lists exactly the users
// without a connection as offline.
func TestPresenceDuringChurn(t *testing.T) {
	const (
		users = 200
		held  = 100                      // connections held, about
		rate  = 500                      // connects plus disconnects per second
		run   = 3 * time.Second          // of churn
		every = 20 * time.Millisecond    // between presence reads
		limit = 10 * time.Second         // for one dial
		tick  = time.Second / (rate / 2) // one connect and one disconnect per tick
	)
	c := startRoomsCluster(t, 2)
	cs := &churnClients{all: map[string]*churnClient{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mids := make([]int64, users)
	for i := range mids {
		mids[i] = int64(i + 1)
	}
	platforms := []string{"web", "ios", "android"}

	var seq atomic.Int64
	var failed atomic.Pointer[error]
	fail := func(err error) { failed.CompareAndSwap(nil, &err) }
	connect := func() *churnClient {
		n := int(seq.Add(1))
		node := n % 2
		cc := &churnClient{mid: int64(rand.IntN(users) + 1), key: fmt.Sprintf("churn-%d", n),
			node: fmt.Sprintf("cloud-%02d", node), platform: platforms[n%3]}
		if n%4 == 0 {
			cc.room = fmt.Sprintf("live://%d", n%7)
		}
		cs.add(cc)
		dctx, dcancel := context.WithTimeout(ctx, limit)
		defer dcancel()
		cc.dialed.Store(time.Now().UnixNano())
		cl, err := client.Dial(dctx, client.Config{Addr: c.clouds[node].Addr("tcp"), Mid: cc.mid, Key: cc.key,
			Room: cc.room, Platform: cc.platform, Extensions: true, Heartbeat: time.Hour})
		if err != nil {
			fail(fmt.Errorf("dial %s: %w", cc.key, err))
			return nil
		}
		cc.connected.Store(time.Now().UnixNano())
		cc.cl = cl
		return cc
	}
	disconnect := func(cc *churnClient) {
		cc.closing.Store(time.Now().UnixNano())
		_ = cc.cl.Close()
		cc.closed.Store(time.Now().UnixNano())
	}

	// Hold about held connections, then replace one a tick: the oldest
	// goes, a new one comes, each on a goroutine of a bounded pool.
	open := make(chan *churnClient, 4*held)
	var wg sync.WaitGroup
	for range held {
		if cc := connect(); cc != nil {
			open <- cc
		}
	}
	require.Nil(t, failed.Load())
	ops := make(chan func(), rate)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for op := range ops {
				op()
			}
		}()
	}
	var connects, disconnects atomic.Int64
	churnDone := make(chan struct{})
	go func() {
		defer close(churnDone)
		t := time.NewTicker(tick)
		defer t.Stop()
		for end := time.Now().Add(run); time.Now().Before(end); <-t.C {
			ops <- func() {
				if cc := connect(); cc != nil {
					connects.Add(1)
					open <- cc
				}
			}
			select {
			case cc := <-open:
				ops <- func() { disconnect(cc); disconnects.Add(1) }
			default:
			}
		}
		close(ops)
	}()

	var reads, staleReads int
	var worst time.Duration
	check := func(r presenceRead) {
		reads++
		require.Empty(t, r.missing, "open connections missing from presence")
		require.Empty(t, r.unknown, "keys in presence the test never dialed")
		require.Empty(t, r.wrong, "sessions reported with the wrong mid, node, platform, room or since")
		if r.staleKeys > 0 {
			staleReads++
		}
		worst = max(worst, r.stale)
		require.LessOrEqual(t, r.stale, presenceStaleness, "a closed connection still listed")
	}
	for sampling := true; sampling; {
		select {
		case <-churnDone:
			sampling = false
		case <-time.After(every):
		}
		r, err := checkPresence(ctx, c, cs, mids)
		require.NoError(t, err)
		check(r)
	}
	wg.Wait()
	require.Nil(t, failed.Load())
	gone := cs.goneAfter()
	require.NotEmpty(t, gone)
	q := func(p float64) time.Duration { return gone[int(p*float64(len(gone)-1))].Round(time.Millisecond) }
	t.Logf("%d connects and %d disconnects in %v over 2 nodes (%.0f/s), %d presence reads of %d users, one every %v: "+
		"%d listed a client whose Close had returned before the read began, at most %v before; "+
		"a closed client was first read gone within p50 %v, p99 %v, max %v of its Close (the wait for the next read included)",
		connects.Load(), disconnects.Load(), run, float64(connects.Load()+disconnects.Load())/run.Seconds(),
		reads, users, every, staleReads, worst.Round(time.Millisecond), q(0.5), q(0.99), q(1))

	// Quiet now: presence settles to exactly the open clients, and a
	// push to every user lists the others as offline.
	close(open)
	online := map[int64]bool{}
	var still []*churnClient
	for cc := range open {
		online[cc.mid] = true
		still = append(still, cc)
	}
	time.Sleep(presenceStaleness)
	r, err := checkPresence(ctx, c, cs, mids)
	require.NoError(t, err)
	check(r)
	require.Zero(t, r.staleKeys, "a closed connection still listed after the staleness bound")
	offline := []int64{}
	for _, mid := range mids {
		if !online[mid] {
			offline = append(offline, mid)
		}
	}
	require.Equal(t, offline, pushOffline(t, c, mids), "history on")
	for _, cc := range still {
		disconnect(cc)
	}
}

// TestPushOfflineClustered: a mids push through the HTTP API of a
// cluster without history lists as offline exactly the users with no
// connection, on either node, and a user whose connection closed.
func TestPushOfflineClustered(t *testing.T) {
	c := startRoomsCluster(t, 2, "-history=false")
	a := c.dial(t, 0, 1, "offline-a", "")
	c.dial(t, 1, 2, "offline-b", "")
	c.dial(t, 1, 1, "offline-c", "")
	require.Equal(t, []int64{3, 5}, pushOffline(t, c, []int64{3, 1, 2, 5, 3}))
	require.Empty(t, pushOffline(t, c, []int64{1, 2}))
	require.NoError(t, a.Close())
	require.Eventually(t, func() bool { return slices.Equal(pushOffline(t, c, []int64{4, 1, 2}), []int64{4}) },
		presenceStaleness, 10*time.Millisecond, "user 1 still has offline-c")
	c.dial(t, 0, 4, "offline-d", "")
	require.Empty(t, pushOffline(t, c, []int64{4, 1, 2}))
}

// pushOffline pushes to mids through the HTTP API and returns the
// answer's offline users.
func pushOffline(t testing.TB, c *roomsCluster, mids []int64) []int64 {
	t.Helper()
	list := make([]string, len(mids))
	for i, m := range mids {
		list[i] = fmt.Sprint(m)
	}
	url := "http://" + c.logic.Addr("http") + "/goim/push/mids?operation=1000&mids=" + strings.Join(list, ",")
	resp, err := http.Post(url, "text/plain", strings.NewReader("are you there"))
	require.NoError(t, err)
	defer resp.Body.Close()
	var r struct {
		Code int `json:"code"`
		Data struct {
			Offline []int64 `json:"offline"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotNil(t, r.Data.Offline, "a mids push's answer lists offline users")
	return r.Data.Offline
}
