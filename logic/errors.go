package logic

import "errors"

// Sentinel errors. Wrapped errors keep them reachable through errors.Is.
var (
	// ErrOverloaded is returned when the Pusher's task pool is saturated:
	// every worker is busy and MaxBlockingTasks callers already wait. The
	// HTTP handler answers 503. Retry later, with backoff.
	ErrOverloaded = errors.New("logic: overloaded")
	// ErrClosed is returned by a Pusher, queue or router after Shutdown or
	// Close.
	ErrClosed = errors.New("logic: closed")
	// ErrInvalidArgument is returned for a push or query whose arguments
	// make no sense (no operation, no targets, a malformed room key). The
	// HTTP handler answers 400.
	ErrInvalidArgument = errors.New("logic: invalid argument")
	// ErrQueue wraps a failure of Queue.Publish.
	ErrQueue = errors.New("logic: queue")
	// ErrRouter wraps a failure of a Router lookup.
	ErrRouter = errors.New("logic: router")
)
