package cloud

import (
	"testing"
	"time"
)

// TestAcceptLimiter: a burst of the rate is admitted at once, then
// refused until tokens come back at the rate; a rate <= 0 admits
// everything. (Explicit times: no dependence on the test's speed.)
func TestAcceptLimiter(t *testing.T) {
	now := time.Now()
	l := newAcceptLimiter(5)
	for i := range 5 {
		if !l.AllowN(now, 1) {
			t.Fatalf("connection %d of the burst refused", i+1)
		}
	}
	if l.AllowN(now, 1) {
		t.Fatal("connection past the burst admitted")
	}
	if !l.AllowN(now.Add(200*time.Millisecond), 1) {
		t.Fatal("no token back after 1/rate")
	}
	if l.AllowN(now.Add(200*time.Millisecond), 1) {
		t.Fatal("more than one token back after 1/rate")
	}
	for _, perSec := range []int{0, -1} {
		l := newAcceptLimiter(perSec)
		for range 1000 {
			if !l.AllowN(now, 1) {
				t.Fatalf("rate %d refused a connection", perSec)
			}
		}
	}
}
