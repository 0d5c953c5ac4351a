package logic

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/imcloud/imcloud"
	"golang.org/x/sync/errgroup"
)

// Presence: which connections users have right now, and, on every mid
// push, which of its users had none (Result.Offline), so the application
// can fall back to mobile push (APNs, FCM).
//
// Both read what the cloud nodes wrote to the Router, so they are as
// fresh as it is: a connection is there once its AuthReply was sent (the
// node writes the session before it releases the reply); a closed one
// is gone after the node's next store flush (a round trip to the store:
// milliseconds); the connections of a node that crashed stay until its
// registration expires (cloud.Config.NodeTTL, 30 s by default) for
// Presence, which reports only sessions of live nodes, and until their
// sessions expire (cloud.Config.SessionTTL) for Offline, which reads the
// routes as a push does (a push to them is lost either way).

// ErrPresenceUnsupported is returned by Pusher.Presence when the Router
// is not a PresenceRouter. The HTTP handler answers 501.
var ErrPresenceUnsupported = errors.New("logic: the router does not report presence")

// MaxPresenceMids is the most mids one Presence call asks about, as many
// as a kick names (MaxKickTargets): the size of a large push.
const MaxPresenceMids = 10000

// OfflineRouter is a Router whose mid lookup also says which users it
// found no connection for (Result.Offline): an optional capability, found
// by type assertion. The memory and Redis routers have it; with another
// Router a push to several users, some of them online, looks each of them
// up on its own to tell which. A Router that wraps one of them (embeds it)
// and changes NodesByMids must change NodesByMidsOffline alike: mid pushes
// look users up through it.
type OfflineRouter interface {
	// NodesByMidsOffline is NodesByMids that also returns each positive
	// mid of mids it found no connection for, in their order in mids
	// (repeated as asked), in the same call; nil when it found one for
	// each.
	NodesByMidsOffline(ctx context.Context, mids []int64) (routes map[string]string, offline []int64, err error)
}

// Presence returns the live connections of each of mids that has any
// (imcloud.Session: Mid, Key, Node, Platform, primary Room, Since and
// Gen; not Accepts), each user's ordered by Since, then Key: a user who
// is not online is absent. Only the sessions of nodes whose registration
// is live count. No mids, more than MaxPresenceMids or a mid below 1 is
// ErrInvalidArgument; a Router that is not a PresenceRouter
// ErrPresenceUnsupported; a router rebuilding after it lost its data
// ErrRouterRebuilding (it cannot tell yet); another failure ErrRouter.
// The read runs on the caller's goroutine, under ctx, like the online
// queries.
func (p *Pusher) Presence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error) {
	if len(mids) == 0 {
		return nil, fmt.Errorf("%w: no mids", ErrInvalidArgument)
	}
	if len(mids) > MaxPresenceMids {
		return nil, fmt.Errorf("%w: presence of %d mids (at most %d)", ErrInvalidArgument, len(mids), MaxPresenceMids)
	}
	for _, mid := range mids {
		if mid <= 0 {
			return nil, fmt.Errorf("%w: mid %d is not above 0", ErrInvalidArgument, mid)
		}
	}
	pr, ok := p.router.(PresenceRouter)
	if !ok {
		return nil, ErrPresenceUnsupported
	}
	out, err := pr.Presence(ctx, mids)
	if err != nil {
		return nil, wrapErr(ErrRouter, err)
	}
	for _, sessions := range out {
		slices.SortFunc(sessions, func(a, b imcloud.Session) int {
			return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Key, b.Key))
		})
	}
	return out, nil
}

// lookupUsers resolves mids to their connections (key -> node) and the
// distinct positive mids of them that have none (Result.Offline), in
// their first order: one Router call with an OfflineRouter. Offline is
// nil when every user is online, and never aliases mids.
func (p *Pusher) lookupUsers(ctx context.Context, mids []int64) (map[string]string, []int64, error) {
	if or, ok := p.router.(OfflineRouter); ok {
		routes, offline, err := or.NodesByMidsOffline(ctx, mids)
		if err != nil || len(offline) < 2 {
			return routes, offline, err
		}
		return routes, distinctUsers(offline), nil
	}
	routes, err := p.router.NodesByMids(ctx, mids)
	if err != nil {
		return nil, nil, err
	}
	users := distinctUsers(mids)
	switch {
	case len(routes) == 0 && len(users) > 0:
		return routes, slices.Clone(users), nil
	case len(routes) == 0 || len(users) == 1:
		return routes, nil, nil
	}
	offline, err := p.offlineOneByOne(ctx, users)
	return routes, offline, err
}

// offlineOneByOne returns the users of users without a connection, each
// looked up on its own (a Router without NodesByMidsOffline), a few at a
// time.
func (p *Pusher) offlineOneByOne(ctx context.Context, users []int64) ([]int64, error) {
	online := make([]bool, len(users))
	var g errgroup.Group
	g.SetLimit(offlineLookups)
	for i := range users {
		g.Go(func() error {
			r, err := p.router.NodesByMids(ctx, users[i:i+1])
			online[i] = len(r) > 0
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var offline []int64
	for i, mid := range users {
		if !online[i] {
			offline = append(offline, mid)
		}
	}
	return offline, nil
}

// offlineLookups bounds offlineOneByOne's lookups in flight.
const offlineLookups = 16
