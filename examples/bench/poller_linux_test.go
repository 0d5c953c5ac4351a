//go:build linux

package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

// serverFrame is an unmasked server WebSocket frame.
func serverFrame(fin bool, op byte, payload []byte) []byte {
	b := wsClientFrame(op, payload)
	// wsClientFrame masks with a zero key: drop the mask bit and key.
	hl := len(b) - len(payload) - 4
	b[1] &^= 0x80
	out := append([]byte(nil), b[:hl]...)
	if !fin {
		out[0] &^= 0x80
	}
	return append(out, payload...)
}

// TestConsumeWS: the epoll reader's WebSocket parser takes whole
// messages, assembles fragmented ones, skips pings and pongs, waits for
// the rest of a partial frame, ends on close and refuses masked frames.
func TestConsumeWS(t *testing.T) {
	now := time.Unix(1000, 0)
	goim := func(tag int, ago time.Duration) []byte {
		return protocol.AppendFrame(nil, &protocol.Frame{Ver: 1, Op: 1000, Body: appendBody(nil, tag, now.Add(-ago), 40)})
	}
	big := make([]byte, 0, 300)
	for len(big) < 200 { // a 126-length header
		big = append(big, goim(4, 0)...)
	}
	var b []byte
	b = append(b, serverFrame(true, 0x2, goim(1, time.Millisecond))...)
	b = append(b, serverFrame(true, 0x9, []byte("ping"))...)
	two := goim(2, 2*time.Millisecond)
	b = append(b, serverFrame(false, 0x2, two[:10])...)
	b = append(b, serverFrame(true, 0xA, nil)...) // a control frame between fragments
	b = append(b, serverFrame(true, 0x0, two[10:])...)
	b = append(b, serverFrame(true, 0x2, big)...)
	whole := len(b)
	next := serverFrame(true, 0x2, goim(3, 0))
	b = append(b, next[:7]...)

	c := &client{ws: true, fd: -1}
	pc := &polled{c: c, pending: b}
	bad := 0
	used, ds, err := consumeWS(pc, pc.pending, now.UnixNano(), nil, &bad)
	require.NoError(t, err)
	require.Zero(t, bad)
	require.Equal(t, whole, used, "the partial frame waits for more bytes")
	require.Len(t, ds, 2+len(big)/len(goim(4, 0)))
	require.Equal(t, delivery{1, time.Millisecond}, ds[0])
	require.Equal(t, delivery{2, 2 * time.Millisecond}, ds[1])

	pc = &polled{c: c, pending: serverFrame(true, 0x8, []byte{3, 0xe9})}
	_, _, err = consumeWS(pc, pc.pending, 0, nil, &bad)
	require.ErrorIs(t, err, io.EOF)

	masked := wsClientFrame(0x2, goim(1, 0))
	pc = &polled{c: c, pending: masked}
	_, _, err = consumeWS(pc, pc.pending, 0, nil, &bad)
	require.Error(t, err, "servers never mask")
}
