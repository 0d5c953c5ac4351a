package job

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"golang.org/x/sync/errgroup"
)

// lookupConcurrency bounds the Users calls one stage makes at once.
const lookupConcurrency = 64

// staged is a record waiting in its partition's stage.
type staged struct {
	m      *imcloud.Message
	e      *entry
	offset int64
	// app is the index of the record's first history append in the
	// batch (one per user of a mids message, one for a room message),
	// -1 for none.
	app int
}

// stages holds one stage per source partition that had staged records.
//
// A stage takes the records of its partition that need a store before
// they can be delivered (mids messages and kicks by mids; room messages
// when Config.Rooms or Config.History is set) in offset order, and handles whatever waited
// as one batch: one History.Append call for every push of the batch, the
// lookups of the batch's users, one lookup of the member nodes of the
// batch's rooms, then the batch's messages queued for their nodes in
// offset order. A failed append or user lookup is retried with backoff
// while the job runs, and the partition's staged records wait: nothing
// of them is delivered or committed before it is in the history. A
// failed room lookup is not retried: the batch's room messages fan out
// to every live node (see lookupRooms). Each record holds its
// pending-records token (Config.MaxPending) until it is done, so the
// stages' memory is bounded with the rest.
type stages struct {
	j  *Job
	mu sync.Mutex
	by map[int32]*stage
	wg sync.WaitGroup
	// roomsFailing is set while room lookups fail (a failure streak,
	// logged once), across partitions.
	roomsFailing atomic.Bool
}

func (s *stages) init(j *Job) {
	s.j = j
	s.by = make(map[int32]*stage)
}

// add queues it on partition's stage, starting the stage first if
// needed. Only the receive loop calls it.
func (s *stages) add(partition int32, it staged) {
	s.mu.Lock()
	st := s.by[partition]
	if st == nil {
		st = &stage{j: s.j, partition: partition, wake: make(chan struct{}, 1)}
		s.by[partition] = st
		ctx := s.j.workCtx()
		s.wg.Add(1)
		go func() { defer s.wg.Done(); st.run(ctx) }()
	}
	s.mu.Unlock()
	st.add(it)
}

// wait returns once every stage ended (the job's work context ended):
// what they held stays uncommitted.
func (s *stages) wait() { s.wg.Wait() }

// stage is one partition's: see stages.
type stage struct {
	j         *Job
	partition int32

	mu   sync.Mutex
	q    []staged
	wake chan struct{}

	// Reused by run across batches.
	appends []imcloud.HistoryAppend
	targets []*nodeWorker
	rooms   []string
}

func (s *stage) add(it staged) {
	s.mu.Lock()
	s.q = append(s.q, it)
	s.mu.Unlock()
	signal(s.wake)
}

// take waits for records and swaps everything waiting with spare. It
// returns false once ctx ended.
func (s *stage) take(ctx context.Context, spare []staged) ([]staged, bool) {
	for {
		s.mu.Lock()
		if len(s.q) > 0 {
			batch := s.q
			s.q = spare[:0]
			s.mu.Unlock()
			return batch, true
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return spare, false
		}
	}
}

// run handles batches until ctx ends, each at most MaxDelivery records.
func (s *stage) run(ctx context.Context) {
	var waiting []staged
	for {
		var ok bool
		if waiting, ok = s.take(ctx, waiting); !ok {
			return
		}
		for rest := waiting; len(rest) > 0; {
			n := min(len(rest), s.j.cfg.MaxDelivery)
			if !s.handle(ctx, rest[:n]) {
				return
			}
			rest = rest[n:]
		}
		clear(waiting)
		waiting = waiting[:0]
	}
}

// handle appends, resolves and queues one batch. It returns false if ctx
// ended first: the batch stays undone and uncommitted.
func (s *stage) handle(ctx context.Context, batch []staged) bool {
	now := time.Now()
	live := batch[:0]
	for _, it := range batch {
		if it.m.Expired(now) {
			s.j.c.expired.Add(1)
			s.j.finish(it.e)
			continue
		}
		live = append(live, it)
	}
	if !s.appendAll(ctx, live) {
		return false
	}
	routes, ok := s.lookup(ctx, live)
	if !ok {
		return false
	}
	members, ok := s.lookupRooms(ctx, live)
	if !ok {
		return false
	}
	now = time.Now()
	for _, it := range live {
		switch it.m.Kind {
		case imcloud.KindRoom:
			if it.app >= 0 {
				a := &s.appends[it.app]
				it.m.Stream, it.m.Epoch, it.m.Offset = a.Stream, a.Epoch, it.offset
			}
			s.routeRoom(ctx, it, members, now)
		case imcloud.KindMids:
			s.routeMids(ctx, it, routes, now)
		case imcloud.KindKick:
			s.routeKick(ctx, it, routes, now)
		}
		s.j.finish(it.e) // the stage's hold
	}
	clear(s.appends)
	clear(s.targets)
	clear(s.rooms)
	return true
}

// appendAll appends the batch's pushes to their streams, retrying until
// the store takes them or ctx ends.
func (s *stage) appendAll(ctx context.Context, batch []staged) bool {
	apps := s.appends[:0]
	for i := range batch {
		batch[i].app = -1
	}
	if s.j.cfg.History == nil {
		s.appends = apps
		return true // mids routed without history: nothing to append
	}
	for i := range batch {
		it := &batch[i]
		switch it.m.Kind {
		case imcloud.KindRoom:
			st := imcloud.RoomStream(it.m.Room)
			if st.Validate() != nil {
				// Not a room key a stream can name (an older logic let
				// it through): delivered as without history.
				continue
			}
			it.app = len(apps)
			apps = append(apps, historyAppend(st, s.partition, it))
		case imcloud.KindMids:
			it.app = len(apps)
			for _, mid := range it.m.Mids {
				apps = append(apps, historyAppend(imcloud.UserStream(mid), s.partition, it))
			}
		}
	}
	s.appends = apps
	if len(apps) == 0 {
		return true
	}
	backoff := s.j.cfg.RetryMin
	for attempt := 0; ; attempt++ {
		err := s.j.cfg.History.Append(ctx, apps)
		if err == nil {
			s.j.c.historyAppended.Add(uint64(len(apps)))
			if attempt > 0 {
				s.j.log.Info("job: history appends going through again", "partition", s.partition,
					"attempts", attempt+1)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.j.c.historyErrors.Add(1)
		if attempt == 0 || attempt%20 == 0 {
			s.j.log.Warn("job: history append failed; the partition waits and retries",
				"partition", s.partition, "pushes", len(apps), "attempt", attempt+1, "err", err)
		}
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, s.j.cfg.RetryMax)
	}
}

func historyAppend(st imcloud.Stream, partition int32, it *staged) imcloud.HistoryAppend {
	m := it.m
	return imcloud.HistoryAppend{Stream: st, Partition: partition, Entry: imcloud.HistoryEntry{
		Offset: it.offset, ID: m.ID, Op: m.Op, Body: m.Body, Accepted: m.Accepted, Expires: m.Expires,
	}}
}

// lookup resolves the connections of the batch's users, retrying the
// users whose lookup failed until all succeed or ctx ends.
func (s *stage) lookup(ctx context.Context, batch []staged) (map[int64]map[string]string, bool) {
	var mids []int64
	for _, it := range batch {
		if toUsers(it.m) {
			mids = append(mids, it.m.Mids...)
		}
	}
	if len(mids) == 0 {
		return nil, true
	}
	slices.Sort(mids)
	mids = slices.Compact(mids)
	routes := make(map[int64]map[string]string, len(mids))
	backoff := s.j.cfg.RetryMin
	for attempt := 0; ; attempt++ {
		failed, err := s.resolve(ctx, mids, routes)
		if failed == 0 {
			if attempt > 0 {
				s.j.log.Info("job: user lookups going through again", "partition", s.partition,
					"attempts", attempt+1)
			}
			return routes, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		s.j.c.lookupErrors.Add(uint64(failed))
		if attempt == 0 || attempt%20 == 0 {
			s.j.log.Warn("job: user lookup failed; the partition waits and retries",
				"partition", s.partition, "users", failed, "attempt", attempt+1, "err", err)
		}
		if !sleepCtx(ctx, backoff) {
			return nil, false
		}
		backoff = min(backoff*2, s.j.cfg.RetryMax)
		mids = slices.DeleteFunc(mids, func(mid int64) bool { _, ok := routes[mid]; return ok })
	}
}

// resolve looks up each of mids on its own (keys are attributed to their
// user: a user's stream goes only to that user's connections), at most
// lookupConcurrency at a time; the Redis router serves the calls made
// together in one round trip. It fills routes with the users it resolved
// and returns how many lookups failed, and one of their errors.
func (s *stage) resolve(ctx context.Context, mids []int64, routes map[int64]map[string]string) (int, error) {
	users := s.j.cfg.Users
	if len(mids) == 1 {
		r, err := users.NodesByMids(ctx, mids)
		if err != nil {
			return 1, err
		}
		routes[mids[0]] = r
		return 0, nil
	}
	got := make([]map[string]string, len(mids))
	errs := make([]error, len(mids))
	var g errgroup.Group
	g.SetLimit(lookupConcurrency)
	for i := range mids {
		g.Go(func() error {
			got[i], errs[i] = users.NodesByMids(ctx, mids[i:i+1])
			return nil
		})
	}
	_ = g.Wait()
	failed := 0
	var first error
	for i, mid := range mids {
		if errs[i] != nil {
			failed++
			first = cmp.Or(first, errs[i])
			continue
		}
		routes[mid] = got[i]
	}
	return failed, first
}

// routeMids queues a mids message as keys messages: with history, one per
// node and user, carrying the user's stream, the epoch and the offset;
// without, one per node for all its users' connections there.
func (s *stage) routeMids(ctx context.Context, it staged, routes map[int64]map[string]string, now time.Time) {
	sent := false
	if it.app < 0 {
		conns := make(map[string]string)
		for _, mid := range it.m.Mids {
			maps.Copy(conns, routes[mid])
		}
		sent = s.routeConns(ctx, it, conns, nil, now)
	} else {
		for k, mid := range it.m.Mids {
			sent = s.routeConns(ctx, it, routes[mid], &s.appends[it.app+k], now) || sent
		}
	}
	if !sent {
		s.j.c.offline.Add(1)
		s.j.log.Debug("job: no connection for the users of a push", "id", it.m.ID, "users", len(it.m.Mids))
	}
}

// routeConns queues one keys message per node of conns (key -> node) and
// reports whether there was any.
func (s *stage) routeConns(ctx context.Context, it staged, conns map[string]string, app *imcloud.HistoryAppend, now time.Time) bool {
	send := func(node string, keys []string) {
		m := it.m
		msg := &imcloud.Message{ID: m.ID, Kind: imcloud.KindKeys, Op: m.Op, Node: node, Keys: keys,
			Body: m.Body, Accepted: m.Accepted, Expires: m.Expires}
		if app != nil {
			msg.Stream, msg.Epoch, msg.Offset = app.Stream, app.Epoch, it.offset
		}
		it.e.remaining.Add(1)
		s.j.dir.route(ctx, node, item{m: msg, e: it.e, at: now.UnixNano()}, now)
	}
	return eachNode(conns, send)
}

// eachNode calls send once per node of conns (key -> node) with its keys,
// nodes and keys sorted, and reports whether there was any.
func eachNode(conns map[string]string, send func(node string, keys []string)) bool {
	switch len(conns) {
	case 0:
		return false
	case 1: // the common case: one connection, no grouping
		for key, node := range conns {
			send(node, []string{key})
		}
		return true
	}
	byNode := make(map[string][]string, 2)
	for key, node := range conns {
		byNode[node] = append(byNode[node], key)
	}
	for _, node := range slices.Sorted(maps.Keys(byNode)) {
		keys := byNode[node]
		slices.Sort(keys)
		send(node, keys)
	}
	return true
}
