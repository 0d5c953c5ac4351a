package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procUsage is what the kernel says a process used: CPU seconds (user +
// system) and resident memory.
type procUsage struct {
	CPUSeconds float64
	RSSBytes   int64
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	// Fields after the parenthesised command name, which may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procUsage{}, fmt.Errorf("proc %d: unreadable stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
	if len(fields) < 13 {
		return procUsage{}, fmt.Errorf("proc %d: short stat", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return procUsage{}, fmt.Errorf("proc %d: bad cpu times", pid)
	}
	u := procUsage{CPUSeconds: (utime + stime) / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procUsage{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return procUsage{}, fmt.Errorf("proc %d: bad VmRSS %q", pid, rest)
			}
			u.RSSBytes = kb << 10
		}
	}
	return u, nil
}
