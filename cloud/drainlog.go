package cloud

import (
	"log/slog"
	"time"
)

// drainPhases times the phases of Shutdown's drain (Server.drain), one
// after the other, and logs them at Info level when the drain ends, with
// the connections it closed (conns) and the total (took): how long the
// node took to stop accepting (stop), to wait for its background loops
// (background), to deregister (deregister), to close its connections at
// DrainRate (close), to see every connection end (ended), to let the
// writers finish (writers), to write the last session removals
// (removals) and to hand the last events to the sink (events). A drain
// that takes longer than its connections divided by DrainRate says in
// which phase.
type drainPhases struct {
	start, last time.Time
	attrs       []any
}

func newDrainPhases() *drainPhases {
	now := time.Now()
	return &drainPhases{start: now, last: now}
}

// done ends phase name, which began when the previous one ended.
func (p *drainPhases) done(name string) {
	now := time.Now()
	p.attrs = append(p.attrs, name, now.Sub(p.last).Round(time.Millisecond))
	p.last = now
}

// log writes the phases, the connections the drain closed and the total.
func (p *drainPhases) log(l *slog.Logger, conns int) {
	attrs := append([]any{"conns", conns, "took", time.Since(p.start).Round(time.Millisecond)}, p.attrs...)
	l.Info("cloud: drained", attrs...)
}
