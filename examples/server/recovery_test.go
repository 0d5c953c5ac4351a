package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud/client"
)

// recoveryTraffic pushes, alternately, to one user and to one room at a
// fixed rate through the push API, each body numbered within its stream
// ("u 17", "r 17").
type recoveryTraffic struct {
	api, mid, room string

	mu   sync.Mutex
	sent map[byte]int // by stream letter: how many the API accepted
	errs []string

	stop chan struct{}
	done chan struct{}
}

func startRecoveryTraffic(api string, mid int64, room string, perSecond int) *recoveryTraffic {
	tr := &recoveryTraffic{api: api, mid: strconv.FormatInt(mid, 10), room: room,
		sent: map[byte]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	typ, id, _ := imcloud.ParseRoomKey(room)
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			letter, path := byte('u'), "/goim/push/mids?operation=1000&mids="+tr.mid
			if i%2 == 1 {
				letter, path = 'r', "/goim/push/room?operation=1000&type="+url.QueryEscape(typ)+"&room="+url.QueryEscape(id)
			}
			tr.mu.Lock()
			n := tr.sent[letter]
			tr.mu.Unlock()
			code, _, err := tryPush(tr.api, path, fmt.Sprintf("%c %d", letter, n))
			tr.mu.Lock()
			if err == nil && code == http.StatusOK {
				tr.sent[letter] = n + 1
			} else if len(tr.errs) < 10 {
				tr.errs = append(tr.errs, fmt.Sprintf("%s: %d %v", path, code, err))
			}
			tr.mu.Unlock()
		}
	}()
	return tr
}

func (tr *recoveryTraffic) finish() map[byte]int {
	close(tr.stop)
	<-tr.done
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.sent
}

// streamLog is what clients received, per stream letter, in arrival
// order: the body numbers.
type streamLog struct {
	mu  sync.Mutex
	got map[byte][]int
	bad []string
}

func (l *streamLog) collect(c *client.Client, done chan<- struct{}) {
	defer close(done)
	for m := range c.Messages() {
		l.add(m)
	}
}

func (l *streamLog) add(m client.Push) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var letter byte
	var n int
	if _, err := fmt.Sscanf(string(m.Body), "%c %d", &letter, &n); err != nil || m.Stream == "" {
		l.bad = append(l.bad, fmt.Sprintf("%q (stream %q)", m.Body, m.Stream))
		return
	}
	l.got[letter] = append(l.got[letter], n)
}

func (l *streamLog) count(letter byte) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got[letter])
}

// check requires that every stream received 0..sent-1, each once, in order.
func (l *streamLog) check(t *testing.T, sent map[byte]int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	require.Empty(t, l.bad, "pushes outside the streams")
	for letter, n := range sent {
		got := l.got[letter]
		for i, v := range got {
			if v != i {
				t.Fatalf("stream %c: push %d is %d (a gap or a duplicate); received %d of %d", letter, i, v, len(got), n)
			}
		}
		require.Len(t, got, n, "stream %c", letter)
	}
}

// TestClusterRecovery: a client offline for 5 s while pushes flow to its
// user and its room reconnects to the other cloud node of the cluster
// (Redis history, Kafka, separate processes) and gets every push it
// missed, once each, in order, then the live ones with no gap.
func TestClusterRecovery(t *testing.T) {
	c := startCluster(t)
	// No waiting for job to list the nodes: the client may connect to a
	// node job does not know yet, whose room pushes job catches up on
	// when it joins (job/recent.go).
	const mid = 4242
	room := "live://recover"
	ctx := context.Background()
	cfg := client.Config{Addr: c.clouds[0].tcp, Mid: mid, Room: room, Recover: true, Accepts: []int32{1000}}
	c1, err := client.Dial(ctx, cfg)
	require.NoError(t, err)
	first := nextRecovery(t, c1)
	require.True(t, first.Recovered(), "a first connect asks for nothing: %+v", first)
	c.waitTargets(t, strconv.Itoa(mid), 1)

	log := &streamLog{got: map[byte][]int{}}
	done1 := make(chan struct{})
	go log.collect(c1, done1)
	tr := startRecoveryTraffic(c.api, mid, room, 150)
	require.Eventually(t, func() bool { return log.count('u') > 20 && log.count('r') > 20 },
		15*time.Second, 10*time.Millisecond, "live pushes before the disconnect")

	require.NoError(t, c1.Close())
	<-done1
	positions := c1.Positions()
	require.Contains(t, positions, string(imcloud.UserStream(mid)))
	require.Contains(t, positions, string(imcloud.RoomStream(room)))
	time.Sleep(5 * time.Second) // offline while the traffic goes on

	cfg.Addr, cfg.Positions = c.clouds[1].tcp, positions
	c2, err := client.Dial(ctx, cfg)
	require.NoError(t, err)
	defer c2.Close()
	done2 := make(chan struct{})
	go log.collect(c2, done2)
	rec := nextRecovery(t, c2)
	require.True(t, rec.Recovered(), "everything missed is in the history: %+v", rec)
	assert.Greater(t, rec.Replayed(), 300, "5 s of 150 pushes/s were missed")

	time.Sleep(time.Second) // live again
	sent := tr.finish()
	tr.mu.Lock()
	require.Empty(t, tr.errs, "push API errors")
	tr.mu.Unlock()
	if !assert.Eventually(t, func() bool { return log.count('u') >= sent['u'] && log.count('r') >= sent['r'] },
		20*time.Second, 20*time.Millisecond, "every accepted push reaches the client") {
		t.Logf("sent u %d r %d; received u %d r %d", sent['u'], sent['r'], log.count('u'), log.count('r'))
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would show up now
	log.check(t, sent)
}

// TestClusterRecoveryAfterRedisWipe: a Redis that came back empty lost
// the history; the next reconnect is told so (a new epoch, recovered
// false), never a silent gap, and receives no duplicate.
func TestClusterRecoveryAfterRedisWipe(t *testing.T) {
	c := startCluster(t)
	c.waitJobNodes(t, "cloud-0", "cloud-1")
	const mid = 4343
	room := "live://wiped"
	ctx := context.Background()
	cfg := client.Config{Addr: c.clouds[0].tcp, Mid: mid, Room: room, Recover: true, Accepts: []int32{1000}}
	c1, err := client.Dial(ctx, cfg)
	require.NoError(t, err)
	nextRecovery(t, c1)
	c.waitTargets(t, strconv.Itoa(mid), 1)
	for i := 0; i < 5; i++ {
		mustPush(t, c.api, "/goim/push/mids?operation=1000&mids="+strconv.Itoa(mid), fmt.Sprintf("u %d", i))
		mustPush(t, c.api, "/goim/push/room?operation=1000&type=live&room=wiped", fmt.Sprintf("r %d", i))
	}
	log := &streamLog{got: map[byte][]int{}}
	for log.count('u') < 5 || log.count('r') < 5 {
		select {
		case m := <-c1.Messages():
			log.add(m)
		case <-time.After(15 * time.Second):
			t.Fatalf("pushes before the wipe: %v", log.got)
		}
	}
	require.NoError(t, c1.Close())
	positions := c1.Positions()

	c.redis.Restart()
	// Room pushes go on at once (no lookup); they start the history anew.
	require.Eventually(t, func() bool {
		code, _, err := tryPush(c.api, "/goim/push/room?operation=1000&type=live&room=wiped", "r 5")
		return err == nil && code == http.StatusOK
	}, 20*time.Second, 100*time.Millisecond)

	cfg.Addr, cfg.Positions = c.clouds[1].tcp, positions
	var rec client.Recovery
	require.Eventually(t, func() bool { // the node may still be re-registering
		c2, err := client.Dial(ctx, cfg)
		if err != nil {
			return false
		}
		defer c2.Close()
		select { // not nextRecovery: no t.Fatal off the test goroutine
		case rec = <-c2.Recoveries():
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}, 20*time.Second, 200*time.Millisecond)
	require.False(t, rec.Recovered(), "the history went with Redis: %+v", rec)
	require.Len(t, rec.Streams, 2)
	for _, s := range rec.Streams {
		assert.False(t, s.Recovered, s.Stream)
		assert.Equal(t, imcloud.ReasonEpochChanged, s.Reason, s.Stream)
		assert.Zero(t, s.Replayed, "nothing replayed across epochs: %s", s.Stream)
		assert.NotEqual(t, positions[s.Stream].Epoch, s.Epoch, "a new epoch: %s", s.Stream)
	}
}

// waitJobNodes waits until job's metrics list every node of ids.
func (c *cluster) waitJobNodes(t *testing.T, ids ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, f := range scrape(t, c.admin) {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "node" {
						seen[l.GetValue()] = true
					}
				}
			}
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "job knows nodes %v", ids)
}

// nextRecovery waits for c's next op 25.
func nextRecovery(t *testing.T, c *client.Client) client.Recovery {
	t.Helper()
	select {
	case r := <-c.Recoveries():
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no recovery result within 15 s")
	}
	return client.Recovery{}
}
