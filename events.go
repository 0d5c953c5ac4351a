package imcloud

import "time"

// EventType names what happened to a connection (docs/design.md, control
// plane).
type EventType string

// The event types.
const (
	// EventConnect: the connection authenticated.
	EventConnect EventType = "connect"
	// EventDisconnect: the connection ended; Reason says why.
	EventDisconnect EventType = "disconnect"
	// EventRoomJoin and EventRoomLeave: the connection entered or left
	// Room (auth room, ChangeRoom, Join, Leave; Primary says whether as
	// its primary room).
	EventRoomJoin  EventType = "room_join"
	EventRoomLeave EventType = "room_leave"
	// EventNodeGone: the registration of node Node, process Epoch,
	// expired without a drain (a crash): every connection of that node
	// process ended, and none of them gets a disconnect event.
	EventNodeGone EventType = "node_gone"
)

// The reasons of an EventDisconnect.
const (
	ReasonClientClosed     = "client_closed"     // the client closed the connection, or it broke
	ReasonHeartbeatTimeout = "heartbeat_timeout" // nothing from the client for HeartbeatTimeout
	ReasonKicked           = "kicked"            // a kick (Pusher.Kick, Server.Kick); Detail is its reason
	ReasonSlowConsumer     = "slow_consumer"     // its queue was full
	ReasonDrain            = "drain"             // the node shut down
	ReasonReplaced         = "replaced"          // a newer connection with the same key
	ReasonTokenExpired     = "token_expired"     // its token expired and was not refreshed
	ReasonProtocolError    = "protocol_error"    // a malformed frame, over the inbound rate, or a refused refresh
)

// Event is one thing that happened to a client connection, as cloud
// reports it to its event sink (in process, or the Kafka topic
// "<topic>.events" as JSON). Events are delivered at least once and in
// order per connection (Node, Key, Gen); a consumer discards an event
// older than one it has for the same (Node, Key) by Gen, and takes
// EventNodeGone as the end of every connection of that node process.
type Event struct {
	Type EventType `json:"type"`
	// Node and Epoch name the node process (imcloud.Node.ID, .Epoch).
	Node  string `json:"node"`
	Epoch string `json:"epoch,omitempty"`
	// Key, Mid and Gen name the connection (Session.Key, .Mid, .Gen).
	Key string `json:"key,omitempty"`
	Mid int64  `json:"mid,omitempty"`
	Gen uint64 `json:"gen,omitempty"`
	// Platform is the connection's (connect).
	Platform string `json:"platform,omitempty"`
	// Room is the room entered or left (room events), or the primary
	// room at connect.
	Room    string `json:"room,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	// Reason is why a connection ended (disconnect: a Reason* constant);
	// Detail adds the kick's own reason.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Time is when it happened, on the reporting node's clock.
	Time time.Time `json:"time"`
}
