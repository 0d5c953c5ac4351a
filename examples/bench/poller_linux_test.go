//go:build linux

package main

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

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
	rx := rxTime{read: now.UnixNano(), kernel: now.Add(-time.Millisecond / 2).UnixNano()}
	used, ds, err := consumeWS(pc, pc.pending, rx, nil, &bad)
	require.NoError(t, err)
	require.Zero(t, bad)
	require.Equal(t, whole, used, "the partial frame waits for more bytes")
	require.Len(t, ds, 2+len(big)/len(goim(4, 0)))
	require.Equal(t, delivery{1, time.Millisecond, time.Millisecond / 2}, ds[0])
	require.Equal(t, delivery{2, 2 * time.Millisecond, 3 * time.Millisecond / 2}, ds[1])
	require.Equal(t, delivery{4, 0, 0}, ds[2], "arrival is never before the scheduled send")

	pc = &polled{c: c, pending: serverFrame(true, 0x8, []byte{3, 0xe9})}
	_, _, err = consumeWS(pc, pc.pending, rxTime{}, nil, &bad)
	require.ErrorIs(t, err, io.EOF)

	masked := wsClientFrame(0x2, goim(1, 0))
	pc = &polled{c: c, pending: masked}
	_, _, err = consumeWS(pc, pc.pending, rxTime{}, nil, &bad)
	require.Error(t, err, "servers never mask")
}

// cmsg is one control message as the kernel lays it out (CMSG_SPACE
// bytes, the header saying CMSG_LEN).
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, syscall.CmsgSpace(len(data)))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(syscall.CmsgLen(len(data)))
	copy(b[syscall.CmsgLen(0):], data)
	return b
}

// setLen rewrites the length in a control message's header.
func setLen(b []byte, n int) { (*syscall.Cmsghdr)(unsafe.Pointer(&b[0])).SetLen(n) }

// TestKernelStamp: the receive timestamp is found after other control
// messages; a buffer without one, or a truncated or malformed one, gives 0.
func TestKernelStamp(t *testing.T) {
	want := int64(1700000000)*1e9 + 123456789
	spec := syscall.NsecToTimespec(want)
	ts := unsafe.Slice((*byte)(unsafe.Pointer(&spec)), unsafe.Sizeof(spec))
	other := cmsg(syscall.SOL_SOCKET, syscall.SCM_RIGHTS, []byte{1, 2, 3, 4, 5})
	stamp := cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts)

	require.Equal(t, want, kernelStamp(stamp))
	require.Equal(t, want, kernelStamp(append(append([]byte(nil), other...), stamp...)))
	require.Zero(t, kernelStamp(nil))
	require.Zero(t, kernelStamp(other))
	require.Zero(t, kernelStamp(stamp[:len(stamp)-4]), "truncated")
	bad := append([]byte(nil), stamp...)
	setLen(bad, 4) // shorter than its header
	require.Zero(t, kernelStamp(bad))
	require.Zero(t, kernelStamp(cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts[:len(ts)/2])), "too short for a timespec")
}

// TestRecvmsgStamp: on a real loopback TCP socket with SO_TIMESTAMPNS, a
// recvmsg read carries the time the kernel queued the data, between the
// write and the read. The kernel turns receive timestamps on
// asynchronously when the first socket asks, so the first segments may
// have none (the generator then leaves their arrival out).
func TestRecvmsgStamp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	srv, err := ln.Accept()
	require.NoError(t, err)
	defer srv.Close()
	fd, err := detach(client)
	require.NoError(t, err)
	defer syscall.Close(fd)
	require.NoError(t, syscall.SetNonblock(fd, false))
	require.NoError(t, syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1))

	buf, oob := make([]byte, 16), make([]byte, 64)
	var before, after, got int64
	for i := 0; i < 100 && got == 0; i++ {
		before = time.Now().UnixNano()
		_, err = srv.Write([]byte("hello"))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
		n, oobn, _, _, err := syscall.Recvmsg(fd, buf, oob, 0)
		after = time.Now().UnixNano()
		require.NoError(t, err)
		require.Equal(t, "hello", string(buf[:n]))
		got = kernelStamp(oob[:oobn])
	}
	require.GreaterOrEqual(t, got, before)
	require.Less(t, got, after-int64(10*time.Millisecond), "the arrival, not the read 20 ms later")
}

// TestPinThread: a pinned thread may run on its CPU only; CPUs that do
// not exist are refused. The test's thread ends with its goroutine, as a
// reader's does.
func TestPinThread(t *testing.T) {
	cpus, err := allowedCPUs()
	require.NoError(t, err)
	require.NotEmpty(t, cpus)
	last := cpus[len(cpus)-1]
	got := make(chan []int, 1)
	errs := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := pinThread(last); err != nil {
			errs <- err
			return
		}
		on, err := allowedCPUs() // this thread's CPUs now
		if err != nil {
			errs <- err
			return
		}
		got <- on
	}()
	select {
	case on := <-got:
		require.Equal(t, []int{last}, on)
	case err := <-errs:
		t.Fatal(err)
	}
	after, err := allowedCPUs()
	require.NoError(t, err)
	require.Equal(t, cpus, after, "the process keeps its CPUs")
	require.Error(t, pinThread(-1))
	require.Error(t, pinThread(len(cpuSet{})*64))
}
