// Command bench is imcloud's load generator: it opens N goim v2 clients
// (TCP or WebSocket, from several 127.0.0.x source addresses when N is
// large) into rooms, keeps them alive with heartbeats, and pushes through
// the HTTP push API (room, mids, keys or broadcast) at fixed rates or flat
// out. Every push body carries its scheduled send time and latency is
// measured from it, so queueing anywhere (the generator included) shows.
// With the epoll reader (Linux, the default) each read also carries the
// kernel's receive timestamp, and the summary gives the latency on
// arrival in the client sockets next to the latency as read: the
// difference is the generator's own delay in reading.
// It prints progress every second and a summary per rate step, with the
// CPU and RSS of every local process involved (-pids, and itself).
// The recover mode (recover.go) measures instead how long reconnecting
// clients wait for the pushes they missed (history on in the server).
//
//	go run ./examples/server -max-conns-per-ip 0 &
//	go run ./examples/bench -proto ws -conns 5000 -mode room -rate 100,300 -window 30s
//	go run ./examples/bench -mode idle -conns 15000 -idle-steps 5000,15000 -hold 60s
//	go run ./examples/bench -mode recover -conns 100 -missed 750 -rounds 20
//	go run ./examples/bench report -in results.jsonl -md BENCHMARKS.md
//
// It refuses non-loopback targets unless -allow-remote, and every run ends
// within -duration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

var stderr io.Writer = os.Stderr

// config is the command line.
type config struct {
	proto, tcpAddr, wsAddr, wsPath, api string
	conns, rooms, perIP, connectRate    int
	mode                                string
	rates                               []float64
	publishers, perPush                 int
	warmup, window, drain, duration     time.Duration
	heartbeat                           time.Duration
	bodySize, op                        int
	pids                                []namedPid
	allowRemote                         bool
	jsonOut, svgOut, scenario, label    string
	maxP99                              time.Duration
	stopOnFail                          bool
	idleSteps                           []int
	hold, settle                        time.Duration
	gcURL                               string
	rssProc                             string
	quiet                               bool
	cpuProfile                          string
	reader                              string
	pollers                             int
	pin                                 bool
	missed, rounds                      int
	sharedRoom                          string
	reconnectTCP, reconnectWS           string
	gateways                            []string // scale mode
	genIndex, firstIP                   int
	ctl, scaleRoom                      string
}

func parseFlags(args []string, out io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(out)
	var rates, pids, idleSteps string
	fs.StringVar(&c.proto, "proto", "ws", "client transport: tcp or ws")
	fs.StringVar(&c.tcpAddr, "tcp", "127.0.0.1:3101", "server TCP client address")
	fs.StringVar(&c.wsAddr, "ws", "127.0.0.1:3102", "server WebSocket address")
	fs.StringVar(&c.wsPath, "ws-path", "/sub", "WebSocket path")
	fs.StringVar(&c.api, "api", "127.0.0.1:3111", "push API address")
	fs.IntVar(&c.conns, "conns", 1000, "connections (recover mode: clients, default 1)")
	fs.IntVar(&c.rooms, "rooms", 1, "rooms (connection i joins room i mod rooms; room pushes go round robin)")
	fs.IntVar(&c.perIP, "per-ip", 900, "connections per 127.0.0.x source address (stay under the server's per-IP cap, default 20000)")
	fs.IntVar(&c.connectRate, "connect-rate", 1500, "new connections per second (the server accepts 2000/s per source and 10000/s in all by default)")
	fs.StringVar(&c.mode, "mode", "room", "room, mids, keys, all (broadcast), idle or recover (reconnects that replay what they missed; recover.go)")
	fs.StringVar(&rates, "rate", "100", "comma-separated push rates per second, one measured step each; max (or 0) is flat out")
	fs.IntVar(&c.publishers, "publishers", 8, "concurrent publishers (one keep-alive HTTP connection each)")
	fs.IntVar(&c.perPush, "per-push", 1, "mids or keys per push request (recover mode: default all the clients, at most 1000)")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "pushing before each measured window (not counted)")
	fs.DurationVar(&c.window, "window", 30*time.Second, "measured window of each step")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after a window, wait at most this long for its deliveries")
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "hard bound on the whole run")
	fs.DurationVar(&c.heartbeat, "heartbeat", 30*time.Second, "heartbeat interval of every connection")
	fs.IntVar(&c.bodySize, "body", 64, "push body bytes (at least the 30-byte timestamp header)")
	fs.IntVar(&c.op, "op", 1000, "push operation")
	fs.StringVar(&pids, "pids", "", "local processes to account for: name=pid,name=pid (the generator is added)")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow targets that are not loopback addresses")
	fs.StringVar(&c.jsonOut, "json", "", "append each step's result as a JSON line to this file")
	fs.StringVar(&c.svgOut, "svg", "", "write a plot of deliveries/s and p99 per second to this SVG file")
	fs.StringVar(&c.scenario, "scenario", "", "scenario name recorded in the results")
	fs.StringVar(&c.label, "label", "", "label recorded in the results")
	fs.DurationVar(&c.maxP99, "max-p99", 0, "a step passes only with p99 at most this (0: no latency criterion)")
	fs.BoolVar(&c.stopOnFail, "stop-on-fail", false, "stop stepping up rates at the first step that fails")
	fs.StringVar(&idleSteps, "idle-steps", "", "idle mode: connection counts at which server RSS is read (default: -conns)")
	fs.DurationVar(&c.hold, "hold", 60*time.Second, "idle mode: hold the connections this long with heartbeats")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "idle mode: wait before each RSS reading")
	fs.StringVar(&c.gcURL, "gc-url", "", "idle mode: GET this before each RSS reading (the server's /debug/pprof/heap?gc=1 runs a GC)")
	fs.StringVar(&c.rssProc, "rss-proc", "", "idle mode: the -pids name whose RSS is read per connection (default: the first)")
	fs.BoolVar(&c.quiet, "quiet", false, "no per-second progress")
	fs.StringVar(&c.reader, "reader", "epoll", "how the generator reads its connections: epoll (a few goroutines on level-triggered epoll sets, Linux) or goroutine (one per connection)")
	fs.IntVar(&c.pollers, "pollers", max(1, runtime.GOMAXPROCS(0)-1), "epoll reader goroutines (default GOMAXPROCS-1, at least 1: readers that always have data never let the Go scheduler poll the network, so with one per P the publishers' answers waited up to 10 ms)")
	fs.BoolVar(&c.pin, "pin", false, "pin each epoll reader's thread to a CPU of its own, the last ones the process may use (on 2 cores shared with the server: at 800 room pushes/s p99 as read 9-22 ms lower in two pairs and 0.1 core less, at 300/s p99 5-10 ms higher: the reader can no longer run on another CPU while the server holds its own)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file (what one delivery costs the client side)")
	fs.IntVar(&c.missed, "missed", 1000, "recover mode: pushes each user misses while offline, per round (at most the server's -history-len)")
	fs.IntVar(&c.rounds, "rounds", 20, "recover mode: disconnect, push, reconnect rounds")
	fs.StringVar(&c.reconnectTCP, "reconnect-tcp", "", "recover mode: another cloud node's TCP address, dialled in odd rounds, so that every reconnect changes nodes")
	fs.StringVar(&c.reconnectWS, "reconnect-ws", "", "recover mode: another cloud node's WebSocket address, dialled in odd rounds")
	fs.StringVar(&c.sharedRoom, "shared-room", "", "recover mode: a room every client joins (e.g. live://1; its stream is followed too); empty: none")
	var gateways string
	fs.StringVar(&gateways, "gateways", "", "scale mode: the gateways' WebSocket addresses, comma-separated (scale.go)")
	fs.IntVar(&c.genIndex, "gen-index", 0, "scale mode: this generator's index among the scenario's: mids from index*conns+1")
	fs.IntVar(&c.firstIP, "first-ip", 0, "scale mode: ordinal of the first 127.x source address (0: 127.0.0.1), -per-ip connections each")
	fs.StringVar(&c.ctl, "ctl", "127.0.0.1:0", "scale mode: control HTTP address (the coordinator, `bench scale`)")
	fs.StringVar(&c.scaleRoom, "scale-room", "live://scale", "scale mode: the room every connection joins")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if gateways != "" {
		c.gateways = strings.Split(gateways, ",")
	}
	if c.mode == "recover" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["conns"] {
			c.conns = 1
		}
		if !set["per-push"] {
			c.perPush = min(c.conns, 1000)
		}
	}
	var err error
	if c.rates, err = parseRates(rates); err != nil {
		return nil, err
	}
	if c.pids, err = parsePids(pids); err != nil {
		return nil, err
	}
	if c.idleSteps, err = parseInts(idleSteps); err != nil {
		return nil, err
	}
	if len(c.idleSteps) == 0 {
		c.idleSteps = []int{c.conns}
	}
	switch {
	case c.proto != "tcp" && c.proto != "ws":
		return nil, fmt.Errorf("bench: -proto %q is not tcp or ws", c.proto)
	case c.conns <= 0 || c.rooms <= 0 || c.perIP <= 0 || c.connectRate <= 0 || c.publishers <= 0 || c.perPush <= 0:
		return nil, errors.New("bench: -conns, -rooms, -per-ip, -connect-rate, -publishers and -per-push must be positive")
	case c.firstIP < 0 || (c.firstIP*c.perIP+c.conns)/c.perIP >= 250*256:
		return nil, errors.New("bench: too many connections for the 127.x source addresses")
	case c.missed <= 0 || c.rounds <= 0:
		return nil, errors.New("bench: -missed and -rounds must be positive")
	case c.heartbeat <= 0 || c.window <= 0 || c.duration <= 0:
		return nil, errors.New("bench: -heartbeat, -window and -duration must be positive")
	}
	if c.pollers < 1 {
		return nil, fmt.Errorf("bench: -pollers %d: at least one", c.pollers)
	}
	if c.reader != "epoll" && c.reader != "goroutine" {
		return nil, fmt.Errorf("bench: -reader %q is not epoll or goroutine", c.reader)
	}
	switch c.mode {
	case "room", "mids", "keys", "all", "idle", "recover", "scale":
	default:
		return nil, fmt.Errorf("bench: -mode %q is not room, mids, keys, all, idle, recover or scale", c.mode)
	}
	c.pids = append(c.pids, namedPid{"bench", os.Getpid()})
	if c.rssProc == "" {
		c.rssProc = c.pids[0].name
	}
	return c, nil
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "report" || os.Args[1] == "scale") {
		cmd := report
		if os.Args[1] == "scale" {
			cmd = scaleCtl
		}
		if err := cmd(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	targets := []string{cfg.api}
	if cfg.proto == "tcp" {
		targets = append(targets, cfg.tcpAddr, cfg.reconnectTCP)
	} else {
		targets = append(targets, cfg.wsAddr, cfg.reconnectWS)
	}
	targets = append(targets, cfg.gateways...)
	if err := checkLoopback(ctx, targets, cfg.allowRemote, net.DefaultResolver.LookupIPAddr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	stopProfile := func() {}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(2)
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	ok, err := run(ctx, cfg, os.Stdout)
	stopProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(3)
	}
}

// runState is what the progress printer reads.
type runState struct {
	cfg   *config
	rec   *recorder
	fl    *fleet
	ctr   [maxTags]pushCounters
	start time.Time
	plot  []plotPoint
}

// run connects, runs every step and reports; ok is false when a step
// failed.
func run(ctx context.Context, cfg *config, out io.Writer) (ok bool, err error) {
	load, _ := os.ReadFile("/proc/loadavg")
	base := result{Scenario: cfg.scenario, Label: cfg.label, Command: "go run ./examples/bench " + shellJoin(os.Args[1:]),
		Time: time.Now().UTC().Format(time.RFC3339), Load: strings.TrimSpace(string(load)), Proto: cfg.proto,
		Mode: cfg.mode, Rooms: cfg.rooms, Publishers: cfg.publishers, MaxP99: ms(cfg.maxP99)}
	if cfg.mode == "recover" {
		fmt.Fprintf(out, "bench: %s, load average at start: %s", strings.Join(os.Args, " "), load)
		return runRecover(ctx, cfg, base, out)
	}
	if cfg.mode == "scale" {
		return runScale(ctx, cfg, out)
	}
	st := &runState{cfg: cfg, rec: newRecorder(64), start: time.Now()}
	st.fl = newFleet(cfg, st.rec)
	if cfg.reader == "epoll" {
		if st.fl.polls, err = newPollers(st.fl, cfg.pollers, cfg.pin); err != nil {
			return false, err
		}
	}
	defer st.fl.close()
	fmt.Fprintf(out, "bench: %s, load average at start: %s", strings.Join(os.Args, " "), load)

	progCtx, stopProg := context.WithCancel(ctx)
	progDone := make(chan struct{})
	go func() { defer close(progDone); st.progress(progCtx) }()
	defer func() { stopProg(); <-progDone; st.writePlot() }()

	hbCtx, stopHB := context.WithCancel(ctx)
	defer stopHB()
	if cfg.mode == "idle" {
		return idle(ctx, hbCtx, st, base, out)
	}
	st.fl.connectTo(ctx, cfg.conns)
	fmt.Fprintf(out, "bench: %d connected (%d dial failures) in %.1f s\n", st.fl.live.Load(), st.fl.dialErrs.Load(), time.Since(st.start).Seconds())
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	go st.fl.heartbeat(hbCtx, cfg.heartbeat)
	tg, err := newTargeter(cfg, st.fl)
	if err != nil {
		return false, err
	}
	if err := probe(ctx, cfg, tg, st.rec, out); err != nil {
		return false, err
	}
	ok = true
	for i, rate := range cfg.rates {
		tag := i + 1
		d0 := st.fl.disconnects.Load()
		conns := st.fl.live.Load()
		var before []procUsage
		measureStart := make(chan struct{})
		go func() {
			select {
			case <-time.After(cfg.warmup):
				before = sampleProcs(cfg.pids)
			case <-ctx.Done():
			}
			close(measureStart)
		}()
		stepStart := time.Now()
		publishStep(ctx, cfg, tg, rate, cfg.warmup, cfg.window, tag, &st.ctr)
		<-measureStart
		after := sampleProcs(cfg.pids)
		cpuWindow := time.Since(stepStart.Add(cfg.warmup))
		c := &st.ctr[tag]
		deadline := time.Now().Add(cfg.drain)
		for st.rec.received(tag) < c.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("bench: stopped (-duration %v or a signal) during step %d", cfg.duration, tag)
		}
		received, hist, arrived := st.rec.window(tag)
		r := base
		r.Conns, r.Rate = conns, rate
		if r.Label == "" {
			r.Label = fmt.Sprintf("step %d", tag)
		}
		summarize(&r, stepTally{sent: c.sent.Load(), accepted: c.accepted.Load(), rejected: c.rejected.Load(),
			errors: c.errors.Load(), expected: c.expected.Load(), received: received,
			disconnects: st.fl.disconnects.Load() - d0, offered: rate * cfg.window.Seconds(),
			window: cfg.window, hist: hist, arrived: arrived, answered: &c.answered, maxP99: cfg.maxP99})
		r.Procs = procDelta(cfg.pids, before, after, cpuWindow)
		if bad := st.rec.badBodies(); bad > 0 {
			r.Extra = map[string]float64{"unparsable_bodies": float64(bad)}
		}
		printResult(out, &r)
		if err := appendJSON(cfg.jsonOut, &r); err != nil {
			return false, err
		}
		if !r.Pass {
			ok = false
			if cfg.stopOnFail {
				break
			}
		}
	}
	return ok, nil
}

// idle connects in steps, reads the server's RSS at each, then holds every
// connection with heartbeats for -hold and reports CPU over the hold.
func idle(ctx, hbCtx context.Context, st *runState, base result, out io.Writer) (bool, error) {
	cfg := st.cfg
	go st.fl.heartbeat(hbCtx, cfg.heartbeat)
	rssIdx := 0
	for i, p := range cfg.pids {
		if p.name == cfg.rssProc {
			rssIdx = i
		}
	}
	extra := map[string]float64{}
	var counts []int
	var rss []int64
	for _, n := range cfg.idleSteps {
		st.fl.connectTo(ctx, n)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		time.Sleep(cfg.settle)
		if cfg.gcURL != "" {
			if resp, err := http.Get(cfg.gcURL); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			} else {
				fmt.Fprintf(stderr, "bench: -gc-url: %v\n", err)
			}
			time.Sleep(time.Second)
		}
		live := int(st.fl.live.Load())
		u, _ := readProc(cfg.pids[rssIdx].pid)
		fmt.Fprintf(out, "bench: %d connected: %s RSS %.1f MB\n", live, cfg.rssProc, float64(u.RSSBytes)/(1<<20))
		counts, rss = append(counts, live), append(rss, u.RSSBytes)
		extra[fmt.Sprintf("rss_kb_at_%d", live)] = float64(u.RSSBytes >> 10)
	}
	if len(counts) >= 2 {
		extra["rss_bytes_per_conn"] = rssSlope(counts[0], rss[0], counts[len(counts)-1], rss[len(rss)-1])
	}
	d0 := st.fl.disconnects.Load()
	before := sampleProcs(cfg.pids)
	t0 := time.Now()
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
		return false, fmt.Errorf("bench: stopped (-duration %v or a signal) while holding", cfg.duration)
	}
	after := sampleProcs(cfg.pids)
	r := base
	r.Conns = st.fl.live.Load()
	r.Disconnects = st.fl.disconnects.Load() - d0
	r.WindowSec = time.Since(t0).Seconds()
	r.Procs = procDelta(cfg.pids, before, after, time.Since(t0))
	r.Extra = extra
	r.Pass = r.Disconnects == 0 && int(r.Conns) == cfg.idleSteps[len(cfg.idleSteps)-1]
	printResult(out, &r)
	return r.Pass, appendJSON(cfg.jsonOut, &r)
}

// progress prints one line per second until ctx ends and keeps the plot
// series.
func (st *runState) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	var lastAcc, lastRej uint64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h := st.rec.takeTick()
			dt := now.Sub(last).Seconds()
			last = now
			var acc, rej uint64
			for i := range st.ctr {
				acc += st.ctr[i].accepted.Load()
				rej += st.ctr[i].rejected.Load()
			}
			dps := float64(h.count()) / dt
			p99 := h.quantile(0.99)
			st.plot = append(st.plot, plotPoint{T: now.Sub(st.start).Seconds(), Dps: dps, P99: ms(p99),
				Pps: float64(acc-lastAcc) / dt, Conns: st.fl.live.Load()})
			if !st.cfg.quiet {
				fmt.Fprintf(stderr, "[%4.0fs] conns %6d  push/s %7.0f  rejected/s %6.0f  deliveries/s %9.0f  p99 %8.2f ms\n",
					now.Sub(st.start).Seconds(), st.fl.live.Load(), float64(acc-lastAcc)/dt, float64(rej-lastRej)/dt, dps, ms(p99))
			}
			lastAcc, lastRej = acc, rej
		}
	}
}

func (st *runState) writePlot() {
	if st.cfg.svgOut == "" || len(st.plot) == 0 {
		return
	}
	title := strings.TrimSpace(fmt.Sprintf("%s %s: %d %s connections, %s pushes", st.cfg.scenario, st.cfg.label, st.cfg.conns, st.cfg.proto, st.cfg.mode))
	if err := os.WriteFile(st.cfg.svgOut, renderSVG(title, st.plot), 0o644); err != nil {
		fmt.Fprintf(stderr, "bench: -svg: %v\n", err)
	}
}

// probe pushes untagged pushes one at a time until one is delivered to
// every target it should reach (twice in a row), so that a clustered
// server's asynchronous session registration and room counts have caught
// up before anything is measured. It gives up after 30 s.
func probe(ctx context.Context, cfg *config, tg targeter, rec *recorder, out io.Writer) error {
	api := &apiClient{addr: cfg.api}
	defer api.close()
	deadline := time.Now().Add(30 * time.Second)
	var path, body []byte
	good := 0
	for i := int64(0); good < 2; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "bench: probe: pushes still not fully delivered after 30 s; measuring anyway\n")
			return nil
		}
		before := rec.received(0)
		tgt := tg(path[:0], i*7919)
		path = tgt.path
		body = appendBody(body[:0], 0, time.Now(), cfg.bodySize)
		status, err := api.post(path, body)
		if err != nil || status != 200 {
			good = 0
			time.Sleep(200 * time.Millisecond)
			continue
		}
		wait := time.Now().Add(time.Second)
		for rec.received(0)-before < uint64(tgt.expected) && time.Now().Before(wait) {
			time.Sleep(10 * time.Millisecond)
		}
		if rec.received(0)-before >= uint64(tgt.expected) {
			good++
		} else {
			good = 0
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// shellJoin quotes the arguments that need it, so the recorded command can
// be pasted into a shell.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
