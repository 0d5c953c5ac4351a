package cloud

import (
	"net"
	"syscall"
	"unsafe"
)

// fdWriter is the non-blocking write path of a plain TCP socket on Linux:
// write(2) on the descriptor, which the Go runtime keeps non-blocking,
// until the socket is full. It goes through RawConn.Control, not
// RawConn.Write or net.Conn.Write: the writer claim already keeps other
// writes out and the call never waits for the poller, so their write
// lock, poll reset and deadline check buy nothing here, while Control
// still keeps the descriptor from being closed (and reused) meanwhile.
type fdWriter struct {
	rc syscall.RawConn
	// fn is write bound once (tryWrite allocates nothing); buf, n and err
	// are its argument and results, used by one writer claim at a time.
	fn  func(fd uintptr)
	buf []byte
	n   int
	err error
}

// newSockWriter returns the non-blocking path to nc's socket: a plain
// TCP connection, possibly behind a replay of bytes read ahead. Others
// (TLS) have none: nil.
func newSockWriter(nc net.Conn) sockWriter {
	switch t := nc.(type) {
	case *net.TCPConn:
		rc, err := t.SyscallConn()
		if err != nil {
			return nil
		}
		w := &fdWriter{rc: rc}
		w.fn = w.write
		return w
	case *prefixConn:
		return newSockWriter(t.Conn)
	}
	return nil
}

func (w *fdWriter) tryWrite(b []byte) (int, error) {
	w.buf, w.n, w.err = b, 0, nil
	err := w.rc.Control(w.fn)
	n, werr := w.n, w.err
	w.buf, w.err = nil, nil
	if err == nil {
		err = werr
	}
	return n, err
}

// write is tryWrite's loop on the descriptor: it writes w.buf until done
// or the socket is full, leaving the count in w.n and a failure in w.err.
func (w *fdWriter) write(fd uintptr) {
	b := w.buf
	for w.n < len(b) {
		p := b[w.n:]
		// RawSyscall: the descriptor is non-blocking, so the call cannot
		// block, and the scheduler need not hand the P off around it.
		m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == 0 && int(m) > 0 {
			w.n += int(m)
		}
		switch e {
		case 0, syscall.EINTR:
		case syscall.EAGAIN:
			return
		default:
			w.err = e
			return
		}
	}
}
