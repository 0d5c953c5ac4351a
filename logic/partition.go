package logic

import (
	"hash/fnv"

	"github.com/imcloud/imcloud"
)

// BroadcastKey is the partition key of broadcast messages: one fixed key,
// so broadcasts keep their order among themselves.
const BroadcastKey = "broadcast"

// PartitionKey is the key a queue partitions m by: the target node for a
// keys message, the room for a room message, the user's stream
// (imcloud.UserStream, "u:42") for a mids message and BroadcastKey for a
// broadcast; a kick goes with the pushes it must follow, by node like a
// keys message or by user like a mids message. Messages with one key stay
// in order, and every push of one stream is in one partition, so the
// queue's offset is its position in the stream (a room's stream is keyed
// by the room itself). A mids
// message carries one user (the Pusher publishes one per user); one
// carrying more is keyed by its first.
func PartitionKey(m *imcloud.Message) string {
	switch m.Kind {
	case imcloud.KindKeys:
		return m.Node
	case imcloud.KindKick:
		if m.Node == "" && len(m.Mids) > 0 {
			return string(imcloud.UserStream(m.Mids[0]))
		}
		return m.Node
	case imcloud.KindRoom:
		return m.Room
	case imcloud.KindMids:
		if len(m.Mids) > 0 {
			return string(imcloud.UserStream(m.Mids[0]))
		}
		return BroadcastKey // invalid (no mids): refused by Validate anyway
	default:
		return BroadcastKey
	}
}

// partitionOf maps key onto one of n partitions with FNV-1a.
func partitionOf(key string, n int) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(n))
}
