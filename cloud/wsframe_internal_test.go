package cloud

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
)

// TestAppendWSFrameHeader: the appended header is the one ws.WriteHeader
// writes, for each length encoding, after what dst held, and appending
// into spare capacity allocates nothing.
func TestAppendWSFrameHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 40} {
		for _, op := range []ws.OpCode{ws.OpBinary, ws.OpPong, ws.OpClose} {
			var want bytes.Buffer
			want.WriteString("prefix")
			if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: op, Length: int64(n)}); err != nil {
				t.Fatal(err)
			}
			got := appendWSFrameHeader([]byte("prefix"), op, n)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("op %v, length %d: got % x, want % x", op, n, got, want.Bytes())
			}
		}
	}
	buf := make([]byte, 0, 64)
	if allocs := testing.AllocsPerRun(100, func() { buf = appendWSFrameHeader(buf[:0], ws.OpBinary, 1000) }); allocs != 0 {
		t.Errorf("%v allocations per header, want 0", allocs)
	}
}
