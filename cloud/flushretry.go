package cloud

import "time"

// flushRetryMin and flushRetryMax bound the wait between a failed flush
// and the next attempt: it doubles from the first to the second with
// each failure and starts over once a flush writes.
const (
	flushRetryMin = 100 * time.Millisecond
	flushRetryMax = 2 * time.Second
)

// flushLoop writes pending puts and removals as they come, batching
// whatever accumulates during a round trip. It runs until flushFinal,
// through Shutdown's drain: the removals of the connections already
// closed are written while the drain waits for the others, instead of
// all of them one round trip after another once every connection ended.
//
// After a failed flush it does not retry on each wake (every closed
// connection wakes it: during an outage that would be one failed call
// and one log line per disconnect): what is pending waits for the retry
// delay or for check to find the store reachable again, then is written
// in one flush. While the server drains, a failure leaves what is
// pending to flushFinal.
func (ss *sessionSync) flushLoop() {
	defer close(ss.flushed)
	var delay time.Duration
	for {
		select {
		case <-ss.stop:
			return
		case <-ss.wake:
		}
		for {
			called, ok := ss.flush()
			if ok {
				if called {
					delay = 0
					ss.failing.Store(false)
					select {
					case <-ss.retry: // a recovery signal this flush made moot
					default:
					}
				}
				break
			}
			ss.failing.Store(true)
			delay = min(max(2*delay, flushRetryMin), flushRetryMax)
			if !ss.pause(delay) {
				return
			}
		}
	}
}

// pause waits after a failed flush: delay, or until check finds the store
// reachable again (recovered). Once the server drains it waits for
// flushFinal instead, which writes what is pending. It reports false
// when flushLoop must return.
func (ss *sessionSync) pause(delay time.Duration) bool {
	if isClosed(ss.s.quit) {
		<-ss.stop
		return false
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.retry:
		return true
	case <-ss.s.quit:
		<-ss.stop
		return false
	case <-ss.stop:
		return false
	}
}

// recovered ends flushLoop's wait after a failed flush, if it waits, and
// wakes it: check found the store reachable again.
func (ss *sessionSync) recovered() {
	select {
	case ss.retry <- struct{}{}:
	default:
	}
	ss.signal()
}
