package logic

import (
	"fmt"
	"time"

	"github.com/imcloud/imcloud"
)

// PushOption adjusts one push.
type PushOption func(*pushOptions)

type pushOptions struct {
	id       imcloud.MessageID
	expires  time.Time
	expiry   time.Duration
	speed    int32
	speedSet bool
}

// WithExpiry makes the push expire d after it is accepted: job drops it
// after that (and counts it) rather than deliver something stale.
func WithExpiry(d time.Duration) PushOption {
	return func(o *pushOptions) { o.expiry = d; o.expires = time.Time{} }
}

// WithExpiresAt makes the push expire at t.
func WithExpiresAt(t time.Time) PushOption {
	return func(o *pushOptions) { o.expires = t; o.expiry = 0 }
}

// WithID makes the push carry id as its queue message id instead of a new
// one (every message of a key or mid push to several nodes carries it).
// The cloud nodes drop a message whose id they delivered recently, so a
// push retried with the same id (after a timeout, a 503, a lost answer)
// reaches each client at most once, as long as the retry reaches a node
// within its dedup window: the last cloud.Config.DedupSize (65,536)
// messages that node received. Derive ids from a client's idempotency key
// with imcloud.MessageIDForKey. The zero id means "a new one".
func WithID(id imcloud.MessageID) PushOption {
	return func(o *pushOptions) { o.id = id }
}

// WithSpeed paces a broadcast (ToAll): job hands it to at most speed
// connections per second. 0, the default, is unpaced; a negative speed,
// or a speed on any other target, is ErrInvalidArgument.
func WithSpeed(speed int32) PushOption {
	return func(o *pushOptions) { o.speed, o.speedSet = speed, true }
}

// check refuses options that make no sense for a push to t.
func (o *pushOptions) check(t Target) error {
	if !o.speedSet {
		return nil
	}
	if t.Kind != TargetAll {
		return fmt.Errorf("%w: a speed paces broadcasts only, not a %s push", ErrInvalidArgument, t.Kind)
	}
	if o.speed < 0 {
		return fmt.Errorf("%w: negative speed %d", ErrInvalidArgument, o.speed)
	}
	return nil
}

// expiresAt is when a push accepted at now expires: its own WithExpiry or
// WithExpiresAt, else def after now (def 0: never, the zero time).
func (o *pushOptions) expiresAt(now time.Time, def time.Duration) time.Time {
	switch {
	case o.expiry > 0:
		return now.Add(o.expiry)
	case o.expires.IsZero() && def > 0:
		return now.Add(def)
	}
	return o.expires
}
