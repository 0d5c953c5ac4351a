package job

import (
	"context"

	"github.com/imcloud/imcloud"
)

// Source is the consuming side of the queue: logic's memory queue (its
// Consumer) and this package's Kafka consumer group satisfy it.
//
// Receive and Commit may be called from different goroutines.
type Source interface {
	// Receive blocks until the next record is available, ctx ends, or the
	// source is closed. Records of one partition come in offset order.
	Receive(ctx context.Context) (imcloud.Record, error)
	// Commit records that every record of partition up to and including
	// offset was handled; after a restart, consumption resumes after it.
	// Committing a partition this consumer no longer owns (a rebalance)
	// is not an error: the commit is dropped and the new owner redelivers.
	Commit(ctx context.Context, partition int32, offset int64) error
}

// NodeDirectory lists the live cloud nodes. logic's memory and Redis
// routers satisfy it. Safe for concurrent use.
//
// A node no longer listed is declared gone: what is queued for it is
// abandoned. A directory that can lose its data (Redis restarted empty or
// flushed) should also be a RebuildingDirectory, so that the nodes that
// vanished with the data are not declared gone while they re-register.
type NodeDirectory interface {
	// Nodes returns the nodes whose registration has not expired.
	Nodes(ctx context.Context) ([]imcloud.Node, error)
}

// RebuildingDirectory is a NodeDirectory that tells "this node expired"
// from "the directory lost its data": an optional capability, found by
// type assertion. The memory and Redis routers have it.
type RebuildingDirectory interface {
	// NodesRebuilding is Nodes, read together with whether the directory
	// is rebuilding: it lost its data recently and live nodes may not
	// have registered again yet. While it is, the job keeps delivering to
	// the nodes it knew that are not listed; one still not listed once
	// the directory no longer rebuilds is declared gone, as an expired
	// one is. The rebuild window is the directory's (bounded, a few
	// seconds).
	NodesRebuilding(ctx context.Context) ([]imcloud.Node, bool, error)
}

// Link delivers messages to one cloud node. The link client in this package
// satisfies it for a remote node, and *cloud.Server satisfies it directly
// in one process.
type Link interface {
	// Deliver hands msgs to the node and returns once the node accepted
	// every one of them: placed on each target connection's queue (keys,
	// room) or accepted for paced delivery (broadcast). It does not wait for
	// sockets to drain. msgs are not retained or modified. Safe for
	// concurrent use; concurrent calls are pipelined.
	Deliver(ctx context.Context, msgs []*imcloud.Message) error
}

// History is the stream history the job appends to before it delivers a
// push that belongs to a stream (a user's or a room's; docs/design.md,
// recovery): logic's memory history and package redis's History satisfy
// it. Safe for concurrent use.
type History interface {
	// Append stores items, in order, each at its Entry.Offset in its
	// Stream, and sets each item's Epoch: the stream's epoch with the
	// item in it. An item whose (stream, offset) the store already holds
	// with the same ID is a redelivery: a no-op that still reports the
	// epoch. The job appends the pushes of one stream in offset order,
	// and after an error appends the same items again.
	Append(ctx context.Context, items []imcloud.HistoryAppend) error
}

// Users finds the connections of users: logic's memory and Redis routers
// satisfy it. Safe for concurrent use.
type Users interface {
	// NodesByMids returns connection key -> node id for every live
	// connection of mids.
	NodesByMids(ctx context.Context, mids []int64) (map[string]string, error)
}

// Rooms finds the nodes that have members in rooms (cloud's RoomStore
// writes them): logic's memory and Redis routers satisfy it. Safe for
// concurrent use.
type Rooms interface {
	// NodesByRooms returns, for each of rooms with members, the ids of
	// the live nodes holding at least one of them; a room without
	// members is absent. A router that lost its data fails while it
	// rebuilds (the job then fans those pushes out to every node).
	NodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error)
}

// EventSink receives the events job notices: imcloud.EventNodeGone when a
// node's registration expired (Config.Events). package kafka's event
// producer is one.
type EventSink interface {
	Event(ev imcloud.Event)
}
