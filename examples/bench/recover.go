package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	cloudclient "github.com/imcloud/imcloud/cloud/client"
)

// Recover mode (-mode recover): how long a reconnecting client waits for
// the pushes it missed. -conns clients (default 1), user i+1 each and
// optionally all in -shared-room, connect through cloud/client with
// Recover and take their first op 25 (their starting positions). Then,
// -rounds times: every client disconnects; the generator pushes -missed
// pushes to every user through the push API (push/mids, -per-push users a
// request, one publisher per group of users so that a user's pushes are
// published in order); once the history holds the last of them (the
// history route), every client redials at once with the positions it
// held (in odd rounds to -reconnect-tcp or -reconnect-ws, another node
// of a cluster, when set). Per client, the figure is the time from starting the dial (the
// TCP connect and WebSocket upgrade included, a fraction of a
// millisecond on loopback; the auth frame follows at once) to the op 25
// recovery result, which the node queues after the last replayed push.
// Each reconnect must bring exactly -missed pushes of the user's stream,
// in the order they were pushed, with strictly growing offsets, before
// op 25, op 25 must say recovered with -missed replayed, and nothing may
// arrive after it (a duplicate).

// recoverTimeout bounds one client's wait for its op 25.
const recoverTimeout = 30 * time.Second

// recoverer is the state of a recover run: each user's client (nil while
// offline) and the positions it held when it went offline.
type recoverer struct {
	cfg *config
	// run tells this run's pushes from an earlier run's to the same
	// users, still in the server's history.
	run   string
	conns []*cloudclient.Client
	pos   []map[string]cloudclient.Position
	http  *http.Client
	// late counts pushes that arrived after a client's op 25: nothing
	// is pushed then, so each is a duplicate.
	late int
}

// recOutcome is one client's reconnect: how long until its op 25, how
// many missed pushes came in order before it, and what was wrong.
type recOutcome struct {
	took     time.Duration
	replayed int
	err      error
}

// runRecover is the recover mode's run: one result for all rounds.
func runRecover(ctx context.Context, cfg *config, base result, out io.Writer) (bool, error) {
	rc := &recoverer{cfg: cfg, run: strconv.FormatUint(rand.Uint64(), 36), conns: make([]*cloudclient.Client, cfg.conns), pos: make([]map[string]cloudclient.Position, cfg.conns),
		http: &http.Client{Timeout: 10 * time.Second}}
	defer rc.closeAll()
	start := time.Now()
	for i, o := range rc.connectAll(ctx, 0, 0) {
		if o.err != nil {
			hint := ""
			if strings.Contains(o.err.Error(), "unavailable") {
				hint = " (is history on in the server?)"
			}
			return false, fmt.Errorf("bench: client %d: first connect: %w%s", i, o.err, hint)
		}
	}
	fmt.Fprintf(out, "bench: %d recover clients connected in %.1f s\n", cfg.conns, time.Since(start).Seconds())
	hist := newLatencyHist()
	var failures, replayed, pushes int
	var pushing, reconnecting time.Duration
	var procs []procResult // CPU over the reconnects only
	for round := 1; round <= cfg.rounds; round++ {
		rc.closeAll()
		t := time.Now()
		n, err := rc.push(ctx, rc.tag(round))
		pushes += n
		pushing += time.Since(t)
		if err == nil {
			err = rc.awaitHistory(ctx, rc.tag(round))
		}
		if err != nil {
			return false, fmt.Errorf("bench: round %d: %w", round, err)
		}
		t = time.Now()
		before := sampleProcs(cfg.pids)
		outs := rc.connectAll(ctx, round, cfg.missed)
		took := time.Since(t)
		procs = addProcs(procs, procDelta(cfg.pids, before, sampleProcs(cfg.pids), took))
		reconnecting += took
		roundHist := newLatencyHist()
		for i, o := range outs {
			replayed += o.replayed
			if o.err != nil {
				if failures++; failures <= 5 {
					fmt.Fprintf(stderr, "bench: round %d: client %d: %v\n", round, i, o.err)
				}
				continue
			}
			hist.record(o.took)
			roundHist.record(o.took)
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("bench: stopped (-duration %v or a signal) in round %d", cfg.duration, round)
		}
		if !cfg.quiet {
			fmt.Fprintf(stderr, "[round %3d/%d] reconnect to op 25: p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  failures %d\n",
				round, cfg.rounds, ms(roundHist.quantile(0.5)), ms(roundHist.quantile(0.99)), ms(roundHist.maximum()), failures)
		}
	}
	rc.closeAll()
	r := base
	r.Conns, r.Rounds, r.Missed, r.Failures = int64(cfg.conns), cfg.rounds, cfg.missed, failures
	r.Sent, r.Accepted = uint64(pushes), uint64(pushes)
	if pushing > 0 {
		r.PushPerSec = float64(pushes) / pushing.Seconds()
	}
	r.Expected = uint64(cfg.conns * cfg.missed * cfg.rounds)
	r.Received = uint64(replayed)
	r.Lost = int64(r.Expected) - int64(r.Received)
	r.WindowSec = reconnecting.Seconds()
	r.P50, r.P90, r.P99, r.Max = ms(hist.quantile(0.5)), ms(hist.quantile(0.9)), ms(hist.quantile(0.99)), ms(hist.maximum())
	r.Extra = map[string]float64{"duplicates": float64(rc.late)}
	r.Procs = procs
	for i := range r.Procs {
		r.Procs[i].Cores = r.Procs[i].CPUSeconds / max(reconnecting.Seconds(), 1e-9)
	}
	r.Pass = failures == 0 && rc.late == 0 && r.Lost == 0 && (cfg.maxP99 <= 0 || r.P99 <= ms(cfg.maxP99))
	printResult(out, &r)
	return r.Pass, appendJSON(cfg.jsonOut, &r)
}

// addProcs adds one round's CPU to the sums (RSS: the latest reading).
func addProcs(sum, round []procResult) []procResult {
	if sum == nil {
		return round
	}
	for i := range sum {
		sum[i].CPUSeconds += round[i].CPUSeconds
		sum[i].RSSBytes = round[i].RSSBytes
	}
	return sum
}

// tag names round's pushes in their bodies.
func (rc *recoverer) tag(round int) string { return rc.run + "." + strconv.Itoa(round) }

// addr is the node the clients dial in round (0: the first connect):
// -tcp or -ws, or in odd rounds -reconnect-tcp or -reconnect-ws when
// set, so that every reconnect moves to the other node.
func (rc *recoverer) addr(round int) string {
	cfg := rc.cfg
	if cfg.proto == "ws" {
		host := cfg.wsAddr
		if round%2 == 1 && cfg.reconnectWS != "" {
			host = cfg.reconnectWS
		}
		return "ws://" + host + cfg.wsPath
	}
	if round%2 == 1 && cfg.reconnectTCP != "" {
		return cfg.reconnectTCP
	}
	return cfg.tcpAddr
}

// connectAll dials every client at once (each from its own goroutine,
// released together) with the positions it holds, and checks that each
// gets exactly missed pushes of round before its op 25.
func (rc *recoverer) connectAll(ctx context.Context, round, missed int) []recOutcome {
	cfg := rc.cfg
	addr, tag := rc.addr(round), rc.tag(round)
	outs := make([]recOutcome, cfg.conns)
	release := make(chan struct{})
	var ready, done sync.WaitGroup
	for i := range rc.conns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			cc := cloudclient.Config{Network: cfg.proto, Addr: addr, Mid: int64(i + 1), Room: cfg.sharedRoom, Platform: "bench",
				Accepts: []int32{int32(cfg.op)}, Recover: true, Positions: rc.pos[i], Buffer: missed + 64,
				Heartbeat: cfg.heartbeat, DialTimeout: 10 * time.Second}
			ready.Done()
			<-release
			outs[i] = rc.reconnect(ctx, i, cc, tag, missed)
		}()
	}
	ready.Wait()
	close(release)
	done.Wait()
	return outs
}

// reconnect dials client i and waits for its op 25.
func (rc *recoverer) reconnect(ctx context.Context, i int, cc cloudclient.Config, tag string, missed int) recOutcome {
	t0 := time.Now()
	c, err := cloudclient.Dial(ctx, cc)
	if err != nil {
		return recOutcome{err: fmt.Errorf("dial: %w", err)}
	}
	rc.conns[i] = c
	var rec cloudclient.Recovery
	select {
	case rec = <-c.Recoveries():
	case <-c.Done():
		return recOutcome{err: errors.New("connection ended before its op 25")}
	case <-time.After(recoverTimeout):
		return recOutcome{err: fmt.Errorf("no op 25 within %v", recoverTimeout)}
	case <-ctx.Done():
		return recOutcome{err: ctx.Err()}
	}
	took := time.Since(t0)
	// The replayed pushes were handed to Messages() before op 25 reached
	// Recoveries() (one reader, in frame order): they are all there.
	var got []cloudclient.Push
	for more := true; more; {
		select {
		case p, ok := <-c.Messages():
			if more = ok; ok {
				got = append(got, p)
			}
		default:
			more = false
		}
	}
	n, err := checkReplay(rec, got, "u:"+strconv.Itoa(i+1), tag, missed)
	if err == nil && c.Dropped() > 0 {
		err = fmt.Errorf("%d pushes dropped by the client (Messages full)", c.Dropped())
	}
	return recOutcome{took: took, replayed: n, err: err}
}

// checkReplay checks one reconnect: op 25 says recovered with missed
// pushes replayed, and got is exactly pushes 0..missed-1 tagged tag, in
// order, all of stream with growing offsets. It returns how many came in
// order before the first wrong one.
func checkReplay(rec cloudclient.Recovery, got []cloudclient.Push, stream, tag string, missed int) (int, error) {
	in := 0
	var last int64 = -1
	for _, p := range got {
		t, k, ok := parseRecoverBody(p.Body)
		if p.Stream != stream || !ok || t != tag || k != in || p.Offset <= last {
			return in, fmt.Errorf("push %d of %d: stream %q offset %d body %.30q, want %s push %d tagged %s after offset %d",
				in, len(got), p.Stream, p.Offset, p.Body, stream, in, tag, last)
		}
		last = p.Offset
		in++
	}
	switch {
	case in != missed:
		return in, fmt.Errorf("%d pushes before op 25, want %d", in, missed)
	case !rec.Recovered():
		return in, fmt.Errorf("not recovered: %+v", rec.Streams)
	case rec.Replayed() != missed:
		return in, fmt.Errorf("op 25 says %d replayed, want %d: %+v", rec.Replayed(), missed, rec.Streams)
	}
	return in, nil
}

// closeAll disconnects every client, keeping the positions it held, and
// counts what arrived after its op 25.
func (rc *recoverer) closeAll() {
	for i, c := range rc.conns {
		if c == nil {
			continue
		}
		_ = c.Close()
		rc.pos[i] = c.Positions()
		for range c.Messages() { // closed by Close
			rc.late++
		}
		rc.conns[i] = nil
	}
}

// groups returns the users' mids in groups of -per-push, comma-joined.
func (rc *recoverer) groups() []string {
	var out []string
	for from := 0; from < rc.cfg.conns; from += rc.cfg.perPush {
		var b strings.Builder
		for i := from; i < min(from+rc.cfg.perPush, rc.cfg.conns); i++ {
			if i > from {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(i + 1))
		}
		out = append(out, b.String())
	}
	return out
}

// push sends -missed pushes tagged tag to every user, as fast as the API
// takes them: group g's pushes come from publisher g mod publishers, one
// request at a time, so that each user's pushes are published (and get
// their offsets) in order. It returns the pushes accepted (users reached).
func (rc *recoverer) push(ctx context.Context, tag string) (int, error) {
	cfg := rc.cfg
	groups := rc.groups()
	pubs := min(cfg.publishers, len(groups))
	errs := make([]error, pubs)
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			api := &apiClient{addr: cfg.api}
			defer api.close()
			var body []byte
			for k := 0; k < cfg.missed && errs[p] == nil; k++ {
				body = appendRecoverBody(body[:0], tag, k, cfg.bodySize)
				for g := p; g < len(groups) && errs[p] == nil; g += pubs {
					path := "/goim/push/mids?operation=" + strconv.Itoa(cfg.op) + "&mids=" + groups[g]
					errs[p] = postRetrying(ctx, api, []byte(path), body)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return cfg.conns * cfg.missed, nil
}

// postRetrying posts until the API accepts, backing off on 503 and 429
// and giving up after a few failures of another kind.
func postRetrying(ctx context.Context, api *apiClient, path, body []byte) error {
	for failures := 0; ; {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		status, err := api.post(path, body)
		switch {
		case err == nil && status == 200:
			return nil
		case err == nil && (status == 503 || status == 429):
			time.Sleep(10 * time.Millisecond)
			continue
		case err == nil:
			err = fmt.Errorf("push: HTTP %d", status)
		}
		if failures++; failures >= 3 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// awaitHistory waits until every user's history ends with the last push
// tagged tag: job appends what logic published in the background, and a
// client that reconnected earlier would get the rest live.
func (rc *recoverer) awaitHistory(ctx context.Context, tag string) error {
	want := appendRecoverBody(nil, tag, rc.cfg.missed-1, 0)
	deadline := time.Now().Add(30 * time.Second)
	for i := range rc.conns {
		for {
			last, err := rc.lastPush(ctx, i+1)
			if err != nil {
				return err
			}
			if bytes.HasPrefix(last, want) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("user %d's history does not end with push %d tagged %s after 30 s (ends with %.30q)",
					i+1, rc.cfg.missed-1, tag, last)
			}
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// lastPush returns the body of the last push in user mid's history (nil:
// none), from the history route.
func (rc *recoverer) lastPush(ctx context.Context, mid int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+rc.cfg.api+"/goim/history?n=1&mid="+strconv.Itoa(mid), nil)
	if err != nil {
		return nil, err
	}
	resp, err := rc.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var reply struct {
		Message string `json:"message"`
		Data    struct {
			Entries []struct {
				Body string `json:"body"`
			} `json:"entries"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("history route: HTTP %d %q (%v): is history on on the server?", resp.StatusCode, reply.Message, err)
	}
	if n := len(reply.Data.Entries); n > 0 {
		return []byte(reply.Data.Entries[n-1].Body), nil
	}
	return nil, nil
}

// appendRecoverBody appends the body of push k tagged tag: "r<tag>:<k>;"
// padded with 'x' to size bytes.
func appendRecoverBody(dst []byte, tag string, k, size int) []byte {
	start := len(dst)
	dst = append(dst, 'r')
	dst = append(dst, tag...)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(k), 10)
	dst = append(dst, ';')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseRecoverBody reads the tag and index of a recover push body.
func parseRecoverBody(b []byte) (tag string, k int, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte("r"))
	if !found {
		return "", 0, false
	}
	head, _, found := bytes.Cut(rest, []byte(";"))
	if !found {
		return "", 0, false
	}
	i := bytes.LastIndexByte(head, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(string(head[i+1:]))
	if err != nil || n < 0 {
		return "", 0, false
	}
	return string(head[:i]), n, true
}
