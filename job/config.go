package job

import (
	"context"
	"log/slog"
	"time"

	"github.com/imcloud/imcloud"
)

// Config configures a Job. Every zero field means the default its comment
// names. Source, Directory and the Links that Connect returns are the
// caller's: the job never closes them. The link clients of the default
// Connect are the job's: it closes them when it drops them and on
// Shutdown.
type Config struct {
	// Source is the queue to consume (required): logic's memory queue or
	// a kafka.Source.
	Source Source
	// Directory lists the live cloud nodes (required): logic's memory or
	// Redis router.
	Directory NodeDirectory
	// Connect returns the Link to a node. It is called the first time a
	// message is due for the node, and again after a Deliver on the link
	// failed for a reason other than the node's own answer (ErrRejected,
	// ErrTooLarge). Default: a LinkClient to node.LinkAddr with LinkSecret
	// and LinkOptions. To deliver in process, return the *cloud.Server.
	Connect func(ctx context.Context, node imcloud.Node) (Link, error)
	// LinkSecret is the shared secret of the default Connect's hello;
	// required unless Connect is set.
	LinkSecret string
	// LinkOptions tunes the default Connect's link clients; a nil Logger
	// is the job's.
	LinkOptions LinkOptions
	// DeadLetter sets aside a record whose message has a newer major
	// version (a newer logic wrote it; a newer job will read it), e.g.
	// (*kafka.DeadLetter).Publish. It is tried DeadLetterAttempts times;
	// if it is nil or keeps failing, the record is logged and counted in
	// Stats.DeadLetterFailed, and consumption goes on.
	DeadLetter func(ctx context.Context, rec imcloud.Record) error
	// DeadLetterAttempts bounds the tries per record. Default 5.
	DeadLetterAttempts int

	// Events, when set, receives an imcloud.EventNodeGone for every node
	// the job declares gone because its registration expired (not a
	// drain): its connections ended without disconnect events. Several
	// jobs each send one (at least once).
	Events EventSink
	// Rooms, when set, makes room pushes go only to the nodes that have
	// members in the room (docs/design.md, rooms): one lookup per batch of
	// a partition's room records, started after they were received, so
	// a member whose join was answered before the push was accepted is
	// found. A failed lookup fans the batch out to every node. Nil: every
	// room push goes to every live node. Broadcasts always do.
	Rooms Rooms
	// Users resolves the users of a mids message (imcloud.KindMids, a
	// push to users as logic publishes it with history on) to their
	// connections: one keys message per node and user; and the users of
	// a kick by mids (one kick by keys per node). Without it, mids
	// messages and kicks by mids are set aside through DeadLetter, as
	// records of a newer version are: never delivered to the wrong
	// audience.
	Users Users
	// History, when set, turns streams on (docs/design.md, recovery):
	// each mids message is appended to each of its users' streams and
	// each room message to its room's stream before anything of it is
	// delivered, and what is delivered carries the stream, the epoch and
	// the offset (the record's). Key pushes and broadcasts belong to no
	// stream and are delivered as without it; so is a room message whose
	// room key names no stream. A mids message should carry one user, as
	// logic publishes them: another user's stream lives in another
	// partition, and the store starts it a new epoch when a push of it
	// comes from this one. An append that fails is retried with backoff
	// (RetryMin to RetryMax) while the job runs; the records of its
	// partition wait meanwhile, undelivered and uncommitted. Requires
	// Users (ErrNoUsers). Default none.
	History History

	// MaxDelivery caps the messages in one Deliver call to a node. Messages
	// waiting for the same node (room messages above all) are merged up
	// to it: at low rates every call carries one message and goes at
	// once, under load deliveries grow. It also caps the records of one
	// partition handled as one batch of history appends and user lookups
	// (see History). Default 512.
	MaxDelivery int
	// MaxDeliveryBytes caps a Deliver call's approximate size. Default 1 MiB.
	MaxDeliveryBytes int
	// NodeQueue bounds the messages waiting for one node. When a node's
	// queue is full (the node is unreachable and still registered),
	// consumption waits for it; size it to hold a node registration's
	// lifetime of traffic. Default 65536.
	NodeQueue int
	// MaxPending bounds the records received and not yet committed
	// (delivered, or waiting behind an unfinished earlier record of their
	// partition). Consumption waits when it is reached. Default 262144.
	MaxPending int
	// CatchUpMessages and CatchUpBytes bound the record of recent room
	// and broadcast fan-outs that job keeps for the nodes it learns of
	// late (package doc, "Nodes that join"), which also holds nothing
	// older than three RefreshIntervals. What a joining node needs and the
	// record dropped is counted in Stats.CatchUpGaps. Defaults 65536 (at
	// most NodeQueue) and 16 MiB.
	CatchUpMessages, CatchUpBytes int
	// RefreshInterval is how often the node directory is read. A keys
	// message for a node the job does not know yet also triggers a
	// refresh, at most every RefreshInterval/10 (200ms at most). Default 2s.
	RefreshInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff between
	// attempts to deliver to a node that failed. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// Logger receives errors and events. Nil is silent.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DeadLetterAttempts <= 0 {
		c.DeadLetterAttempts = 5
	}
	if c.MaxDelivery <= 0 {
		c.MaxDelivery = 512
	}
	if c.MaxDeliveryBytes <= 0 {
		c.MaxDeliveryBytes = 1 << 20
	}
	if c.NodeQueue <= 0 {
		c.NodeQueue = 65536
	}
	if c.CatchUpMessages <= 0 {
		c.CatchUpMessages = 65536
	}
	c.CatchUpMessages = min(c.CatchUpMessages, c.NodeQueue)
	if c.CatchUpBytes <= 0 {
		c.CatchUpBytes = 16 << 20
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 262144
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 2 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
