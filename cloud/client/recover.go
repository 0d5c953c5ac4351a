package client

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Recovery (Config.Recover; docs/protocol-recovery.md). The client keeps
// the position of every stream it follows, its user's ("u:<mid>") and its
// room's ("r:<room>"): set by each op 25 and advanced by each op 24 push.
// Every (re)connect sends them in the auth body, and a ChangeRoom the new
// room's, so the node replays what the client missed, then reports per
// stream whether it was all (Recoveries).

// Position is a place in a stream: its epoch and the offset of the last
// push seen there (the vocabulary's imcloud.Position).
type Position = imcloud.Position

// Recovery is an op 25 frame: per stream, whether every push the client
// missed was replayed (Recovered; Reason says why not) and how many were.
// It arrives after the replayed pushes, on Recoveries().
type Recovery struct {
	Streams []protocol.RecoveryStream `json:"streams"`
}

// Replayed is the number of pushes replayed, all streams together.
func (r Recovery) Replayed() int {
	n := 0
	for _, s := range r.Streams {
		n += s.Replayed
	}
	return n
}

// Recovered reports whether every stream was recovered in full.
func (r Recovery) Recovered() bool {
	for _, s := range r.Streams {
		if !s.Recovered {
			return false
		}
	}
	return true
}

// Recoveries returns the recovery results (Config.Recover): one after
// every auth, and one after every ChangeRoom to a room. A result that
// finds the channel full is dropped (the positions are kept anyway).
func (c *Client) Recoveries() <-chan Recovery { return c.recs }

// Positions returns a copy of the positions the client holds, by stream.
func (c *Client) Positions() map[string]Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]Position, len(c.positions))
	for k, v := range c.positions {
		m[k] = v
	}
	return m
}

// followedPositions returns the positions to send at auth: those of the
// user's stream and the room's. Before the first AuthReply of a client
// without a mid (a token names the user) every user stream's position it
// holds is sent, at most maxPositions: the node reads only its own
// user's. Called under c.mu.
func (c *Client) followedPositions() map[string]Position {
	mid := c.auth.Mid
	if mid == 0 {
		mid = c.cfg.Mid
	}
	user, room := "u:"+strconv.FormatInt(mid, 10), "r:"+c.room
	m := map[string]Position{}
	for name, p := range c.positions {
		if len(m) < maxPositions && (name == user || name == room || (mid == 0 && strings.HasPrefix(name, "u:"))) {
			m[name] = p
		}
	}
	return m
}

// maxPositions is the most positions an auth body may carry.
const maxPositions = 16

// changeRoomBody is the ChangeRoom body: the bare room key, or with
// Recover the JSON that carries the room's position, once the node showed
// it recovers (an op 25 on this connection): a node without recovery
// would take the JSON for a room key.
func (c *Client) changeRoomBody(room string) []byte {
	c.mu.Lock()
	p, ok := c.positions["r:"+room]
	seen := c.recoverySeen
	c.mu.Unlock()
	if !c.cfg.Recover || room == "" || !seen {
		return []byte(room)
	}
	body := struct {
		RoomID   string    `json:"room_id"`
		Position *Position `json:"position,omitempty"`
	}{RoomID: room}
	if ok {
		body.Position = &p
	}
	b, _ := json.Marshal(body)
	return b
}

// recovery takes an op 25 frame: positions set, the result surfaced.
func (c *Client) recovery(body []byte) {
	var r Recovery
	if json.Unmarshal(body, &r) != nil {
		return
	}
	c.mu.Lock()
	c.recoverySeen = true
	for _, s := range r.Streams {
		switch {
		case s.Reason == "not_followed":
			delete(c.positions, s.Stream)
		case s.Epoch != "":
			c.positions[s.Stream] = Position{Epoch: s.Epoch, Offset: s.Offset}
		}
	}
	c.mu.Unlock()
	select {
	case c.recs <- r:
	default:
	}
}

// pushAt takes an op 24 frame: the push (each frame of an op 9 it
// carries) surfaces with its stream and offset, and the stream's position
// moves to it.
func (c *Client) pushAt(body []byte, now time.Time) {
	p, err := protocol.ParsePushAt(body)
	if err != nil {
		return
	}
	stream, epoch := string(p.Stream), string(p.Epoch)
	c.mu.Lock()
	if cur, ok := c.positions[stream]; !ok || cur.Epoch != epoch || cur.Offset < p.Offset {
		// Never back within an epoch: after a first connect a live push
		// older than op 25's top may still arrive.
		c.positions[stream] = Position{Epoch: epoch, Offset: p.Offset}
	}
	c.mu.Unlock()
	at := func(op int32, b []byte) {
		c.push(Push{Op: op, Body: append([]byte(nil), b...), Received: now, Stream: stream, Epoch: epoch, Offset: p.Offset})
	}
	if p.Op != protocol.OpRaw {
		at(p.Op, p.Body)
		return
	}
	it := protocol.NewBatchIter(p.Body)
	var inner protocol.Frame
	for it.Next(&inner) {
		at(inner.Op, inner.Body)
	}
}
