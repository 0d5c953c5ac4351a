package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// collect iterates body and returns copies of its frames and the iterator's
// error.
func collect(body []byte) ([]Frame, error) {
	var out []Frame
	it := NewBatchIter(body)
	var f Frame
	for it.Next(&f) {
		f.Body = append([]byte(nil), f.Body...)
		out = append(out, f)
	}
	// Next keeps returning false after the end or an error.
	if it.Next(&f) {
		panic("Next after the end returned true")
	}
	return out, it.Err()
}

func TestBatchRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 17, 300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			frames := make([]Frame, n)
			for i := range frames {
				frames[i] = Frame{Ver: VerGoim, Op: OpPushMin + int32(i%3), Body: []byte(fmt.Sprintf("push %d", i))}
				if i%5 == 0 {
					frames[i].Body = nil
				}
			}
			var b Batch
			b.Reset()
			want := 0
			for i := range frames {
				if i%2 == 0 {
					b.Append(&frames[i])
				} else {
					b.AppendEncoded(AppendFrame(nil, &frames[i]))
				}
				want += frames[i].Size()
			}
			require.Equal(t, n, b.Count())
			require.Equal(t, want, b.BodyLen())

			enc := b.Bytes()
			var outer Frame
			used, err := ParseFrame(enc, &outer, 0)
			require.NoError(t, err)
			require.Equal(t, len(enc), used)
			require.Equal(t, OpRaw, outer.Op)
			require.Equal(t, VerGoim, outer.Ver)
			require.Zero(t, outer.Seq)

			// Through a stream too, as a client would read it.
			var read Frame
			require.NoError(t, ReadFrame(bufio.NewReader(bytes.NewReader(enc)), &read, 0))
			require.True(t, bytes.Equal(outer.Body, read.Body))

			got, err := collect(outer.Body)
			require.NoError(t, err)
			require.Len(t, got, n)
			for i := range frames {
				assertSameFrame(t, frames[i], got[i])
			}
		})
	}
}

func TestBatchZeroValueAndReset(t *testing.T) {
	t.Parallel()
	var b Batch
	require.Zero(t, b.Count())
	require.Zero(t, b.BodyLen())
	empty := []byte{
		0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
	}
	require.Equal(t, empty, b.Bytes(), "the zero Batch is an empty op 9 frame")

	// Append without Reset works on the zero value.
	var z Batch
	z.Append(&Frame{Ver: 1, Op: 1000, Body: []byte("a")})
	require.Equal(t, 1, z.Count())
	var z2 Batch
	z2.AppendEncoded(AppendFrame(nil, &Frame{Ver: 1, Op: 1000, Body: []byte("a")}))
	require.Equal(t, z.Bytes(), z2.Bytes())

	// Bytes mid-way, then more appends: the header follows.
	b.Append(&Frame{Ver: 1, Op: 1000, Body: []byte("one")})
	first := append([]byte(nil), b.Bytes()...)
	b.Append(&Frame{Ver: 1, Op: 1001, Body: []byte("two")})
	second := b.Bytes()
	require.Len(t, second, len(first)+HeaderLen+3)
	got, err := collect(second[HeaderLen:])
	require.NoError(t, err)
	require.Len(t, got, 2)
	var outer Frame
	_, err = ParseFrame(second, &outer, 0)
	require.NoError(t, err)
	require.Len(t, outer.Body, b.BodyLen())

	// Reset keeps the buffer and empties the batch.
	before := &b.Bytes()[0]
	b.Reset()
	require.Zero(t, b.Count())
	require.Zero(t, b.BodyLen())
	require.Equal(t, empty, b.Bytes())
	require.Same(t, before, &b.Bytes()[0])
}

func TestBatchIterErrors(t *testing.T) {
	t.Parallel()
	push := AppendFrame(nil, &Frame{Ver: 1, Op: 1000, Body: []byte("hi")})
	nested := AppendFrame(nil, &Frame{Ver: 1, Op: OpRaw, Body: push})
	badHeaderLen := append([]byte(nil), push...)
	badHeaderLen[5] = 17
	badPackLen := append([]byte(nil), push...)
	badPackLen[3] = 15

	tests := []struct {
		name string
		body []byte
		good int // frames yielded before the error
		err  error
	}{
		{"empty", nil, 0, nil},
		{"one push", push, 1, nil},
		{"garbage", []byte("hello, world"), 0, ErrTruncated},
		{"garbage 16 bytes", []byte("0123456789abcdef"), 0, ErrHeaderLen},
		{"zeros", make([]byte, 32), 0, ErrHeaderLen},
		{"bad packLen", badPackLen, 0, ErrPackLen},
		{"push then trailing bytes", cat(push, []byte{0, 0, 0}), 1, ErrTruncated},
		{"truncated inner frame", cat(push, push[:len(push)-1]), 1, ErrTruncated},
		{"truncated inner header", cat(push, push[:10]), 1, ErrTruncated},
		{"bad inner headerLen", cat(push, badHeaderLen), 1, ErrHeaderLen},
		{"nested batch", nested, 0, ErrNestedBatch},
		{"nested batch after a push", cat(push, push, nested, push), 2, ErrNestedBatch},
		{"empty nested batch", AppendFrame(nil, &Frame{Ver: 1, Op: OpRaw}), 0, ErrNestedBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(tt.body)
			require.Len(t, got, tt.good)
			if tt.err == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.err)
			}
		})
	}
}

// TestBatchIterAliases checks inner bodies alias the batch body (no copy).
func TestBatchIterAliases(t *testing.T) {
	t.Parallel()
	var b Batch
	b.Append(&Frame{Ver: 1, Op: 1000, Body: []byte("abc")})
	body := b.Bytes()[HeaderLen:]
	it := NewBatchIter(body)
	var f Frame
	require.True(t, it.Next(&f))
	require.Same(t, &body[HeaderLen], &f.Body[0])
	require.Equal(t, 3, cap(f.Body), "an inner body cannot be appended into its neighbour")
}
