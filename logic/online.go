package logic

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/imcloud/imcloud"
)

// The online queries read the Router directly, on the caller's goroutine:
// they are cheap, rare and not worth a pool slot.

// RoomCount is one room's cluster-wide online count.
type RoomCount struct {
	// Room is the room id without its type ("1000" of "live://1000").
	Room string
	// Count is the number of connections in the room.
	Count int32
}

// RoomCounts returns the online count of each of rooms (full room keys,
// "type://id"); rooms nobody is in count 0.
func (p *Pusher) RoomCounts(ctx context.Context, rooms []string) (map[string]int32, error) {
	all, err := p.router.RoomCounts(ctx)
	if err != nil {
		return nil, wrapErr(ErrRouter, err)
	}
	out := make(map[string]int32, len(rooms))
	for _, r := range rooms {
		out[r] = all[r]
	}
	return out, nil
}

// TopRooms returns the limit most populated rooms of type typ, most
// populated first (ties by room id), as goim's online/top does.
func (p *Pusher) TopRooms(ctx context.Context, typ string, limit int) ([]RoomCount, error) {
	if typ == "" || limit <= 0 {
		return nil, fmt.Errorf("%w: type and a positive limit are required", ErrInvalidArgument)
	}
	all, err := p.router.RoomCounts(ctx)
	if err != nil {
		return nil, wrapErr(ErrRouter, err)
	}
	prefix := typ + "://"
	var out []RoomCount
	for key, n := range all {
		if n > 0 && strings.HasPrefix(key, prefix) {
			out = append(out, RoomCount{Room: key[len(prefix):], Count: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Room < out[j].Room
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Totals are the cluster's connection and distinct-IP counts, summed over
// the live nodes' registrations.
type Totals struct {
	IPs   int
	Conns int
}

// Totals returns the cluster-wide totals.
func (p *Pusher) Totals(ctx context.Context) (Totals, error) {
	nodes, err := p.Nodes(ctx)
	if err != nil {
		return Totals{}, err
	}
	var t Totals
	for _, n := range nodes {
		t.IPs += n.IPs
		t.Conns += n.Conns
	}
	return t, nil
}

// Nodes returns the live cloud nodes.
func (p *Pusher) Nodes(ctx context.Context) ([]imcloud.Node, error) {
	nodes, err := p.router.Nodes(ctx)
	if err != nil {
		return nil, wrapErr(ErrRouter, err)
	}
	return nodes, nil
}
