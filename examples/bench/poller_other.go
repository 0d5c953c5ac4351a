//go:build !linux

package main

import "errors"

// Without epoll every connection is read by a goroutine of its own
// (fleet.read).
type pollers struct{}

func newPollers(*fleet, int, bool) (*pollers, error) { return nil, nil }

func (*pollers) add(*client, []byte) error { return errors.New("bench: no epoll on this system") }

func (*pollers) close() {}

func (c *client) writeFd([]byte) error { return errors.New("bench: no epoll on this system") }

func (c *client) closeRaw() {}

func maskedBinary(frame []byte) []byte { return frame }
