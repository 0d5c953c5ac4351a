package cloud

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipRateEntries bounds the per-source accept-rate table: 64 Ki sources,
// a few MB at most, whatever the number of addresses a flood comes from.
const ipRateEntries = 1 << 16

// ipRateShards spreads the table's lock.
const ipRateShards = 16

// ipRates holds one token bucket (golang.org/x/time/rate) per source
// address, so one source connecting in a loop spends its own budget and
// not the node's. An IPv6 source is its /64 (one subscriber's prefix, as
// carriers hand them out). The table is bounded: a full shard first
// forgets the sources whose bucket is full again (idle: forgetting them
// loses nothing, a new bucket starts full), and when every one is busy,
// an arbitrary one (that source starts afresh; the node's own accept
// rate stays the last resort).
type ipRates struct {
	perSec  rate.Limit
	burst   int
	perShrd int
	seed    maphash.Seed
	shards  [ipRateShards]ipRateShard
}

type ipRateShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter
}

// newIPRates returns a table of perSec-per-source buckets (burst perSec)
// holding at most size sources; perSec <= 0: no limit.
func newIPRates(perSec, size int) *ipRates {
	r := &ipRates{perSec: rate.Limit(perSec), burst: perSec, perShrd: max(size/ipRateShards, 1), seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[netip.Addr]*rate.Limiter)
	}
	return r
}

// allow takes one token from ip's bucket.
func (r *ipRates) allow(ip netip.Addr) bool {
	if r.perSec <= 0 {
		return true
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		ip = p.Addr()
	}
	b, _ := ip.MarshalBinary()
	sh := &r.shards[maphash.Bytes(r.seed, b)%ipRateShards]
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := sh.m[ip]
	if l == nil {
		if len(sh.m) >= r.perShrd {
			r.evict(sh, now)
		}
		l = rate.NewLimiter(r.perSec, r.burst)
		sh.m[ip] = l
	}
	return l.AllowN(now, 1)
}

// evict makes room in a full shard (its lock held).
func (r *ipRates) evict(sh *ipRateShard, now time.Time) {
	for ip, l := range sh.m {
		if l.TokensAt(now) >= float64(r.burst) {
			delete(sh.m, ip)
		}
	}
	if len(sh.m) < r.perShrd {
		return
	}
	for ip := range sh.m {
		delete(sh.m, ip)
		return
	}
}

// len is the number of sources in the table.
func (r *ipRates) len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
