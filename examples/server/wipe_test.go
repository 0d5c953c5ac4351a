package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
)

// wipeBound is the README's bound: after Redis lost its data, the nodes
// and their sessions are back within 5 s of Redis accepting connections.
const wipeBound = 5 * time.Second

// rebuildWindow is the routers' rebuild window (the default): mid pushes
// answer 503 for at most this long after the loss is noticed.
const rebuildWindow = logic.DefaultRebuildWindow

// wipeSessionsEnv sets the idle sessions held on cloud-0 besides the
// pushed users (default 500; 10000 measures the README's bound at size).
const wipeSessionsEnv = "IMCLOUD_WIPE_SESSIONS"

// TestClusterRedisWiped: Redis loses its data under a running cluster
// (restarted empty, then FLUSHALL) while numbered room and mid pushes
// flow. Every push the API accepted with 200 reaches its clients (job did
// not take the nodes for gone, logic never answered "0 keys" for an online
// user), and the nodes' sessions are back within the bound.
func TestClusterRedisWiped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six processes")
	}
	bulk := 500
	if v := os.Getenv(wipeSessionsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, wipeSessionsEnv)
		bulk = n
	}
	c := startCluster(t, "-max-conns-per-ip", "-1")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const users = 40 // mids 1..40, alternating nodes, all in live://9
	us := make([]*wipeUser, users)
	keys := make([]string, 0, users+bulk)
	for i := range us {
		cl, err := client.Dial(ctx, client.Config{Addr: c.clouds[i%2].tcp, Mid: int64(i + 1), Room: "live://9",
			Accepts: []int32{1000}, Buffer: 1 << 14})
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		us[i] = newWipeUser(cl)
		keys = append(keys, cl.Auth().Key)
	}
	keys = append(keys, dialIdle(t, c.clouds[0].tcp, bulk)...)
	c.waitKeys(t, keys, 20*time.Second)
	t.Logf("%d sessions (%d on cloud-0)", len(keys), users/2+bulk)

	for _, w := range testenv.RedisWipes() {
		t.Run(w.Name, func(t *testing.T) {
			tr := startWipeTraffic(c.api, users)
			time.Sleep(300 * time.Millisecond)
			w.Wipe(c.redis)
			back := time.Now()
			took := c.waitKeys(t, keys, wipeBound)
			t.Logf("%d sessions registered again %v after Redis lost its data", len(keys), took.Round(time.Millisecond))
			for _, cp := range c.clouds {
				t.Logf("%s: %s", cp.name, lastLine(cp.out.String(), "registered again"))
			}
			// Pushes keep flowing through the rebuild window and after it.
			time.Sleep(time.Until(back.Add(rebuildWindow + time.Second)))
			tr.stop()
			tr.check(t, us)
			c.waitMids(t, users, 2*time.Second)
		})
	}
}

// waitKeys probes (op 1999, which no client takes) until every key
// resolves, and returns how long that took; it fails after limit.
func (c *cluster) waitKeys(t *testing.T, keys []string, limit time.Duration) time.Duration {
	t.Helper()
	body, err := json.Marshal(map[string]any{"operation": 1999, "keys": keys, "msg": "probe"})
	require.NoError(t, err)
	start := time.Now()
	var last string
	for time.Since(start) < limit {
		resp, err := http.Post("http://"+c.api+"/goim/push/keys", "application/json", strings.NewReader(string(body)))
		if err == nil {
			var r pushReply
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && r.Data.Keys == len(keys) {
				return time.Since(start)
			}
			last = fmt.Sprintf("HTTP %d, %d of %d keys, %q", resp.StatusCode, r.Data.Keys, len(keys), r.Message)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("keys did not all resolve within %v: last probe %s", limit, last)
	return 0
}

// waitMids checks that mid pushes resolve every user again once the
// rebuild window is over.
func (c *cluster) waitMids(t *testing.T, users int, limit time.Duration) {
	t.Helper()
	mids := make([]string, users)
	for i := range mids {
		mids[i] = strconv.Itoa(i + 1)
	}
	require.Eventually(t, func() bool {
		code, r, err := tryPush(c.api, "/goim/push/mids?operation=1999&mids="+strings.Join(mids, ","), "probe")
		return err == nil && code == http.StatusOK && r.Data.Keys == users
	}, limit, 50*time.Millisecond, "mid pushes resolve every user after the rebuild window")
}

// dialIdle opens n sessions on a node that take no push (room live://idle,
// no op accepted), held until the test ends, and returns their keys.
func dialIdle(t *testing.T, tcpAddr string, n int) []string {
	t.Helper()
	keys := make([]string, n)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	var g errgroup.Group
	g.SetLimit(8)
	pace := time.NewTicker(time.Second / 1500) // below the node's accept rate (2,000/s)
	defer pace.Stop()
	for i := range keys {
		keys[i] = fmt.Sprintf("idle-%d", i)
		<-pace.C
		g.Go(func() error {
			nc, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
			if err != nil {
				return err
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			body, _ := json.Marshal(map[string]any{"mid": 100000 + i, "key": keys[i], "room_id": "live://idle", "platform": "linux", "accepts": []int32{}})
			if _, err := nc.Write(rawFrame(1, 7, 1, body)); err != nil {
				return err
			}
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			var h [16]byte
			if _, err := nc.Read(h[:]); err != nil {
				return fmt.Errorf("auth reply: %w", err)
			}
			return nil
		})
	}
	require.NoError(t, g.Wait())
	return keys
}

// wipeUser is a pushed client and what it received.
type wipeUser struct {
	mu  sync.Mutex
	got map[string]bool
}

func newWipeUser(cl *client.Client) *wipeUser {
	u := &wipeUser{got: map[string]bool{}}
	go func() {
		for {
			select {
			case m := <-cl.Messages():
				u.mu.Lock()
				u.got[string(m.Body)] = true
				u.mu.Unlock()
			case <-cl.Done():
				return
			}
		}
	}()
	return u
}

func (u *wipeUser) has(body string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[body]
}

// wipeTraffic pushes numbered room pushes to live://9 and numbered mid
// pushes to each user in turn, and records what the API accepted.
type wipeTraffic struct {
	api   string
	users int
	stopc chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	rooms    []string       // accepted room pushes
	mids     map[string]int // accepted mid push -> user index
	zeroKeys []string       // mid pushes accepted with 0 keys: lost
	statuses map[string]int // "room 200", "mid 503", ... -> count
}

func startWipeTraffic(api string, users int) *wipeTraffic {
	tr := &wipeTraffic{api: api, users: users, stopc: make(chan struct{}), mids: map[string]int{}, statuses: map[string]int{}}
	tr.wg.Add(2)
	go tr.run("room", func(i int) (string, string) {
		return "/goim/push/room?operation=1000&type=live&room=9", fmt.Sprint("r", i)
	})
	go tr.run("mid", func(i int) (string, string) {
		return fmt.Sprintf("/goim/push/mids?operation=1000&mids=%d", i%users+1), fmt.Sprint("m", i)
	})
	return tr
}

func (tr *wipeTraffic) run(kind string, next func(i int) (path, body string)) {
	defer tr.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-tr.stopc:
			return
		case <-time.After(10 * time.Millisecond):
		}
		path, body := next(i)
		code, r, err := tryPush(tr.api, path, body)
		tr.mu.Lock()
		switch {
		case err != nil && code == 0:
			tr.statuses[kind+" error"]++
		case code != http.StatusOK:
			tr.statuses[fmt.Sprint(kind, " ", code)]++
		case kind == "room":
			tr.statuses["room 200"]++
			tr.rooms = append(tr.rooms, body)
		case r.Data.Keys == 0:
			tr.zeroKeys = append(tr.zeroKeys, body)
		default:
			tr.statuses["mid 200"]++
			tr.mids[body] = i % tr.users
		}
		tr.mu.Unlock()
	}
}

func (tr *wipeTraffic) stop() {
	close(tr.stopc)
	tr.wg.Wait()
}

// check waits until every accepted push reached its clients and fails
// with what did not.
func (tr *wipeTraffic) check(t *testing.T, us []*wipeUser) {
	t.Helper()
	t.Logf("pushes answered: %v", tr.statuses)
	assert.Empty(t, tr.zeroKeys, "mid pushes to online users answered 200 with 0 keys")
	require.NotZero(t, tr.statuses["mid 200"])
	require.NotZero(t, tr.statuses["room 200"])
	missing := func() []string {
		var out []string
		for _, body := range tr.rooms {
			for i, u := range us {
				if !u.has(body) {
					out = append(out, fmt.Sprintf("%s to user %d", body, i+1))
				}
			}
		}
		for body, i := range tr.mids {
			if !us[i].has(body) {
				out = append(out, fmt.Sprintf("%s to user %d", body, i+1))
			}
		}
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	for m := missing(); len(m) > 0; m = missing() {
		if time.Now().After(deadline) {
			t.Fatalf("%d accepted pushes not delivered, first %q", len(m), m[:min(len(m), 10)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLine returns the last line of log that contains s.
func lastLine(log, s string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}
