package job

import (
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
)

// Stats are the job's counters since New. Deliveries count one per message
// per node.
type Stats struct {
	// Consumed is the number of records received from the source.
	Consumed uint64
	// Delivered is the number of messages nodes acknowledged.
	Delivered uint64
	// Retried is the number of failed Deliver calls that were retried.
	Retried uint64
	// Skipped is the number of poison records (undecodable, unknown
	// kind), of messages too large for the link, and of messages a node
	// refused as of a newer version than it reads (a kick to a node of an
	// older release), skipped.
	Skipped uint64
	// Expired is the number of messages dropped past their expiry.
	Expired uint64
	// DeadLettered is the number of records of a newer major version set
	// aside through Config.DeadLetter.
	DeadLettered uint64
	// DeadLetterFailed is the number of such records that could not be
	// set aside (logged, then skipped).
	DeadLetterFailed uint64
	// Abandoned is the number of deliveries given up because their node
	// left the directory (its registration expired).
	Abandoned uint64
	// Unroutable is the number of keys messages whose node is not in the
	// directory, of room messages for a member node not in it (one per
	// node), and of room and broadcast messages fanned out while no node
	// is.
	Unroutable uint64
	// Commits is the number of successful Source.Commit calls.
	Commits uint64
	// CommitErrors is the number of failed Source.Commit calls.
	CommitErrors uint64
	// DirectoryErrors is the number of failed reads of the node
	// directory (Config.Directory: the router); the last list read stands
	// meanwhile.
	DirectoryErrors uint64
	// HistoryAppended is the number of pushes appended to a stream's
	// history (Config.History): one per user of a mids message, one per
	// room message. A redelivered record is appended (a no-op) again.
	HistoryAppended uint64
	// HistoryErrors is the number of History.Append calls that failed;
	// each is retried with backoff while its partition waits.
	HistoryErrors uint64
	// LookupErrors is the number of user lookups (Config.Users) that
	// failed; each is retried with backoff while its partition waits.
	LookupErrors uint64
	// RoomNoMembers is the number of room messages whose room had no
	// member on any node (Config.Rooms): delivered to nobody, done.
	RoomNoMembers uint64
	// RoomLookupErrors is the number of room member lookups
	// (Config.Rooms) that failed, one per batch of a partition's room
	// messages; RoomFallbacks is the number of room messages those
	// batches fanned out to every live node instead.
	RoomLookupErrors, RoomFallbacks uint64
	// Kicks is the number of kicks (imcloud.KindKick) routed: by keys to
	// their node, by mids once their users were resolved (one kick by
	// keys per node of their connections; none when they had none).
	Kicks uint64
	// Offline is the number of mids messages none of whose users had a
	// connection: appended to their streams' history (with
	// Config.History), delivered to nobody.
	Offline uint64
	// CaughtUp is the number of room messages and broadcasts handed to
	// a node that joined after job fanned them out (it registered and
	// took clients between two reads of the directory) and accepted
	// since the node registered (imcloud.Node.Since). Best effort: they
	// are not part of commits, and the node drops any it already had.
	CaughtUp uint64
	// CatchUpGaps is the number of nodes that joined after the record of
	// recent fan-outs had dropped one they may need (accepted since they
	// registered; the record keeps three RefreshIntervals, at most
	// Config.CatchUpMessages and CatchUpBytes): their clients may have
	// missed a room push or a broadcast.
	CatchUpGaps uint64
	// Pending is the number of records received and not yet committable.
	Pending int
	// Nodes has one entry per node the job delivers to.
	Nodes map[string]NodeStats
	// Partitions has one entry per source partition the job received
	// records from: its commit lag.
	Partitions map[int32]PartitionStats
	// LinkRoundTrip is the time from writing a delivery to a node's link to
	// the node's acknowledgement (LinkOptions.RoundTrip), with the default
	// Connect; empty when Config.Connect is the caller's.
	LinkRoundTrip imcloud.HistogramSnapshot
}

// PartitionStats describe the records of one source partition that the job
// received and has not committed: waiting for their nodes, or done and
// waiting for the commit (a failing commit keeps them here).
type PartitionStats struct {
	// Uncommitted is the number of such records.
	Uncommitted int
	// Oldest is how long the oldest of them has been held since it was
	// received; 0 when there is none.
	Oldest time.Duration
}

// NodeStats describe the job's queue to one node.
type NodeStats struct {
	// Addr is the node's link address.
	Addr string
	// Lag is the number of messages waiting for the node or in flight.
	Lag int
	// Oldest is how long the oldest of them has been waiting.
	Oldest time.Duration
	// Delivered is the number of messages the node acknowledged.
	Delivered uint64
	// Retried is the number of failed Deliver calls to it.
	Retried uint64
	// LastError is the last delivery error, "" after a success.
	LastError string
}

type counters struct {
	consumed, delivered, retried, skipped, expired  atomic.Uint64
	deadLettered, deadLetterFailed, abandoned       atomic.Uint64
	unroutable, commits, commitErrors               atomic.Uint64
	directoryErrors, historyAppended, historyErrors atomic.Uint64
	lookupErrors, offline, caughtUp, catchUpGaps    atomic.Uint64
	roomNoMembers, roomLookupErrors, roomFallbacks  atomic.Uint64
	kicks                                           atomic.Uint64
}

// Stats returns the job's counters.
func (j *Job) Stats() Stats {
	s := Stats{
		Consumed:         j.c.consumed.Load(),
		Delivered:        j.c.delivered.Load(),
		Retried:          j.c.retried.Load(),
		Skipped:          j.c.skipped.Load(),
		Expired:          j.c.expired.Load(),
		DeadLettered:     j.c.deadLettered.Load(),
		DeadLetterFailed: j.c.deadLetterFailed.Load(),
		Abandoned:        j.c.abandoned.Load(),
		Unroutable:       j.c.unroutable.Load(),
		Commits:          j.c.commits.Load(),
		CommitErrors:     j.c.commitErrors.Load(),
		DirectoryErrors:  j.c.directoryErrors.Load(),
		HistoryAppended:  j.c.historyAppended.Load(),
		HistoryErrors:    j.c.historyErrors.Load(),
		LookupErrors:     j.c.lookupErrors.Load(),
		RoomNoMembers:    j.c.roomNoMembers.Load(),
		RoomLookupErrors: j.c.roomLookupErrors.Load(),
		RoomFallbacks:    j.c.roomFallbacks.Load(),
		Kicks:            j.c.kicks.Load(),
		Offline:          j.c.offline.Load(),
		CaughtUp:         j.c.caughtUp.Load(),
		CatchUpGaps:      j.c.catchUpGaps.Load(),
		Pending:          j.pendingCount(),
		Nodes:            j.dir.nodeStats(),
		Partitions:       j.partitionStats(),
		LinkRoundTrip:    j.linkRTT.Snapshot(),
	}
	return s
}
