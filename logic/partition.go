package logic

import (
	"hash/fnv"

	"github.com/imcloud/imcloud"
)

// BroadcastKey is the partition key of broadcast messages: one fixed key,
// so broadcasts keep their order among themselves.
const BroadcastKey = "broadcast"

// PartitionKey is the key a queue partitions m by: the target node for a
// keys message, the room for a room message and BroadcastKey for a
// broadcast. Messages with one key stay in order.
func PartitionKey(m *imcloud.Message) string {
	switch m.Kind {
	case imcloud.KindKeys:
		return m.Node
	case imcloud.KindRoom:
		return m.Room
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
