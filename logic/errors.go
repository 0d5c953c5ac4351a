package logic

import (
	"errors"
	"fmt"
	"strings"

	"github.com/imcloud/imcloud/protocol"
)

// Sentinel errors. Wrapped errors keep them reachable through errors.Is.
var (
	// ErrOverloaded is returned when the Pusher's task pool is saturated
	// (every worker is busy and MaxBlockingTasks callers already wait) or
	// the push's cost budget is spent (Config.MaxPushCost,
	// MaxSmallPushCost): at once, nothing was published. The HTTP handler
	// answers 503 with Retry-After: 1. Retry later, with backoff, and with
	// the same id (WithID) so a push that did go through is not shown
	// twice.
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
	// ErrHistory wraps a failure of a History read.
	ErrHistory = errors.New("logic: history")
	// ErrHistoryOff is returned by Pusher.History when the Pusher has no
	// history (Config.History nil). The HTTP handler answers 501.
	ErrHistoryOff = errors.New("logic: history is off")
	// ErrInvalidOp is returned for a push whose operation is below
	// protocol.OpPushMin (1000): ops 0-999 are the protocol's own (auth,
	// heartbeat, op 6 disconnect, op 9 batch, ...) and a push carrying one
	// would fool clients. It is an ErrInvalidArgument (HTTP 400).
	ErrInvalidOp = fmt.Errorf("%w: operations below %d are reserved for the protocol", ErrInvalidArgument, protocol.OpPushMin)
	// ErrRouterRebuilding is returned by a router lookup while the router
	// rebuilds after losing its data (Redis restarted empty, flushed, or
	// failed over to an empty replica): until the nodes have registered
	// again it cannot tell a user who is offline from one whose node has
	// not re-registered yet, so a lookup that might be incomplete fails
	// instead of reporting nobody online. The rebuild window is bounded
	// (redis.Config.RebuildWindow; MemoryRouterConfig.RebuildWindow);
	// the HTTP handler answers 503 with Retry-After. Retry the push.
	ErrRouterRebuilding = errors.New("logic: router rebuilding after losing its data")
)

// wrapErr wraps err, a failure of a Router or Queue, in sentinel (ErrRouter
// or ErrQueue) so errors.Is finds both, and so the message reads once: an
// error that already is sentinel is returned as it is, and the cause's own
// "logic: " prefix is not repeated ("logic: router: redis: MGET: ...",
// "logic: queue: closed", never "logic: queue: logic: closed").
func wrapErr(sentinel, err error) error {
	if errors.Is(err, sentinel) {
		return err
	}
	return &wrappedErr{sentinel: sentinel, err: err}
}

type wrappedErr struct{ sentinel, err error }

func (w *wrappedErr) Error() string {
	return w.sentinel.Error() + ": " + strings.TrimPrefix(w.err.Error(), "logic: ")
}

func (w *wrappedErr) Unwrap() []error { return []error{w.sentinel, w.err} }
