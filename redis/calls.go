package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// scripts pipelines several calls of s, one per argument list, in one
// round trip, loading s first if the server does not know it.
func (r *Router) scripts(ctx context.Context, s *redigo.Script, calls [][]any) error {
	_, err := r.scriptReplies(ctx, s, calls)
	return err
}

// scriptReplies is scripts returning the calls' replies, in order. When
// it fails, the replies of the calls that succeeded are returned as well
// (nil for the others), and a retry (a lost connection, a MOVED reply)
// runs only the calls that had not succeeded: the calls before a MOVED
// reply ran, and what their replies report is not lost. After a lost
// connection, a call whose reply was lost may have run: it runs again,
// which leaves the data as one run would (every script is idempotent),
// but what the first run reported is lost, and the second reports
// nothing (putSessionsScript reports the previous user of a key only
// once: that user's copy of the route then stays until SessionTTL).
func (r *Router) scriptReplies(ctx context.Context, s *redigo.Script, calls [][]any) ([]any, error) {
	if len(calls) == 0 {
		return nil, ctx.Err()
	}
	if len(calls) == 1 {
		reply, err := r.script(ctx, s, calls[0]...)
		return []any{reply}, err
	}
	replies := make([]any, len(calls))
	done := make([]bool, len(calls))
	err := r.withConn(ctx, func(c redigo.Conn) error {
		return pipelineScripts(ctx, c, s, calls, replies, done)
	})
	return replies, err
}

// pipelineScripts runs the calls not done yet in one round trip, loading
// s first if the server does not know it, and records each call's reply
// that is not an error in replies, marking the call done.
//
// A transport error (a timeout, a lost connection: redigo then closes the
// connection) ends the round trip with that error, whatever error reply
// came before it: a timed-out call may have run, so it must not be
// retried (withPoolConn retries a lost connection, not a timeout), and a
// reload needs a healthy connection. Only error replies, the connection
// still healthy, lead to the one reload and rerun of the failed calls.
func pipelineScripts(ctx context.Context, c redigo.Conn, s *redigo.Script,
	calls [][]any, replies []any, done []bool) error {
	for attempt := 0; ; attempt++ {
		var sent []int
		for i, args := range calls {
			if done[i] {
				continue
			}
			if err := s.SendHash(c, args...); err != nil {
				return fmt.Errorf("redis: send: %w", err)
			}
			sent = append(sent, i)
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("redis: flush: %w", err)
		}
		var first error
		for _, i := range sent {
			reply, err := redigo.ReceiveContext(c, ctx)
			if err != nil {
				var re redigo.Error
				if !errors.As(err, &re) {
					return fmt.Errorf("redis: script: %w", err) // the connection is gone
				}
				if first == nil {
					first = err
				}
				continue
			}
			replies[i], done[i] = reply, true
		}
		if first == nil {
			return nil
		}
		if attempt == 0 && isNoScript(first) && c.Err() == nil {
			if err := s.Load(c); err != nil {
				return fmt.Errorf("redis: script load: %w", err)
			}
			continue // the calls that failed run again
		}
		return fmt.Errorf("redis: script: %w", first)
	}
}

func isNoScript(err error) bool {
	var re redigo.Error
	return errors.As(err, &re) && strings.HasPrefix(string(re), "NOSCRIPT")
}
