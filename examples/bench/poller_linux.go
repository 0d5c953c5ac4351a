//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/imcloud/imcloud/protocol"
)

// The generator's receive side on Linux: a few goroutines, each waiting on
// its own level-triggered epoll set, read every connection that has data
// with one read(2) and parse what arrived. With a goroutine per connection
// (fleet.read), every delivery cost the generator a netpoll wake-up, a
// goroutine switch and two reads (the data, then EAGAIN before parking),
// on the same two cores as the server it measures; here it costs one read
// and a share of one epoll_wait.
//
// Reads go through recvmsg(2) with SO_TIMESTAMPNS on, so each one also
// says when the kernel queued the data in the client's socket: the
// report gives that arrival latency next to the latency as read, which
// shows how much of the latency is the generator's own delay in reading.
//
// With -pin each reader's thread is pinned to a CPU of its own (the last
// CPUs the process may use). On this project's 2-core machine, shared with
// the server, that is a trade, so it is off by default: at 800 room
// pushes/s it took 9-22 ms off the p99 as read (two pairs) and 0.1 core
// off the generator, at 300/s it added 5-10 ms, in the client sockets too
// (the reader could no longer move to the other CPU while the server ran
// on its own; pinning one thread does not keep other threads off a CPU).
//
// After its handshake a connection's socket is moved out of Go's netpoller
// (its descriptor is duplicated and the net.Conn closed), so only the
// poller sees its events. Heartbeats and pongs are written to the raw
// descriptor (small, non-blocking writes).

// pollers is the fleet's set of epoll readers.
type pollers struct {
	f    *fleet
	eps  []*poller
	mu   sync.Mutex
	n    int
	stop atomic.Bool
	wg   sync.WaitGroup
}

// poller is one epoll set and its goroutine.
type poller struct {
	ps    *pollers
	f     *fleet
	epfd  int
	mu    sync.Mutex
	conns map[int32]*polled
	oob   []byte // recvmsg control buffer: the receive timestamp
}

// polled is one connection's receive state.
type polled struct {
	c       *client
	fd      int
	pending []byte // bytes of an incomplete frame (TCP) or WS frame
	msg     []byte // payload of a fragmented WS message being assembled
	ds      []delivery
}

func newPollers(f *fleet, n int, pin bool) (*pollers, error) {
	ps := &pollers{f: f}
	var cpus []int
	if pin {
		var err error
		if cpus, err = allowedCPUs(); err != nil {
			return nil, err
		}
	}
	for i := 0; i < n; i++ {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			ps.close()
			return nil, fmt.Errorf("bench: epoll: %w", err)
		}
		p := &poller{ps: ps, f: f, epfd: epfd, conns: make(map[int32]*polled), oob: make([]byte, 64)}
		ps.eps = append(ps.eps, p)
		ps.wg.Add(1)
		cpu := -1
		if len(cpus) > 0 {
			cpu = cpus[len(cpus)-1-i%len(cpus)]
		}
		started := make(chan error, 1)
		go p.run(cpu, started)
		if err := <-started; err != nil {
			ps.close()
			return nil, err
		}
	}
	return ps, nil
}

// add moves c's socket to a poller; leftover is what the handshake read
// ahead.
func (ps *pollers) add(c *client, leftover []byte) error {
	fd, err := detach(c.conn)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.fd, c.detached = fd, true
	c.wmu.Unlock()
	ps.mu.Lock()
	p := ps.eps[ps.n%len(ps.eps)]
	ps.n++
	ps.mu.Unlock()
	pc := &polled{c: c, fd: fd, pending: append([]byte(nil), leftover...)}
	if len(pc.pending) > 0 {
		// Frames that arrived with the auth reply, parsed before the
		// poller can see the connection.
		if err := p.parse(pc, pc.pending, rxTime{read: time.Now().UnixNano()}); err != nil {
			c.closeRaw()
			return err
		}
	}
	// Without timestamps (an old kernel) the arrival latency is left out.
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	p.mu.Lock()
	p.conns[int32(fd)] = pc
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, int32(fd))
		p.mu.Unlock()
		c.closeRaw()
		return fmt.Errorf("bench: epoll add: %w", err)
	}
	return nil
}

// detach returns a duplicate of nc's descriptor (still non-blocking) and
// closes nc, which takes the socket out of Go's netpoller.
func detach(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("bench: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	syscall.CloseOnExec(fd)
	_ = nc.Close()
	return fd, nil
}

// run reads until the pollers close; with cpu >= 0 its thread is pinned
// there first (started reports whether that worked).
func (p *poller) run(cpu int, started chan<- error) {
	defer p.ps.wg.Done()
	if cpu >= 0 {
		// Locked for good: the thread ends with the goroutine, so its
		// affinity never reaches other goroutines.
		runtime.LockOSThread()
		if err := pinThread(cpu); err != nil {
			started <- err
			return
		}
	}
	started <- nil
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for !p.ps.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		now := time.Now().UnixNano()
		for _, ev := range events[:n] {
			p.mu.Lock()
			pc := p.conns[ev.Fd]
			p.mu.Unlock()
			if pc == nil {
				continue
			}
			if err := p.readOnce(pc, buf, now); err != nil {
				p.drop(pc, err)
			}
		}
	}
}

// readOnce reads what the socket holds (one read; level-triggered epoll
// reports it again if more is left) and records the pushes in it.
func (p *poller) readOnce(pc *polled, buf []byte, now int64) error {
	n, oobn, _, _, err := syscall.Recvmsg(pc.fd, buf, p.oob, 0)
	rx := rxTime{read: now}
	if err == nil {
		rx.kernel = kernelStamp(p.oob[:oobn])
	}
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return nil
	case err != nil:
		return err
	case n == 0:
		return io.EOF
	}
	if len(pc.pending) == 0 {
		// The common case: parse straight from the read buffer and keep
		// only an incomplete tail.
		return p.parse(pc, buf[:n], rx)
	}
	pc.pending = append(pc.pending, buf[:n]...)
	return p.parse(pc, pc.pending, rx)
}

// kernelStamp returns the SO_TIMESTAMPNS receive time (Unix ns) in a
// recvmsg control buffer, 0 when there is none. Sizes and alignment are
// the platform's (CMSG_LEN, CMSG_SPACE), so 32-bit Linux reads it too.
func kernelStamp(oob []byte) int64 {
	hdr := syscall.CmsgLen(0) // the header, aligned: where the data starts
	tsLen := int(unsafe.Sizeof(syscall.Timespec{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+tsLen {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano()
		}
		l = syscall.CmsgSpace(l - hdr) // the next message starts aligned
		if l >= len(oob) {
			return 0
		}
		oob = oob[l:]
	}
	return 0
}

// parse consumes the complete frames in data (pc.pending, or the read
// buffer when nothing was pending) and leaves the incomplete rest in
// pc.pending.
func (p *poller) parse(pc *polled, data []byte, rx rxTime) error {
	c := pc.c
	bad := 0
	ds := pc.ds[:0]
	var used int
	var err error
	if c.ws {
		used, ds, err = consumeWS(pc, data, rx, ds, &bad)
	} else {
		used, ds, err = consume(data, rx, ds, &bad)
	}
	pc.ds = ds
	if len(ds) > 0 || bad > 0 {
		c.sh.add(ds, bad)
		if c.slot != nil {
			c.slot.record(ds)
		}
	}
	rest := data[used:]
	switch {
	case len(rest) == 0:
		pc.pending = pc.pending[:0]
		if cap(pc.pending) > 64<<10 {
			pc.pending = nil
		}
	case len(pc.pending) > 0 && cap(pc.pending) <= 4*len(rest)+4096:
		// data is pc.pending: shift the tail down
		pc.pending = pc.pending[:copy(pc.pending, rest)]
	default:
		// A fresh array sized to the tail: a connection that once held a
		// whole read (64 KiB) would otherwise keep that much for good
		// (5,000 of them: 600-740 MB of generator RSS flat out).
		pc.pending = append(make([]byte, 0, len(rest)+len(rest)/2), rest...)
	}
	return err
}

// consumeWS walks the complete WebSocket frames in b (server frames:
// unmasked), answering pings, and records the pushes of each complete
// binary message; fragments collect in pc.msg.
func consumeWS(pc *polled, b []byte, rx rxTime, ds []delivery, bad *int) (int, []delivery, error) {
	used := 0
	for {
		h := b[used:]
		if len(h) < 2 {
			return used, ds, nil
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		masked := h[1]&0x80 != 0
		size, hl := int64(h[1]&0x7f), 2
		switch size {
		case 126:
			if len(h) < 4 {
				return used, ds, nil
			}
			size, hl = int64(binary.BigEndian.Uint16(h[2:])), 4
		case 127:
			if len(h) < 10 {
				return used, ds, nil
			}
			size, hl = int64(binary.BigEndian.Uint64(h[2:])), 10
		}
		if masked {
			return used, ds, fmt.Errorf("bench: masked frame from the server")
		}
		if size > 1<<24 {
			return used, ds, fmt.Errorf("bench: WebSocket frame of %d bytes", size)
		}
		if int64(len(h)) < int64(hl)+size {
			return used, ds, nil
		}
		payload := h[hl : int64(hl)+size]
		used += hl + int(size)
		switch op {
		case 0x9: // ping
			_ = pc.c.writeFd(wsClientFrame(0xA, payload))
			continue
		case 0xA:
			continue
		case 0x8:
			return used, ds, io.EOF
		}
		if !fin || op == 0x0 && len(pc.msg) > 0 {
			pc.msg = append(pc.msg, payload...)
			if !fin {
				continue
			}
			payload = pc.msg
		}
		n, out, err := consume(payload, rx, ds, bad)
		ds = out
		pc.msg = pc.msg[:0]
		if err == nil && n != len(payload) {
			err = protocol.ErrTruncated
		}
		if err != nil {
			return used, ds, err
		}
	}
}

// wsClientFrame is a masked client frame (mask key zero: the payload is
// unchanged, which RFC 6455 allows).
func wsClientFrame(op byte, payload []byte) []byte {
	b := make([]byte, 0, 14+len(payload))
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, payload...)
}

// drop ends a connection the poller read an error from.
func (p *poller) drop(pc *polled, err error) {
	p.mu.Lock()
	_, ok := p.conns[int32(pc.fd)]
	delete(p.conns, int32(pc.fd))
	p.mu.Unlock()
	if !ok {
		return
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pc.fd, nil)
	pc.c.closeRaw()
	p.f.lost(pc.c, err)
}

// close stops the pollers and closes every connection they hold.
func (ps *pollers) close() {
	ps.stop.Store(true)
	ps.wg.Wait()
	for _, p := range ps.eps {
		p.mu.Lock()
		for fd, pc := range p.conns {
			pc.c.closeRaw()
			delete(p.conns, fd)
		}
		p.mu.Unlock()
		_ = syscall.Close(p.epfd)
	}
}

// writeFd writes b to a detached connection's descriptor. Writes are
// small (heartbeats, pongs); a full socket is retried for a while.
func (c *client) writeFd(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for len(b) > 0 {
		if c.fd < 0 {
			return net.ErrClosed
		}
		n, err := syscall.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
		}
		switch {
		case err == nil || err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if time.Now().After(deadline) {
				return os.ErrDeadlineExceeded
			}
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
	return nil
}

// closeRaw closes a detached connection's descriptor.
func (c *client) closeRaw() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.fd >= 0 {
		_ = syscall.Close(c.fd)
		c.fd = -1
	}
}

// maskedBinary wraps a goim frame as a client binary message for a
// detached WebSocket connection.
func maskedBinary(frame []byte) []byte { return wsClientFrame(0x2, frame) }

// cpuSet is a sched_setaffinity(2) mask for up to 1,024 CPUs.
type cpuSet [16]uint64

// allowedCPUs lists the CPUs the calling thread may run on, in order: the
// process's, as the generator pins no thread but its readers.
func allowedCPUs() ([]int, error) {
	var set cpuSet
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set))); e != 0 {
		return nil, fmt.Errorf("bench: sched_getaffinity: %w", e)
	}
	var cpus []int
	for i := range len(set) * 64 {
		if set[i/64]&(1<<(i%64)) != 0 {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) == 0 {
		return nil, errors.New("bench: sched_getaffinity: no CPU")
	}
	return cpus, nil
}

// pinThread binds the calling thread (the caller has locked its
// goroutine to it) to cpu.
func pinThread(cpu int) error {
	var set cpuSet
	if cpu < 0 || cpu >= len(set)*64 {
		return fmt.Errorf("bench: no CPU %d to pin to", cpu)
	}
	set[cpu/64] |= 1 << (cpu % 64)
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set))); e != 0 {
		return fmt.Errorf("bench: pin to CPU %d: %w", cpu, e)
	}
	return nil
}
