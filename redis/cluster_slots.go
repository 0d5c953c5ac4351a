package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
	"golang.org/x/sync/singleflight"
)

// The slot map of a Cluster router (cluster.go): the master of each
// shard's slot, read with CLUSTER SLOTS.
//
// A read is the cluster's own, not a caller's: it runs one at a time
// (singleflight), each node it asks bounded by DialTimeout + ReadTimeout
// whatever the callers' contexts, and the callers that want it wait for
// it with their own context (a caller whose context ends leaves the read
// running for the others, and its context's error is never the read's).
// It asks the nodes in turn until one answers: the node a MOVED reply
// named (once), the node that answered last, the seeds, the masters of
// the last map; the nodes that failed their last read come after the
// others. Two reads start at least clusterBackoff apart, unless a MOVED
// reply named a node since (that read is wanted at once): until then the
// last read's outcome is the answer to every caller. So a Cluster that is
// down is not asked again by every call, nor one whose map still names a
// master that is gone (before the Cluster promotes a replica, every dial
// to it fails and would read the map again) or leaves a shard's slot out
// (master would read it at every call). A slot pinned by a MOVED reply while a read runs keeps
// its pin when the read ends: the node that answered may not know of the
// move yet. The router's Close ends a read: the node being asked is given
// up and no other is asked, and no read starts after it.

// errClusterClosed is a map read's error once the router is closed.
var errClusterClosed = fmt.Errorf("redis: cluster: %w", logic.ErrClosed)

// clusterBackoff is the least time between two map reads (see above).
const clusterBackoff = 500 * time.Millisecond

// cluster is the slot map the shards of a Cluster router share, and how
// they dial.
type cluster struct {
	seeds       []string
	opts        []redigo.DialOption
	want        []uint16      // the shards' slots
	nodeTimeout time.Duration // bounds asking one node: DialTimeout + ReadTimeout
	reads       singleflight.Group
	// done is cancelled by the router's Close (stop): it ends the reads.
	done context.Context
	stop context.CancelFunc

	mu      sync.Mutex
	masters map[uint16]string // slot -> master address, for the slots of want
	pinned  map[uint16]uint64 // slot -> the version its pin made
	known   []string          // the masters of the last map read
	last    string            // the node that answered the last read
	hint    string            // the node the last MOVED named, asked first
	failed  map[string]bool   // the nodes that failed their last read
	ver     uint64            // counts the map's reads and pins
	err     error             // the last read's outcome, nil after a pin
	readAt  time.Time         // when the last read ended
}

// version is the slot map's version (0 for a nil cluster: not in cluster
// mode, or no map read yet).
func (cl *cluster) version() uint64 {
	if cl == nil {
		return 0
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.ver
}

// current returns the address of slot's master in the map ("" for none).
func (cl *cluster) current(slot uint16) string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.masters[slot]
}

// master returns the address of slot's master, reading the map first if
// it has none.
func (cl *cluster) master(ctx context.Context, slot uint16) (string, error) {
	cl.mu.Lock()
	addr, ok := cl.masters[slot]
	ver := cl.ver
	cl.mu.Unlock()
	if ok {
		return addr, nil
	}
	if err := cl.refresh(ctx, ver); err != nil {
		return "", err
	}
	if addr = cl.current(slot); addr == "" {
		return "", fmt.Errorf("redis: cluster: no master serves slot %d", slot)
	}
	return addr, nil
}

// refresh reads the slot map again and waits for the read until ctx
// ends (the read goes on), unless the map changed since version seen
// (someone read or pinned it meanwhile), or the last read ended less than
// clusterBackoff ago and no MOVED reply named a node since: then the last
// outcome is returned.
func (cl *cluster) refresh(ctx context.Context, seen uint64) error {
	ch, err := cl.startRead(seen)
	if ch == nil {
		return err
	}
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startRead starts reading the map (or joins the read running) and
// returns its outcome's channel, or nil and the last outcome when no read
// is wanted (see refresh).
func (cl *cluster) startRead(seen uint64) (<-chan singleflight.Result, error) {
	if cl.done.Err() != nil {
		return nil, errClusterClosed
	}
	cl.mu.Lock()
	if cl.ver != seen || (cl.hint == "" && time.Since(cl.readAt) < clusterBackoff) {
		err := cl.err
		cl.mu.Unlock()
		return nil, err
	}
	cl.mu.Unlock()
	return cl.reads.DoChan("", func() (any, error) { return nil, cl.read() }), nil
}

// read reads the map from the first node that answers (see candidates).
func (cl *cluster) read() error {
	cl.mu.Lock()
	start := cl.ver
	nodes := cl.candidates()
	cl.hint = ""
	cl.mu.Unlock()
	var errs []error
	for _, addr := range nodes {
		if cl.done.Err() != nil {
			errs = append(errs, errClusterClosed)
			break
		}
		masters, known, err := cl.readFrom(addr)
		cl.mu.Lock()
		if err != nil {
			cl.failed[addr] = true
			cl.mu.Unlock()
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		delete(cl.failed, addr)
		for slot, v := range cl.pinned {
			if v > start {
				masters[slot] = cl.masters[slot] // pinned while this read ran
			} else {
				delete(cl.pinned, slot)
			}
		}
		cl.masters, cl.known, cl.last, cl.err, cl.readAt = masters, known, addr, nil, time.Now()
		cl.ver++
		cl.mu.Unlock()
		return nil
	}
	err := fmt.Errorf("redis: cluster: no node answered CLUSTER SLOTS: %w", errors.Join(errs...))
	cl.mu.Lock()
	cl.err, cl.readAt = err, time.Now()
	cl.ver++
	cl.mu.Unlock()
	return err
}

// candidates are the nodes a read asks, in order: the node a MOVED
// named, the node that answered last, the seeds, the masters of the last
// map, each once, those that failed their last read after the others.
// cl.mu must be held.
func (cl *cluster) candidates() []string {
	all := append([]string{cl.hint, cl.last}, cl.seeds...)
	all = append(all, cl.known...)
	seen := make(map[string]bool, len(all))
	var nodes, failed []string
	for _, addr := range all {
		switch {
		case addr == "" || seen[addr]:
		case cl.failed[addr]:
			failed = append(failed, addr)
		default:
			nodes = append(nodes, addr)
		}
		seen[addr] = true
	}
	return append(nodes, failed...)
}

// readFrom reads the slot map from the node at addr, within
// nodeTimeout: the masters of the shards' slots, and every master's
// address.
func (cl *cluster) readFrom(addr string) (map[uint16]string, []string, error) {
	ctx, cancel := context.WithTimeout(cl.done, cl.nodeTimeout)
	defer cancel()
	c, err := redigo.DialContext(ctx, "tcp", addr, cl.opts...)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	ranges, err := redigo.Values(redigo.DoContext(c, ctx, "CLUSTER", "SLOTS"))
	if err != nil {
		return nil, nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	seedHost, _, _ := net.SplitHostPort(addr)
	masters := make(map[uint16]string, len(cl.want))
	var known []string
	for _, rg := range ranges {
		// start, end, then the master [host, port, id, ...], then replicas.
		v, err := redigo.Values(rg, nil)
		if err != nil || len(v) < 3 {
			return nil, nil, fmt.Errorf("CLUSTER SLOTS: malformed reply")
		}
		start, err1 := redigo.Int(v[0], nil)
		end, err2 := redigo.Int(v[1], nil)
		node, err3 := redigo.Values(v[2], nil)
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 {
			return nil, nil, fmt.Errorf("CLUSTER SLOTS: malformed reply")
		}
		host, _ := redigo.String(node[0], nil)
		port, err := redigo.Int(node[1], nil)
		if err != nil || host == "?" {
			continue // a master whose address the node does not know
		}
		if host == "" {
			host = seedHost // Redis's "the node you asked"
		}
		m := net.JoinHostPort(host, strconv.Itoa(port))
		known = append(known, m)
		for _, slot := range cl.want {
			if int(slot) >= start && int(slot) <= end {
				masters[slot] = m
			}
		}
	}
	return masters, known, nil
}

// pin makes addr slot's master (a MOVED reply named it), until a map
// read that starts later; it clears the last read's failure.
func (cl *cluster) pin(slot uint16, addr string) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.masters == nil {
		cl.masters = make(map[uint16]string)
	}
	cl.masters[slot] = addr
	cl.ver++
	cl.pinned[slot] = cl.ver
	cl.err = nil
}

// moved follows a MOVED reply naming addr for slot: it pins the slot and
// reads the map in the background, asking addr first.
func (cl *cluster) moved(slot uint16, addr string) {
	cl.pin(slot, addr)
	cl.mu.Lock()
	cl.hint = addr
	cl.mu.Unlock()
	cl.reads.DoChan("", func() (any, error) { return nil, cl.read() })
}
