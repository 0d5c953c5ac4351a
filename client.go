package imcloud

import "time"

// ClientSettings are what the cluster tells its clients about connecting:
// where to dial, how often to heartbeat and how to back off before a
// reconnect. Two places report them and both read this one struct: cloud's
// auth reply (op 8) carries Heartbeat, and logic's goim-compatible
// nodes/weighted route carries all of them. Give the same value to
// cloud.Config.Client and logic.HandlerConfig.Client so a client hears the
// same thing from each. Every zero field means the documented default
// (WithDefaults).
type ClientSettings struct {
	// Domain is the default client-facing domain, which nodes/weighted
	// lists as the only node when no node has an address for the client's
	// platform. Default "".
	Domain string
	// TCPPort, WSPort and WSSPort are the client ports nodes/weighted
	// reports; advertise only ports something listens on. TCPPort and
	// WSPort default to 3101 and 3102 (goim's); NoPort says nothing
	// listens there. WSSPort defaults to none: a node serves WebSocket
	// over TLS only with cloud.Config.TLS, so set it to that listener's
	// port. nodes/weighted reports none as 0.
	TCPPort, WSPort, WSSPort int
	// Heartbeat is the interval clients are told to send heartbeats (op 2)
	// at, in whole seconds on the wire. Default 30 s (goim's JavaScript
	// client). The gateway's own idle limit is cloud.Config.HeartbeatTimeout.
	Heartbeat time.Duration
	// HeartbeatMax is how many unanswered heartbeats a client is told to
	// wait for before it reconnects. Default 2.
	HeartbeatMax int
	// Backoff is the reconnect policy clients are told. Default goim's:
	// max 300, base 3, factor 1.8, jitter 1.3.
	Backoff Backoff
}

// Backoff is the client reconnect policy, as goim's nodes/weighted reports
// it.
type Backoff struct {
	MaxDelay  int32   `json:"max_delay"`
	BaseDelay int32   `json:"base_delay"`
	Factor    float32 `json:"factor"`
	Jitter    float32 `json:"jitter"`
}

// WithDefaults returns s with every zero field set to its default.
func (s ClientSettings) WithDefaults() ClientSettings {
	if s.TCPPort == 0 {
		s.TCPPort = 3101
	}
	if s.WSPort == 0 {
		s.WSPort = 3102
	}
	if s.Heartbeat <= 0 {
		s.Heartbeat = 30 * time.Second
	}
	if s.HeartbeatMax <= 0 {
		s.HeartbeatMax = 2
	}
	if s.Backoff == (Backoff{}) {
		s.Backoff = Backoff{MaxDelay: 300, BaseDelay: 3, Factor: 1.8, Jitter: 1.3}
	}
	return s
}

// NoPort in a ClientSettings port says that no listener serves it.
const NoPort = -1

// HeartbeatSeconds is Heartbeat as the wire carries it: whole seconds.
func (s ClientSettings) HeartbeatSeconds() int { return int(s.Heartbeat / time.Second) }
