package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/protocol"
)

// The idle-connection memory benchmark of the gateway in isolation: one
// cloud.Server in this process, its clients in another. examples/bench's
// idle scenario measures the same through the whole server binary.

// TestRSSClientHelper is not a test: BenchmarkIdleConnRSS runs the test
// binary again with IMCLOUD_RSS_ADDR set, so the clients live in another
// process. It opens IMCLOUD_RSS_N authenticated goim connections (TCP, or
// WebSocket when IMCLOUD_RSS_WS=1) and holds them until stdin closes. With
// IMCLOUD_RSS_ROOMS=k above 1 they authenticate with ver 2 and each joins
// k-1 more rooms (op 18), of a thousand. With IMCLOUD_RSS_BEATS=1 each
// sends a heartbeat after its auth, as every live client does.
func TestRSSClientHelper(t *testing.T) {
	addr := os.Getenv("IMCLOUD_RSS_ADDR")
	if addr == "" {
		t.Skip("helper process for BenchmarkIdleConnRSS")
	}
	n, _ := strconv.Atoi(os.Getenv("IMCLOUD_RSS_N"))
	isWS := os.Getenv("IMCLOUD_RSS_WS") == "1"
	rooms, _ := strconv.Atoi(os.Getenv("IMCLOUD_RSS_ROOMS"))
	beat := os.Getenv("IMCLOUD_RSS_BEATS") == "1"
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		var auth []byte
		if rooms > 1 {
			body := fmt.Sprintf(`{"mid":%d,"room_id":"live://rss-%d","platform":"web","accepts":[1000]}`, i+1, i%1000)
			auth = protocol.AppendFrame(nil, &protocol.Frame{Ver: 2, Op: protocol.OpAuth, Seq: 1, Body: []byte(body)})
			for k := 1; k < rooms; k++ {
				room := fmt.Sprintf("live://rss-%d", (i+k*101)%1000)
				auth = protocol.AppendFrame(auth, &protocol.Frame{Ver: 2, Op: protocol.OpJoin, Seq: int32(1 + k), Body: []byte(room)})
			}
		} else {
			body := fmt.Sprintf(`{"mid":%d,"room_id":"live://rss","platform":"web","accepts":[1000]}`, i+1)
			auth = protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: protocol.OpAuth, Seq: 1, Body: []byte(body)})
		}
		if beat {
			auth = protocol.AppendFrame(auth, &protocol.Frame{Ver: 1, Op: protocol.OpHeartbeat, Seq: 100})
		}
		var nc net.Conn
		var err error
		if isWS {
			nc, _, _, err = ws.Dial(context.Background(), "ws://"+addr+"/sub")
			if err == nil {
				err = wsutil.WriteClientBinary(nc, auth)
			}
		} else {
			nc, err = net.Dial("tcp", addr)
			if err == nil {
				_, err = nc.Write(auth)
			}
		}
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		conns = append(conns, nc)
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	for _, nc := range conns {
		_ = nc.Close()
	}
}

func rssKB() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

// tcpMemPages is the kernel's TCP socket memory (pages) from
// /proc/net/sockstat.
func tcpMemPages() int64 {
	b, _ := os.ReadFile("/proc/net/sockstat")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "TCP:") {
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "mem" {
					v, _ := strconv.ParseInt(f[i+1], 10, 64)
					return v
				}
			}
		}
	}
	return 0
}

// BenchmarkIdleConnRSS reports the server's RSS per idle authenticated
// plaintext connection (TCP, and WebSocket through ServeWS): the slope
// between 5,000 and 15,000 connections held by clients in other processes,
// at default GOGC. Run it with -benchtime=1x, one transport per process
// (-bench 'IdleConnRSS/tcp$', then 'IdleConnRSS/ws$'), since memory the
// first one freed would flatter the second; it is not a -race figure.
// tcp-beat is tcp with every connection sending one heartbeat after its
// auth; tcp-rooms10 is tcp with every connection in 10 rooms (a primary
// room and 9 joined, of a thousand rooms) and one heartbeat.
func BenchmarkIdleConnRSS(b *testing.B) {
	if os.Getenv("IMCLOUD_RSS_ADDR") != "" {
		b.Skip()
	}
	for _, transport := range []string{"tcp", "ws"} {
		b.Run(transport, func(b *testing.B) { benchIdleConnRSS(b, transport == "ws", 1, false) })
	}
	b.Run("tcp-beat", func(b *testing.B) { benchIdleConnRSS(b, false, 1, true) })
	b.Run("tcp-rooms10", func(b *testing.B) { benchIdleConnRSS(b, false, 10, true) })
}

func benchIdleConnRSS(b *testing.B, isWS bool, rooms int, beat bool) {
	debug.FreeOSMemory()
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), MaxConnsPerIP: -1, AcceptRate: -1, AcceptRatePerIP: -1,
		MaxHandshakes: -1, MaxHandshakesPerIP: -1, InboundRate: -1})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		if isWS {
			_ = srv.ServeWS(ln)
		} else {
			_ = srv.ServeTCP(ln)
		}
	}()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	spawn := func(n int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRSSClientHelper$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), "IMCLOUD_RSS_ADDR="+ln.Addr().String(), "IMCLOUD_RSS_N="+strconv.Itoa(n))
		if isWS {
			cmd.Env = append(cmd.Env, "IMCLOUD_RSS_WS=1")
		}
		if rooms > 1 {
			cmd.Env = append(cmd.Env, "IMCLOUD_RSS_ROOMS="+strconv.Itoa(rooms))
		}
		if beat {
			cmd.Env = append(cmd.Env, "IMCLOUD_RSS_BEATS=1")
		}
		stdin, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if !strings.HasPrefix(line, "ready") {
			b.Fatalf("helper: %q", line)
		}
		b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
		return cmd
	}
	var ms [2]runtime.MemStats
	settle := func(want int64, m *runtime.MemStats) (int64, int64) {
		deadline := time.Now().Add(60 * time.Second)
		joins := uint64(want) * uint64(rooms-1)
		for (srv.Stats().Sessions < want || srv.Stats().Joins < joins) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if st := srv.Stats(); st.Sessions < want || st.Joins < joins {
			b.Fatalf("only %d of %d sessions, %d of %d joins", st.Sessions, want, st.Joins, joins)
		}
		time.Sleep(time.Second)
		runtime.GC()
		time.Sleep(500 * time.Millisecond)
		runtime.ReadMemStats(m)
		return rssKB(), tcpMemPages()
	}
	for i := 0; i < b.N; i++ {
		spawn(5000)
		r1, k1 := settle(5000, &ms[0])
		spawn(10000)
		r2, k2 := settle(15000, &ms[1])
		perConn := float64(r2-r1) * 1024 / 10000
		b.ReportMetric(perConn, "B-RSS/conn")
		b.ReportMetric(float64(k2-k1)*float64(os.Getpagesize())/10000/2, "B-kernel-tcp/conn-side")
		b.Logf("RSS %d KB at 5,000, %d KB at 15,000: %.0f B per connection; kernel TCP mem %d -> %d pages (both ends)", r1, r2, perConn, k1, k2)
		b.Logf("per connection: heap in use %d B, stacks %d B (runtime.MemStats slope)",
			int64(ms[1].HeapInuse-ms[0].HeapInuse)/10000, int64(ms[1].StackInuse-ms[0].StackInuse)/10000)
	}
}
