package redis

import (
	"context"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/logic"
)

// chunkCalls splits items into the argument lists of script calls of at
// most per items each, every list starting with prefix.
func chunkCalls[T any](prefix string, items []T, per int) [][]any {
	calls := make([][]any, 0, (len(items)+per-1)/per)
	for i := 0; i < len(items); i += per {
		chunk := items[i:min(i+per, len(items))]
		args := make([]any, 0, 1+len(chunk))
		args = append(args, prefix)
		for _, it := range chunk {
			args = append(args, it)
		}
		calls = append(calls, args)
	}
	return calls
}

// readCalls runs calls of s, a lookup script whose reply is an array
// starting with the generation and the rebuild marker ("" when missing),
// in one round trip, and returns each call's reply after them. It fails
// with malformed when a reply is not such an array, errGenerationMoved
// when the calls answered from two generations (the data was lost in
// between), and logic.ErrRouterRebuilding while the router rebuilds (see
// Generation).
func (r *Router) readCalls(ctx context.Context, s *redigo.Script, calls [][]any, malformed error) ([][]any, error) {
	replies, err := r.scriptReplies(ctx, s, calls)
	if err != nil {
		return nil, err
	}
	out := make([][]any, len(replies))
	var gen, marker []byte
	for i, reply := range replies {
		vals, err := redigo.Values(reply, nil)
		if err != nil || len(vals) < 2 {
			return nil, malformed
		}
		g, _ := vals[0].([]byte)
		m, _ := vals[1].([]byte)
		if i == 0 {
			gen, marker = g, m
		} else if string(g) != string(gen) || string(m) != string(marker) {
			return nil, errGenerationMoved
		}
		out[i] = vals[2:]
	}
	if len(gen) == 0 {
		gen = nil // the scripts write a missing generation as ""
	}
	rebuilding, err := r.observe(ctx, gen, marker)
	if err != nil {
		return nil, err
	}
	if rebuilding {
		return nil, logic.ErrRouterRebuilding
	}
	return out, nil
}
