package job

import (
	"context"
	"time"

	"github.com/imcloud/imcloud"
)

// Node gone events (Config.Events).
//
// A cloud node that crashes (SIGKILL, a lost machine) reports no
// disconnect for its connections. When its registration expires and the
// job's directory drops it, the job sends one imcloud.EventNodeGone with
// the node id and the epoch of the process it knew: every connection of
// that node process ended. A node that drained (cloud's Shutdown:
// SessionStore.RemoveNode) reported a disconnect for each of its
// connections and gets no node_gone. The job tells the two apart by the
// directory's drain tombstones (DrainedDirectory: RemoveNode remembers the
// id and the epoch removed for logic.DrainedTTL, 10 minutes): a node that
// left the directory with a tombstone of the epoch the job knew was
// drained; any other was not. A directory without tombstones (or whose
// read fails, or a node of an older release that drained without leaving
// one) makes the job send node_gone for a drained node too: redundant,
// not wrong, since every connection of that process did end.
//
// A node that crashes and registers again under the same id before its
// registration expired never leaves the directory: the job sees its id
// come back with another epoch (each cloud process registers its own)
// and sends node_gone for the epoch it knew, checked against the
// tombstones as above (a node that drained and restarted quickly left
// one). The new process is not gone. An old registration without an
// epoch (an older release) is never reported this way: the job cannot
// tell its restart from a renewal.
//
// The event is sent at the first directory read after the one that
// dropped the node (RefreshInterval), by every job that knew the node: a
// consumer takes several for one (at least once). A job that starts after
// a node expired, or that never listed it, sends none.

// DrainedDirectory is a NodeDirectory that remembers the nodes removed by
// a drain: an optional capability, found by type assertion. The memory
// and Redis routers have it.
type DrainedDirectory interface {
	// Drained returns, of ids, the nodes deregistered by a drain
	// (RemoveNode) lately, each with the epoch of the registration it
	// removed ("": none); the others are absent.
	Drained(ctx context.Context, ids []string) (map[string]string, error)
}

// goneLocked records that the directory dropped w's node, for
// reportGone. d.mu is held.
func (d *directory) goneLocked(w *nodeWorker) {
	if d.j.cfg.Events == nil {
		return
	}
	w.mu.Lock()
	d.gone = append(d.gone, w.node)
	w.mu.Unlock()
}

// restartedLocked records, for reportGone, old, the registration the
// job knew of a node now listed as n, if n is another process (another
// epoch). d.mu is held.
func (d *directory) restartedLocked(old, n imcloud.Node) {
	if old.Epoch == "" || old.Epoch == n.Epoch {
		return
	}
	d.j.log.Info("job: node restarted under the same id", "node", n.ID, "epoch", old.Epoch, "new_epoch", n.Epoch)
	if d.j.cfg.Events != nil {
		d.gone = append(d.gone, old)
	}
}

// reportGone sends a node_gone event for each node the directory dropped
// since the last call that did not drain.
func (d *directory) reportGone(ctx context.Context) {
	d.mu.Lock()
	gone := d.gone
	d.gone = nil
	d.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	drained := map[string]string{}
	if dd, ok := d.j.cfg.Directory.(DrainedDirectory); ok {
		ids := make([]string, len(gone))
		for i, n := range gone {
			ids[i] = n.ID
		}
		got, err := dd.Drained(ctx, ids)
		if err != nil {
			d.j.log.Warn("job: reading the drained nodes failed; reporting them gone", "err", err)
		} else {
			drained = got
		}
	}
	for _, n := range gone {
		if epoch, ok := drained[n.ID]; ok && epoch == n.Epoch {
			d.j.log.Info("job: node drained", "node", n.ID)
			continue
		}
		d.j.log.Info("job: node gone without a drain: reporting node_gone", "node", n.ID, "epoch", n.Epoch)
		d.j.cfg.Events.Event(imcloud.Event{Type: imcloud.EventNodeGone, Node: n.ID, Epoch: n.Epoch, Time: time.Now()})
	}
}
