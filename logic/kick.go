package logic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/text"
)

// A kick closes connections across the cluster (docs/design.md, control
// plane): every connection of some users, or the connections named by
// their keys. It travels the queue as an imcloud.KindKick message, never
// as a push, so it keeps its place among the pushes before it:
//
//   - by mids with history on (Config.History), one KindKick per user
//     carrying Mids [mid], keyed by the user's stream like the user's
//     KindMids pushes (PartitionKey): job meets it in offset order with
//     them, resolves the user's connections then and sends each node a
//     KindKick of its keys;
//   - by mids with history off, and by keys, the Router resolves the
//     connections here, as for a key or mid push, and each node gets one
//     KindKick{Node, Keys, Reason}, keyed by the node like that node's key
//     pushes.
//
// A kick with WithRevoke also revokes the users' credentials issued before
// it (Revoker): the cloud nodes refuse them at auth from then on.

// Bounds of a kick's input.
const (
	// MaxKickTargets is the most mids or keys one kick names: a kick of
	// more is ErrInvalidArgument (HTTP 400). A push of as many mids is a
	// large push (DefaultMaxPushCost is ten of them).
	MaxKickTargets = 10000
	// MaxKickReason is the longest reason (WithReason), in bytes.
	MaxKickReason = 128
	// maxKickKey is the longest key a kick names: longer than any key a
	// cloud node gives a connection (128 bytes, with the mid's prefix
	// when keys are bound to users).
	maxKickKey = 256
	// DefaultRevokeTTL is Config.RevokeTTL's default.
	DefaultRevokeTTL = 24 * time.Hour
)

// ErrRevokeUnsupported is returned by a kick with WithRevoke when the
// Pusher's Router keeps no revocations (it is not a Revoker). Nothing was
// kicked. The HTTP handler answers 501.
var ErrRevokeUnsupported = errors.New("logic: the router keeps no revocations")

// KickTarget names the connections a kick closes: every connection of the
// users Mids (positive user ids), or the connections named by Keys;
// exactly one of the two, of at most MaxKickTargets items.
type KickTarget struct {
	Mids []int64
	Keys []string
}

// KickOption adjusts one kick.
type KickOption func(*kickOptions)

type kickOptions struct {
	reason string
	revoke bool
}

// WithReason is the reason ver-2 clients read in the op 6 that closes
// them: at most MaxKickReason bytes of printable UTF-8. Empty, the
// default, is "kicked" at the node.
func WithReason(reason string) KickOption {
	return func(o *kickOptions) { o.reason = reason }
}

// WithRevoke also revokes the users' credentials issued before the kick:
// the cloud nodes refuse an auth or a token refresh whose IssuedAt is
// before it (cloud.RevocationStore), for Config.RevokeTTL. Only a kick by
// mids may revoke; the Router must be a Revoker (else
// ErrRevokeUnsupported).
func WithRevoke() KickOption {
	return func(o *kickOptions) { o.revoke = true }
}

// KickResult says what a kick targeted.
type KickResult struct {
	// ID is the kick's message id (with history on, each user's message
	// carries one derived from it: see Pusher.Kick).
	ID imcloud.MessageID
	// Connections is the number of connections the Router found for the
	// target when the kick was accepted (HTTP: "connections"). With
	// history on, job looks the users up again when it meets the kick, so
	// a connection that appeared meanwhile is closed too.
	Connections int
	// Nodes is the number of cloud nodes those connections are on.
	Nodes int
	// Messages is the number of queue messages published.
	Messages int
}

// Kick closes the connections t names, across the cluster (see above),
// with the reason of WithReason, and with WithRevoke revokes the users'
// credentials issued before now (Revoker.Revoke for Config.RevokeTTL)
// before anything is published, so a connection that authenticates with
// an old credential after Kick returns is refused. It returns once the
// Queue accepted every message; the nodes apply a kick within the queue's
// latency, and room pushes and broadcasts may reach the connections until
// then.
//
// Bad input is ErrInvalidArgument: no target or both, an empty list, a
// mid below 1, an empty, over-long or non-printable key, more than
// MaxKickTargets items, a reason over MaxKickReason bytes or not
// printable, a revoke by keys. While the Router rebuilds it fails with
// ErrRouterRebuilding, like a push; a failed Router or Queue is ErrRouter
// or ErrQueue. A kick that fails may have been published in part, and its
// revocation written: retry it (a kick is idempotent; a later revocation
// replaces an earlier one).
//
// A kick is small and rare, so it runs on the caller's goroutine under ctx
// (bounded by Config.Timeout), as the online queries do, rather than on
// the pool: there is nothing to gain from a synchronous hand-off. It does
// count against the push cost budgets, by its targets, since its Router
// lookup costs what a push's does, and Shutdown waits for it (ErrClosed
// after).
//
// With history on, the per-user messages do not share one id: each
// carries ID.ForUser(mid), because job turns each into per-node messages
// and a node drops a message whose id it has seen, which would spare the
// second user kicked on the same node.
func (p *Pusher) Kick(ctx context.Context, t KickTarget, opts ...KickOption) (KickResult, error) {
	var o kickOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := t.validate(o); err != nil {
		return KickResult{}, err
	}
	var revoker Revoker
	if o.revoke {
		var ok bool
		if revoker, ok = p.router.(Revoker); !ok {
			return KickResult{}, ErrRevokeUnsupported
		}
	}
	// Admission and Shutdown as for a push (begin and end), by the cost of
	// a push to the same targets without a body.
	w := &push{target: ToMids(t.Mids...)}
	if len(t.Keys) > 0 {
		w.target = ToKeys(t.Keys...)
	}
	if err := p.begin(w); err != nil {
		return KickResult{}, err
	}
	defer p.end(w)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()

	now := time.Now()
	base := imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKick, Reason: o.reason, Accepted: now}
	if revoker != nil {
		// Before the lookup: a connection that authenticates after the
		// revocation is refused, and one that did before is found.
		if err := revoker.Revoke(ctx, distinctUsers(t.Mids), now, p.revokeTTL); err != nil {
			return KickResult{ID: base.ID}, wrapErr(ErrRouter, err)
		}
	}
	var (
		routes map[string]string
		err    error
	)
	if len(t.Mids) > 0 {
		routes, err = p.router.NodesByMids(ctx, t.Mids)
	} else {
		routes, err = p.router.NodesByKeys(ctx, t.Keys)
	}
	if err != nil {
		return KickResult{ID: base.ID}, wrapErr(ErrRouter, err)
	}
	byNode := make(map[string][]string, 2)
	for key, node := range routes {
		byNode[node] = append(byNode[node], key)
	}
	res := KickResult{ID: base.ID, Connections: len(routes), Nodes: len(byNode)}
	var msgs []*imcloud.Message
	if len(t.Mids) > 0 && p.history != nil {
		users := distinctUsers(t.Mids)
		msgs = make([]*imcloud.Message, len(users))
		for i, mid := range users {
			m := base
			m.ID = base.ID.ForUser(mid)
			m.Mids = users[i : i+1 : i+1]
			msgs[i] = &m
		}
	} else {
		for node, keys := range byNode {
			m := base
			m.Node, m.Keys = node, keys
			msgs = append(msgs, &m)
		}
	}
	if len(msgs) == 0 {
		return res, nil
	}
	if err := p.queue.Publish(ctx, msgs); err != nil {
		return res, wrapErr(ErrQueue, err)
	}
	res.Messages = len(msgs)
	p.stats.messages.Add(uint64(len(msgs)))
	return res, nil
}

// validate checks a kick's target and options as Pusher.Kick says.
func (t KickTarget) validate(o kickOptions) error {
	n := len(t.Mids) + len(t.Keys)
	switch {
	case len(t.Mids) > 0 && len(t.Keys) > 0:
		return fmt.Errorf("%w: a kick names mids or keys, not both", ErrInvalidArgument)
	case n == 0:
		return fmt.Errorf("%w: a kick names mids or keys", ErrInvalidArgument)
	case n > MaxKickTargets:
		return fmt.Errorf("%w: a kick of %d targets (at most %d)", ErrInvalidArgument, n, MaxKickTargets)
	case len(o.reason) > MaxKickReason:
		return fmt.Errorf("%w: a kick reason of %d bytes (at most %d)", ErrInvalidArgument, len(o.reason), MaxKickReason)
	case !text.Printable(o.reason):
		return fmt.Errorf("%w: kick reason %q has control characters or is not UTF-8", ErrInvalidArgument, o.reason)
	case o.revoke && len(t.Mids) == 0:
		return fmt.Errorf("%w: a revoke names users: kick by mids", ErrInvalidArgument)
	}
	for _, mid := range t.Mids {
		if mid <= 0 {
			return fmt.Errorf("%w: mid %d is not above 0", ErrInvalidArgument, mid)
		}
	}
	for _, key := range t.Keys {
		if key == "" || len(key) > maxKickKey || !text.Printable(key) {
			return fmt.Errorf("%w: key %q is empty, longer than %d bytes or not printable", ErrInvalidArgument, key, maxKickKey)
		}
	}
	return nil
}
