// Package eventtest is an in-process event sink that records what it
// gets, for the tests of the packages that emit or carry imcloud.Events
// (cloud.EventSink, job.EventSink).
package eventtest

import (
	"sync"

	"github.com/imcloud/imcloud"
)

// Log records the events it gets, in order. Safe for concurrent use.
type Log struct {
	mu  sync.Mutex
	evs []imcloud.Event
}

// Event records ev.
func (l *Log) Event(ev imcloud.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
}

// All returns every event recorded, in order.
func (l *Log) All() []imcloud.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]imcloud.Event(nil), l.evs...)
}

// Of returns key's events, in order.
func (l *Log) Of(key string) []imcloud.Event {
	var out []imcloud.Event
	for _, ev := range l.All() {
		if ev.Key == key {
			out = append(out, ev)
		}
	}
	return out
}

// Len is the number of events recorded.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}
