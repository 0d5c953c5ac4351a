package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// `bench scale` coordinates the generators of the scale scenario
// (-mode scale, scale.go) through their control addresses, as
// scripts/bench-scale.sh runs it:
//
//	-phase load: reads the gateways' RSS with no connection, starts every
//	  generator and waits until all connections are authenticated (ramp),
//	  holds them for -hold (CPU per process, gateway RSS per connection,
//	  redis-servers' CPU and commands per second from INFO, in all and
//	  per server), then one room push to the room every connection is
//	  in and one broadcast paced at -speed connections/s: each
//	  connection must record each push.
//	-phase back: after the script restarted every gateway (SIGTERM, drain)
//	  at -since, waits until every connection is back, compares the
//	  router's routes (logic's presence API) with the generators' live
//	  connections (0 missing, 0 stale), then one more room push.
//	-phase report: the results as markdown into -md's section "scale"
//	  (with -shards above 1, its subsection "The same over N Redis
//	  shards", so that the runs over one and over several redis-servers
//	  each keep their own block).
//	-phase sweep: the load phases of several runs (-json, one run after
//	  the other) as plots into -svg-dir and a table into -md's
//	  subsection "Cost as the work grows" (scalesweep.go).
//
// Every phase appends its results as JSON lines to -json; a failed check
// makes the phase fail (exit 1) after its results were written.

// scaleResult is one measured figure of the scenario.
type scaleResult struct {
	Phase    string  `json:"phase"`
	Conns    int64   `json:"conns"`
	Gateways int     `json:"gateways"`
	Seconds  float64 `json:"seconds"` // ramp, hold or time to the last client / last reconnect
	P50      float64 `json:"p50_ms,omitempty"`
	P99      float64 `json:"p99_ms,omitempty"`
	Missing  int64   `json:"missing"`
	Stale    int64   `json:"stale,omitempty"`
	Lost     int64   `json:"lost"` // connections lost during the phase
	DialErrs int64   `json:"dial_errors"`
	Refused  int64   `json:"refused"`
	// Hold: per process CPU (cores) and RSS; gateway RSS per connection
	// above its RSS with none; Redis commands per second in all and per
	// command.
	Procs       []procResult       `json:"procs,omitempty"`
	RSSPerConn  float64            `json:"gw_rss_per_conn,omitempty"`
	GwCores     float64            `json:"gw_cores,omitempty"`
	RedisOps    float64            `json:"redis_ops_per_s,omitempty"`
	RedisCmds   map[string]float64 `json:"redis_cmds_per_s,omitempty"`
	Pass        bool               `json:"pass"`
	Note        string             `json:"note,omitempty"`
	RouteLagSec float64            `json:"route_lag_s,omitempty"`
	// Load1 is the 1-minute load average (/proc/loadavg) at the end of
	// the phase: above the cores, the machine's CPU ran out.
	Load1 float64 `json:"load1,omitempty"`
	// RedisShardOps is RedisOps per redis-server, in -redis's order,
	// when the router is sharded over more than one.
	RedisShardOps []float64 `json:"redis_shard_ops_per_s,omitempty"`
}

type scaleCtlConfig struct {
	phase, api, jsonOut, md, pre, svgDir string
	gens, nodeIDs, redisAddrs            []string
	pids                                 []namedPid
	expect                               int64
	hold, timeout                        time.Duration
	speed, shards                        int
	since                                int64
	room, proto                          string
}

func scaleCtl(args []string, out io.Writer) error {
	c := &scaleCtlConfig{}
	fs := flag.NewFlagSet("bench scale", flag.ContinueOnError)
	var gens, nodeIDs, pids, redisAddrs string
	fs.StringVar(&c.phase, "phase", "load", "load, back or report")
	fs.StringVar(&gens, "gens", "", "the generators' control addresses, comma-separated")
	fs.StringVar(&c.api, "api", "127.0.0.1:3111", "logic's push API")
	fs.StringVar(&redisAddrs, "redis", "", "redis-servers to read INFO from (summed), comma-separated")
	fs.StringVar(&pids, "pids", "", "processes to account for: name=pid,...; gateways are named gw-N")
	fs.Int64Var(&c.expect, "expect", 0, "connections in all")
	fs.DurationVar(&c.hold, "hold", 5*time.Minute, "load: how long to hold the connections idle")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on waiting for the ramp or the reconnects")
	fs.IntVar(&c.speed, "speed", 100000, "load: the broadcast's pacing, connections per second; 0: no broadcast")
	fs.Int64Var(&c.since, "since", 0, "back: when the storm began (Unix ns)")
	fs.StringVar(&nodeIDs, "node-ids", "", "back: the gateways' node ids now, by gateway index")
	fs.StringVar(&c.room, "room", "live://scale", "the room every connection is in")
	fs.StringVar(&c.jsonOut, "json", "", "append results to this file")
	fs.StringVar(&c.md, "md", "", "report: BENCHMARKS.md to update")
	fs.StringVar(&c.proto, "proto", "ws", "report: the clients' transport, ws or tcp; tcp goes into its own subsection of \"scale\"")
	fs.IntVar(&c.shards, "shards", 1, "report: the redis-servers the router was sharded over; above 1, the report goes into its own subsection of \"scale\"")
	fs.StringVar(&c.pre, "preamble", "", "report, sweep: markdown put before the table")
	fs.StringVar(&c.svgDir, "svg-dir", "", "sweep: directory to write the plots into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	c.gens, c.nodeIDs, c.redisAddrs = split(gens), split(nodeIDs), split(redisAddrs)
	var err error
	if c.pids, err = parsePids(pids); err != nil {
		return err
	}
	switch c.phase {
	case "load":
		return c.load(out)
	case "back":
		return c.back(out)
	case "report":
		return scaleReport(c)
	case "sweep":
		return sweepReport(c)
	}
	return fmt.Errorf("bench scale: -phase %q is not load, back, report or sweep", c.phase)
}

// states reads every generator's /state.
func (c *scaleCtlConfig) states() ([]scaleState, error) {
	out := make([]scaleState, len(c.gens))
	for i, g := range c.gens {
		if err := getJSON("http://"+g+"/state", &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func getJSON(u string, v any) error {
	cl := http.Client{Timeout: 60 * time.Second}
	resp, err := cl.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("bench scale: %s: HTTP %d %s", u, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// sum adds up the generators' states.
func sum(sts []scaleState) (s scaleState) {
	for _, st := range sts {
		s.Target += st.Target
		s.Live += st.Live
		s.Lost += st.Lost
		s.DialErrs += st.DialErrs
		s.Refused += st.Refused
		for i, n := range st.PerGW {
			if i >= len(s.PerGW) {
				s.PerGW = append(s.PerGW, 0)
			}
			s.PerGW[i] += n
		}
	}
	return s
}

func (c *scaleCtlConfig) emit(out io.Writer, r *scaleResult) error {
	b, _ := json.Marshal(r)
	fmt.Fprintf(out, "bench scale: %s\n", b)
	if c.jsonOut == "" {
		return nil
	}
	f, err := os.OpenFile(c.jsonOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(b, '\n'))
	return err
}

func (c *scaleCtlConfig) load(out io.Writer) error {
	base := sampleProcs(c.pids)
	for _, g := range c.gens {
		resp, err := http.Post("http://"+g+"/start", "text/plain", nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
	}
	// Ramp.
	deadline := time.Now().Add(c.timeout)
	var sts []scaleState
	for {
		var err error
		if sts, err = c.states(); err != nil {
			return err
		}
		if s := sum(sts); s.Live >= c.expect || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	s := sum(sts)
	first, last := int64(0), int64(0)
	for _, st := range sts {
		if first == 0 || st.Started < first {
			first = st.Started
		}
		last = max(last, st.RampDone)
	}
	ramp := scaleResult{Phase: "ramp", Conns: s.Live, Gateways: len(s.PerGW), Lost: s.Lost, DialErrs: s.DialErrs,
		Refused: s.Refused, Pass: s.Live == c.expect && s.Lost == 0}
	if ramp.Pass {
		ramp.Seconds = float64(last-first) / 1e9
	}
	if err := c.emit(out, &ramp); err != nil || !ramp.Pass {
		return errors.Join(err, fmt.Errorf("bench scale: ramp: %d of %d connections", s.Live, c.expect))
	}
	// Hold.
	before, ops0, cmds0 := sampleProcs(c.pids), c.redisStats(), c.redisCmds()
	t0 := time.Now()
	time.Sleep(c.hold)
	after, ops1, cmds1 := sampleProcs(c.pids), c.redisStats(), c.redisCmds()
	win := time.Since(t0)
	var ops float64
	for i := range ops1 {
		ops += float64(ops1[i]-ops0[i]) / win.Seconds()
	}
	if sts, _ = c.states(); len(sts) == 0 {
		return errors.New("bench scale: generators gone")
	}
	s2 := sum(sts)
	hold := scaleResult{Phase: "hold", Conns: s2.Live, Gateways: len(s2.PerGW), Seconds: win.Seconds(),
		Lost: s2.Lost - s.Lost, Procs: procDelta(c.pids, before, after, win), RedisCmds: map[string]float64{},
		RedisOps: ops}
	if len(ops1) > 1 {
		for i := range ops1 {
			hold.RedisShardOps = append(hold.RedisShardOps, float64(ops1[i]-ops0[i])/win.Seconds())
		}
	}
	var rss, conns int64
	for i, p := range c.pids {
		if gw, ok := strings.CutPrefix(p.name, "gw-"); ok {
			hold.GwCores += hold.Procs[i].Cores
			rss += after[i].RSSBytes - base[i].RSSBytes
			if k, err := strconv.Atoi(gw); err == nil && k < len(s2.PerGW) {
				conns += s2.PerGW[k]
			}
		}
	}
	if conns > 0 {
		hold.RSSPerConn = float64(rss) / float64(conns)
	}
	for k, v := range cmds1 {
		if d := float64(v-cmds0[k]) / win.Seconds(); d >= 0.5 {
			hold.RedisCmds[k] = d
		}
	}
	hold.Pass = hold.Lost == 0 && s2.Live == c.expect
	hold.Load1 = loadAvg()
	if err := c.emit(out, &hold); err != nil {
		return err
	}
	room := c.push(out, "room", "/goim/push/room?operation=1000&type="+roomType(c.room), 1)
	all := c.speed == 0 || c.push(out, "broadcast", "/goim/push/all?operation=1000&speed="+strconv.Itoa(c.speed), 2)
	if !hold.Pass || !room || !all {
		return errors.New("bench scale: a check failed (see the results)")
	}
	return nil
}

// roomType turns "live://scale" into push/room's "live&room=scale".
func roomType(room string) string {
	typ, id, _ := strings.Cut(room, "://")
	return url.QueryEscape(typ) + "&room=" + url.QueryEscape(id)
}

// push sends one push tagged tag and waits until every connection
// recorded it (at most a minute): the time to the last client is the
// latest arrival in a client socket, from the push's send.
func (c *scaleCtlConfig) push(out io.Writer, phase, path string, tag int) bool {
	sts, _ := c.states()
	s0 := sum(sts)
	body := appendBody(nil, tag, time.Now(), 64)
	resp, err := http.Post("http://"+c.api+path, "text/plain", bytes.NewReader(body))
	r := scaleResult{Phase: phase, Conns: s0.Live, Gateways: len(s0.PerGW)}
	if err != nil {
		r.Note = err.Error()
		_ = c.emit(out, &r)
		return false
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		r.Note = fmt.Sprintf("HTTP %d %s", resp.StatusCode, bytes.TrimSpace(answer))
		_ = c.emit(out, &r)
		return false
	}
	deadline := time.Now().Add(time.Minute)
	var arrived []int64
	var missing []string
	for {
		arrived, missing = arrived[:0], missing[:0]
		var have int
		for _, g := range c.gens {
			var got scaleGot
			if err := getJSON("http://"+g+"/got?tag="+strconv.Itoa(tag), &got); err != nil {
				r.Note = err.Error()
				break
			}
			have += got.Have
			arrived = append(arrived, got.Arrived...)
			missing = append(missing, got.Missing...)
		}
		if int64(have) >= c.expect || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	sts, _ = c.states()
	s1 := sum(sts)
	r.Lost = s1.Lost - s0.Lost
	r.Missing = c.expect - int64(len(arrived))
	if len(arrived) > 0 {
		h := newLatencyHist()
		for _, a := range arrived {
			h.record(time.Duration(a))
			r.Seconds = max(r.Seconds, float64(a)/1e9)
		}
		r.P50, r.P99 = ms(h.quantile(0.5)), ms(h.quantile(0.99))
	}
	if r.Missing > 0 {
		r.Note = "missing, e.g. mids " + strings.Join(missing[:min(len(missing), 10)], ",")
	}
	r.Pass = r.Missing == 0 && r.Lost == 0
	r.Load1 = loadAvg()
	_ = c.emit(out, &r)
	return r.Pass
}

// redisStats is INFO's total_commands_processed of every -redis address,
// in its order (0 for one that does not answer).
func (c *scaleCtlConfig) redisStats() []int64 {
	n := make([]int64, len(c.redisAddrs))
	for i, addr := range c.redisAddrs {
		for _, l := range strings.Split(redisInfoOf(addr, "stats"), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
				n[i], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return n
}

// redisCmds is INFO commandstats: calls per command, summed over -redis.
func (c *scaleCtlConfig) redisCmds() map[string]int64 {
	out := map[string]int64{}
	for _, l := range strings.Split(c.redisInfo("commandstats"), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] += n
	}
	return out
}

// redisInfo is INFO section of every -redis address, one after the
// other.
func (c *scaleCtlConfig) redisInfo(section string) string {
	var b strings.Builder
	for _, addr := range c.redisAddrs {
		b.WriteString(redisInfoOf(addr, section) + "\n")
	}
	return b.String()
}

// redisInfoOf is INFO section of the redis-server at addr ("" if it does
// not answer).
func redisInfoOf(addr, section string) string {
	conn, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(5*time.Second))
	if err != nil {
		fmt.Fprintf(stderr, "bench scale: redis %s: %v\n", addr, err)
		return ""
	}
	s, err := redis.String(conn.Do("INFO", section))
	conn.Close()
	if err != nil {
		fmt.Fprintf(stderr, "bench scale: redis %s INFO: %v\n", addr, err)
	}
	return s
}

// loadAvg is the 1-minute load average (0 where /proc/loadavg is not).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
