package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allOps is every op docs/protocol.md names, plus application push ops.
var allOps = []int32{
	OpHeartbeat, OpHeartbeatReply, OpSendMsg, OpDisconnect, OpAuth, OpAuthReply,
	OpRaw, OpChangeRoom, OpChangeRoomReply, OpSub, OpSubReply, OpUnsub, OpUnsubReply,
	OpPushMin, 1001, 1002, math.MaxInt32,
}

// roundTrip encodes f with AppendFrame and WriteFrame, checks both produce
// the same bytes, and decodes them with ParseFrame and ReadFrame.
func roundTrip(t *testing.T, f Frame) {
	t.Helper()
	enc := AppendFrame(nil, &f)
	require.Len(t, enc, f.Size())

	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	require.NoError(t, WriteFrame(w, &f))
	require.NoError(t, w.Flush())
	require.Equal(t, enc, out.Bytes(), "WriteFrame and AppendFrame disagree")

	var p Frame
	n, err := ParseFrame(enc, &p, 0)
	require.NoError(t, err)
	require.Equal(t, len(enc), n)
	assertSameFrame(t, f, p)

	var r Frame
	br := bufio.NewReader(bytes.NewReader(enc))
	require.NoError(t, ReadFrame(br, &r, 0))
	assertSameFrame(t, f, r)
	require.ErrorIs(t, ReadFrame(br, &r, 0), io.EOF)
}

func assertSameFrame(t *testing.T, want, got Frame) {
	t.Helper()
	assert.Equal(t, want.Ver, got.Ver, "ver")
	assert.Equal(t, want.Op, got.Op, "op")
	assert.Equal(t, want.Seq, got.Seq, "seq")
	assert.Equal(t, len(want.Body), len(got.Body), "body length")
	assert.True(t, bytes.Equal(want.Body, got.Body), "body")
}

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	bodies := map[string][]byte{
		"nil":   nil,
		"empty": {},
		"short": []byte("x"),
		"json":  []byte(`{"mid":123,"room_id":"live://1000"}`),
		"cap":   bytes.Repeat([]byte{0xAB}, MaxInboundBody),
	}
	for _, op := range allOps {
		for _, ver := range []int16{VerGoim, VerExtensions} {
			for _, seq := range []int32{0, 1, -1, math.MaxInt32, math.MinInt32} {
				for name, body := range bodies {
					f := Frame{Ver: ver, Op: op, Seq: seq, Body: body}
					t.Run(fmt.Sprintf("op%d/ver%d/seq%d/%s", op, ver, seq, name), func(t *testing.T) {
						roundTrip(t, f)
					})
				}
			}
		}
	}
}

func TestFrameRoundTripLargeOutbound(t *testing.T) {
	t.Parallel()
	body := make([]byte, 1<<20+7) // outbound frames have no fixed cap
	for i := range body {
		body[i] = byte(i * 31)
	}
	roundTrip(t, Frame{Ver: VerGoim, Op: OpRaw, Body: body})

	// The inbound cap refuses the same frame.
	enc := AppendFrame(nil, &Frame{Ver: VerGoim, Op: OpRaw, Body: body})
	var f Frame
	_, err := ParseFrame(enc, &f, MaxInboundBody)
	require.ErrorIs(t, err, ErrBodyTooLarge)
	require.ErrorIs(t, ReadFrame(bufio.NewReader(bytes.NewReader(enc)), &f, MaxInboundBody), ErrBodyTooLarge)
}

// TestWriteFrameSmallBuffer covers WriteFrame when the writer has less than
// a header of room left, and a body larger than the writer's buffer.
func TestWriteFrameSmallBuffer(t *testing.T) {
	t.Parallel()
	frames := []Frame{
		{Ver: VerGoim, Op: OpPushMin, Body: []byte("first")},
		{Ver: VerExtensions, Op: OpAuthReply, Seq: 9, Body: bytes.Repeat([]byte("b"), 100)},
		{Ver: VerGoim, Op: OpHeartbeat, Seq: -3},
		{Ver: VerGoim, Op: OpSendMsg, Seq: 4, Body: []byte("abc")},
	}
	var want []byte
	for i := range frames {
		want = AppendFrame(want, &frames[i])
	}
	for _, size := range []int{16, 17, 20, 31, 64} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var out bytes.Buffer
			w := bufio.NewWriterSize(&out, size)
			for i := range frames {
				require.NoError(t, WriteFrame(w, &frames[i]))
			}
			require.NoError(t, w.Flush())
			require.Equal(t, want, out.Bytes())

			r := bufio.NewReaderSize(bytes.NewReader(out.Bytes()), 16)
			var f Frame
			for i := range frames {
				require.NoError(t, ReadFrame(r, &f, 0))
				assertSameFrame(t, frames[i], f)
			}
			require.ErrorIs(t, ReadFrame(r, &f, 0), io.EOF)
		})
	}
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestWriteFrameError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	w := bufio.NewWriterSize(failWriter{boom}, 16)
	// The header fills the buffer; the body forces a flush that fails.
	err := WriteFrame(w, &Frame{Ver: VerGoim, Op: OpPushMin, Body: []byte("body")})
	require.ErrorIs(t, err, boom)
	// The writer is now broken; every later write reports it.
	require.ErrorIs(t, WriteFrame(w, &Frame{Op: OpHeartbeat}), boom)
}

// TestReadFrameReusesBody checks that a Frame reused across reads keeps its
// body's backing array when it is large enough.
func TestReadFrameReusesBody(t *testing.T) {
	t.Parallel()
	var stream []byte
	stream = AppendFrame(stream, &Frame{Ver: 1, Op: OpPushMin, Body: bytes.Repeat([]byte("a"), 64)})
	stream = AppendFrame(stream, &Frame{Ver: 1, Op: OpPushMin, Body: []byte("short")})
	stream = AppendFrame(stream, &Frame{Ver: 1, Op: OpPushMin})
	r := bufio.NewReader(bytes.NewReader(stream))
	f := Frame{Body: make([]byte, 0, 128)}
	first := &f.Body[:1][0]
	for _, want := range []string{strings.Repeat("a", 64), "short", ""} {
		require.NoError(t, ReadFrame(r, &f, 0))
		require.Equal(t, want, string(f.Body))
		require.Same(t, first, &f.Body[:1][0], "body buffer was reallocated")
	}
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestGoimFrames compares the codec's output with goim v2 frames written out
// by hand from the layout in docs/protocol.md: packLen int32 | headerLen int16
// (16) | ver int16 | op int32 | seq int32 | body, big-endian.
func TestGoimFrames(t *testing.T) {
	t.Parallel()
	authJSON := []byte(`{"mid":123,"room_id":"live://1000","platform":"web","accepts":[1000,1001,1002]}`) // 79 bytes
	tests := []struct {
		name  string
		frame Frame
		want  []byte
	}{
		{
			name:  "auth ver1 op7 seq1",
			frame: Frame{Ver: 1, Op: OpAuth, Seq: 1, Body: authJSON},
			want: cat([]byte{
				0x00, 0x00, 0x00, 0x5f, // packLen 16+79 = 95
				0x00, 0x10, // headerLen 16
				0x00, 0x01, // ver 1
				0x00, 0x00, 0x00, 0x07, // op 7
				0x00, 0x00, 0x00, 0x01, // seq 1
			}, authJSON),
		},
		{
			name:  "auth ver2 opts into extensions",
			frame: Frame{Ver: VerExtensions, Op: OpAuth, Seq: 1, Body: authJSON},
			want: cat([]byte{
				0x00, 0x00, 0x00, 0x5f, 0x00, 0x10, 0x00, 0x02,
				0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01,
			}, authJSON),
		},
		{
			name:  "auth reply empty (goim)",
			frame: Frame{Ver: 1, Op: OpAuthReply, Seq: 1},
			want: []byte{
				0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01,
			},
		},
		{
			name:  "heartbeat op2 seq2",
			frame: Frame{Ver: 1, Op: OpHeartbeat, Seq: 2},
			want: []byte{
				0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02,
			},
		},
		{
			name:  "heartbeat reply op3 online 258",
			frame: Frame{Ver: 1, Op: OpHeartbeatReply, Seq: 2, Body: AppendHeartbeatBody(nil, 258)},
			want: []byte{
				0x00, 0x00, 0x00, 0x14, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02,
				0x00, 0x00, 0x01, 0x02, // online count 258
			},
		},
		{
			name:  "send msg reply op4 echoes seq, negative",
			frame: Frame{Ver: 1, Op: OpSendMsg, Seq: -2},
			want: []byte{
				0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0xff, 0xfe,
			},
		},
		{
			name:  "change room op12",
			frame: Frame{Ver: 1, Op: OpChangeRoom, Seq: 3, Body: []byte("live://1001")},
			want: cat([]byte{
				0x00, 0x00, 0x00, 0x1b, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x03,
			}, []byte("live://1001")),
		},
		{
			name:  "tcp push op1000 ver1 seq0",
			frame: Frame{Ver: 1, Op: 1000, Body: []byte("hi")},
			want: []byte{
				0x00, 0x00, 0x00, 0x12, 0x00, 0x10, 0x00, 0x01,
				0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00,
				'h', 'i',
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, AppendFrame(nil, &tt.frame))
			require.Equal(t, tt.want, AppendFrame([]byte("prefix"), &tt.frame)[len("prefix"):])
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			require.NoError(t, WriteFrame(w, &tt.frame))
			require.NoError(t, w.Flush())
			require.Equal(t, tt.want, out.Bytes())
			// And the hand-written frame decodes to the frame.
			var f Frame
			n, err := ParseFrame(tt.want, &f, MaxInboundBody)
			require.NoError(t, err)
			require.Equal(t, len(tt.want), n)
			assertSameFrame(t, tt.frame, f)
		})
	}
}

// TestGoimBatchFrame: an op 9 frame carrying two pushes, as a WebSocket
// client receives it.
func TestGoimBatchFrame(t *testing.T) {
	t.Parallel()
	want := []byte{
		// outer: packLen 16+18+23 = 57, headerLen 16, ver 1, op 9, seq 0
		0x00, 0x00, 0x00, 0x39, 0x00, 0x10, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
		// inner 1: packLen 18, op 1000, body "hi"
		0x00, 0x00, 0x00, 0x12, 0x00, 0x10, 0x00, 0x01,
		0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00,
		'h', 'i',
		// inner 2: packLen 23, op 1001, body {"n":1}
		0x00, 0x00, 0x00, 0x17, 0x00, 0x10, 0x00, 0x01,
		0x00, 0x00, 0x03, 0xe9, 0x00, 0x00, 0x00, 0x00,
		'{', '"', 'n', '"', ':', '1', '}',
	}
	var b Batch
	b.Reset()
	b.Append(&Frame{Ver: 1, Op: 1000, Body: []byte("hi")})
	b.Append(&Frame{Ver: 1, Op: 1001, Body: []byte(`{"n":1}`)})
	require.Equal(t, want, b.Bytes())
	require.Equal(t, 2, b.Count())
	require.Equal(t, len(want)-HeaderLen, b.BodyLen())

	// The same batch built from an already-encoded inner frame.
	b.Reset()
	b.AppendEncoded(want[16:34])
	b.Append(&Frame{Ver: 1, Op: 1001, Body: []byte(`{"n":1}`)})
	require.Equal(t, want, b.Bytes())
}

// tripwire fails the test if anything reads from it.
type tripwire struct{ t *testing.T }

func (w tripwire) Read([]byte) (int, error) {
	w.t.Error("the body was read")
	return 0, io.EOF
}

func rawHeader(packLen int32, headerLen int16) []byte {
	return []byte{
		byte(packLen >> 24), byte(packLen >> 16), byte(packLen >> 8), byte(packLen),
		byte(headerLen >> 8), byte(headerLen), 0x00, 0x01,
		0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x01,
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		in       []byte
		maxBody  int
		readErr  error // from ReadFrame
		parseErr error // from ParseFrame
	}{
		{"headerLen 0", cat(rawHeader(16, 0)), 0, ErrHeaderLen, ErrHeaderLen},
		{"headerLen 15", cat(rawHeader(16, 15)), 0, ErrHeaderLen, ErrHeaderLen},
		{"headerLen 17", cat(rawHeader(17, 17), []byte{0}), 0, ErrHeaderLen, ErrHeaderLen},
		{"headerLen -1", cat(rawHeader(16, -1)), 0, ErrHeaderLen, ErrHeaderLen},
		{"headerLen 4096", cat(rawHeader(16, 4096)), 0, ErrHeaderLen, ErrHeaderLen},
		{"packLen 0", rawHeader(0, 16), 0, ErrPackLen, ErrPackLen},
		{"packLen 15", rawHeader(15, 16), 0, ErrPackLen, ErrPackLen},
		{"packLen -1", rawHeader(-1, 16), 0, ErrPackLen, ErrPackLen},
		{"packLen min int32", rawHeader(math.MinInt32, 16), 0, ErrPackLen, ErrPackLen},
		{"packLen over cap", rawHeader(16+MaxInboundBody+1, 16), MaxInboundBody, ErrBodyTooLarge, ErrBodyTooLarge},
		{"packLen max int32 over cap", rawHeader(math.MaxInt32, 16), MaxInboundBody, ErrBodyTooLarge, ErrBodyTooLarge},
		{"over a small cap", cat(rawHeader(16+5, 16), []byte("hello")), 4, ErrBodyTooLarge, ErrBodyTooLarge},
		{"empty", nil, 0, io.EOF, ErrTruncated},
		{"one byte", []byte{0}, 0, io.ErrUnexpectedEOF, ErrTruncated},
		{"header cut at 15", rawHeader(16, 16)[:15], 0, io.ErrUnexpectedEOF, ErrTruncated},
		{"body cut", cat(rawHeader(16+5, 16), []byte("hell")), 0, io.ErrUnexpectedEOF, ErrTruncated},
		{"body missing", rawHeader(16+5, 16), 0, io.ErrUnexpectedEOF, ErrTruncated},
		{"body cut under cap", cat(rawHeader(16+MaxInboundBody, 16), []byte("x")), MaxInboundBody, io.ErrUnexpectedEOF, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Frame
			err := ReadFrame(bufio.NewReader(bytes.NewReader(tt.in)), &f, tt.maxBody)
			require.ErrorIs(t, err, tt.readErr)
			n, err := ParseFrame(tt.in, &f, tt.maxBody)
			require.ErrorIs(t, err, tt.parseErr)
			require.Zero(t, n)
		})
	}
}

// TestDecodeErrorsEveryTruncation cuts a valid frame at every length.
func TestDecodeErrorsEveryTruncation(t *testing.T) {
	t.Parallel()
	full := AppendFrame(nil, &Frame{Ver: 1, Op: OpAuth, Seq: 1, Body: []byte(`{"mid":1}`)})
	for i := 0; i < len(full); i++ {
		var f Frame
		_, err := ParseFrame(full[:i], &f, 0)
		require.ErrorIs(t, err, ErrTruncated, "cut at %d", i)
		err = ReadFrame(bufio.NewReader(bytes.NewReader(full[:i])), &f, 0)
		if i == 0 {
			require.ErrorIs(t, err, io.EOF)
		} else {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", i)
		}
	}
}

// TestReadFrameOverCapDoesNotReadBody: a frame over the cap is refused from
// its header alone.
func TestReadFrameOverCapDoesNotReadBody(t *testing.T) {
	t.Parallel()
	in := io.MultiReader(bytes.NewReader(rawHeader(16+MaxInboundBody+1, 16)), tripwire{t})
	var f Frame
	require.ErrorIs(t, ReadFrame(bufio.NewReader(in), &f, MaxInboundBody), ErrBodyTooLarge)
	require.Nil(t, f.Body, "no body buffer allocated for a refused frame")
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReadFrameReaderError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	var f Frame
	// Before any byte, inside the header and inside the body.
	for _, prefix := range [][]byte{nil, rawHeader(20, 16)[:7], cat(rawHeader(20, 16), []byte("ab"))} {
		r := bufio.NewReader(io.MultiReader(bytes.NewReader(prefix), errReader{boom}))
		require.ErrorIs(t, ReadFrame(r, &f, 0), boom)
	}
}

func TestReadFrameStream(t *testing.T) {
	t.Parallel()
	frames := []Frame{
		{Ver: 1, Op: OpAuth, Seq: 1, Body: []byte(`{"mid":1}`)},
		{Ver: 1, Op: OpHeartbeat, Seq: 2},
		{Ver: 2, Op: OpSub, Seq: 3, Body: []byte("1000,1001")},
		{Ver: 1, Op: OpSendMsg, Seq: 4, Body: bytes.Repeat([]byte("z"), 5000)},
	}
	var stream []byte
	for i := range frames {
		stream = AppendFrame(stream, &frames[i])
	}
	// ParseFrame walks the same stream.
	rest := stream
	for i := range frames {
		var f Frame
		n, err := ParseFrame(rest, &f, 0)
		require.NoError(t, err)
		assertSameFrame(t, frames[i], f)
		rest = rest[n:]
	}
	require.Empty(t, rest)
	// ReadFrame with a cap: the fourth frame is over it.
	r := bufio.NewReader(bytes.NewReader(stream))
	var f Frame
	for i := range 3 {
		require.NoError(t, ReadFrame(r, &f, MaxInboundBody))
		assertSameFrame(t, frames[i], f)
	}
	require.ErrorIs(t, ReadFrame(r, &f, MaxInboundBody), ErrBodyTooLarge)
}

func TestHeartbeatBody(t *testing.T) {
	t.Parallel()
	for _, n := range []int32{0, 1, 258, math.MaxInt32, -1, math.MinInt32} {
		body := AppendHeartbeatBody(nil, n)
		require.Len(t, body, 4)
		got, err := HeartbeatOnline(body)
		require.NoError(t, err)
		require.Equal(t, n, got)
	}
	require.Equal(t, []byte{'x', 0, 0, 1, 0}, AppendHeartbeatBody([]byte("x"), 256))
	for _, size := range []int{0, 1, 3, 5, 8} {
		_, err := HeartbeatOnline(make([]byte, size))
		require.ErrorIs(t, err, ErrHeartbeatBody, "size %d", size)
	}
}

func TestIsReserved(t *testing.T) {
	t.Parallel()
	for op := int32(-1); op < 1100; op++ {
		want := op == 0 || op == 1 || op == 5 || op == 10 || op == 11
		assert.Equal(t, want, IsReserved(op), "op %d", op)
	}
}

func TestFrameSize(t *testing.T) {
	t.Parallel()
	require.Equal(t, HeaderLen, (&Frame{}).Size())
	require.Equal(t, HeaderLen+3, (&Frame{Body: []byte("abc")}).Size())
}
