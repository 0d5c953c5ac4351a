//go:build linux

package main

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoopbackFloor measures what the room scenarios cannot go
// under on this machine: one write(2) of a 100-byte push to each of 5,000
// loopback TCP sockets, and one read(2) of each on the receiving end
// through epoll, with no protocol, no queues and no Go networking in
// between. An iteration is one pass (every socket written once and read
// once); the metrics are the wall time of a pass and the process CPU per
// write+read pair (writer and reader share the process, as the server and
// the generator share the machine).
//
//	go test -run '^$' -bench LoopbackFloor -benchtime 200x ./examples/bench/
func BenchmarkLoopbackFloor(b *testing.B) {
	const sockets = 5000
	writers, readers := socketPairs(b, sockets)
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(ep)
	for _, fd := range readers {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			b.Fatal(err)
		}
	}
	msg := make([]byte, 100)
	passDone := make(chan int)
	start := make(chan struct{})
	go func() { // the receiving side: one pass's reads per start
		events := make([]syscall.EpollEvent, 256)
		buf := make([]byte, 64<<10)
		for range start {
			got, reads := 0, 0
			for got < sockets*len(msg) {
				n, err := syscall.EpollWait(ep, events, 1000)
				if err != nil && err != syscall.EINTR {
					panic(err)
				}
				for _, ev := range events[:max(n, 0)] {
					if m, err := syscall.Read(int(ev.Fd), buf); err == nil {
						got += m
						reads++
					}
				}
			}
			passDone <- reads
		}
	}()
	defer close(start)

	cpu0 := processCPU()
	b.ResetTimer()
	pairs := 0
	for i := 0; i < b.N; i++ {
		start <- struct{}{}
		for _, fd := range writers {
			if _, err := syscall.Write(fd, msg); err != nil {
				b.Fatal(err)
			}
		}
		pairs += <-passDone
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
	b.ReportMetric(float64(cpu.Microseconds())/float64(pairs), "cpu-µs/pair")
	b.ReportMetric(float64(pairs)/float64(b.N), "reads/pass")
}

// socketPairs opens n loopback TCP connections and returns the
// non-blocking descriptors of their server ends (written) and client ends
// (read).
func socketPairs(b *testing.B, n int) (writers, readers []int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var files []*os.File // the descriptors live as long as their files
	b.Cleanup(func() {
		for _, f := range files {
			f.Close()
		}
	})
	fdOf := func(c net.Conn) int {
		f, err := c.(*net.TCPConn).File() // a blocking duplicate
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
		files = append(files, f)
		fd := int(f.Fd())
		if err := syscall.SetNonblock(fd, true); err != nil {
			b.Fatal(err)
		}
		return fd
	}
	for i := 0; i < n; i++ {
		cc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		writers = append(writers, fdOf(sc))
		readers = append(readers, fdOf(cc))
	}
	return writers, readers
}

// processCPU is the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
