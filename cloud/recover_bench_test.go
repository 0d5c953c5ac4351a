package cloud_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/protocol"
)

// BenchmarkRecoverReplay: clients reconnect at once, each to its own user
// stream holding the pushes it missed (100-byte bodies) in a
// logic.MemoryHistory, over loopback TCP. A sample is one client's time
// from writing its auth frame to reading op 25, which follows the last
// replayed push; p50 and p99 are over every sample of the run. The
// node's accept rates are off: every client connects from one address.
func BenchmarkRecoverReplay(b *testing.B) {
	for _, tc := range []struct{ clients, missed int }{{1, 1000}, {100, 750}} {
		b.Run(fmt.Sprintf("%dx%d", tc.clients, tc.missed), func(b *testing.B) {
			h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
			srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator(), History: h, AcceptRatePerIP: -1, AcceptRate: -1})
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = srv.ServeTCP(ln) }()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			auths := make([][]byte, tc.clients)
			var off int64
			for u := range tc.clients {
				mid := int64(u + 1)
				s := imcloud.UserStream(mid)
				items := make([]imcloud.HistoryAppend, 0, tc.missed+1)
				for range tc.missed + 1 {
					items = append(items, imcloud.HistoryAppend{Stream: s, Entry: imcloud.HistoryEntry{
						Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: make([]byte, 100), Accepted: time.Now()}})
					off++
				}
				if err := h.Append(context.Background(), items); err != nil {
					b.Fatal(err)
				}
				pos := items[0].Entry.Offset // seen: the first push; missed: the rest
				auths[u] = encodeRaw(2, protocol.OpAuth, 1, fmt.Appendf(nil,
					`{"mid":%d,"recover":true,"positions":{"%s":{"epoch":"%s","offset":%d}}}`, mid, s, items[0].Epoch, pos))
			}
			var samples []time.Duration
			var mu sync.Mutex
			b.ResetTimer()
			for range b.N {
				conns := make([]net.Conn, tc.clients)
				for i := range conns {
					if conns[i], err = net.Dial("tcp", ln.Addr().String()); err != nil {
						b.Fatal(err)
					}
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i, nc := range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer nc.Close()
						<-start
						t0 := time.Now()
						if _, err := nc.Write(auths[i]); err != nil {
							b.Error(err)
							return
						}
						n, err := readUntilRecovery(bufio.NewReaderSize(nc, 64<<10))
						d := time.Since(t0)
						if err != nil || n != tc.missed {
							b.Errorf("replayed %d of %d: %v", n, tc.missed, err)
							return
						}
						mu.Lock()
						samples = append(samples, d)
						mu.Unlock()
					}()
				}
				close(start)
				wg.Wait()
			}
			b.StopTimer()
			slices.Sort(samples)
			if len(samples) > 0 {
				b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// readUntilRecovery reads TCP frames until op 25 and returns how many op
// 24 frames came before it.
func readUntilRecovery(br *bufio.Reader) (int, error) {
	var h [protocol.HeaderLen]byte
	n := 0
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return n, err
		}
		if _, err := br.Discard(int(binary.BigEndian.Uint32(h[:])) - protocol.HeaderLen); err != nil {
			return n, err
		}
		switch int32(binary.BigEndian.Uint32(h[8:])) {
		case protocol.OpPushAt:
			n++
		case protocol.OpRecovery:
			return n, nil
		}
	}
}
