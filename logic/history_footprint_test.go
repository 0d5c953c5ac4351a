package logic_test

import (
	"testing"

	"github.com/imcloud/imcloud/internal/historytest"
	"github.com/imcloud/imcloud/logic"
)

// BenchmarkMemoryHistoryFootprint is the memory store's size per stored
// push and per stream (historytest.BenchFootprint): the Go heap and the
// process's RSS it grew by, and "accounted", what the store counts
// against MaxBytes, to check that estimate. Run it alone:
//
//	go test -run '^$' -bench MemoryHistoryFootprint -benchtime 1x ./logic
func BenchmarkMemoryHistoryFootprint(b *testing.B) {
	historytest.BenchFootprint(b, historytest.Footprint{
		Open: func(*testing.B) historytest.Store {
			return logic.NewMemoryHistory(logic.MemoryHistoryConfig{MaxBytes: 1 << 40})
		},
		Usage: func(_ *testing.B, st historytest.Store) map[string]int64 {
			m := historytest.ProcessMemory()
			m["accounted"] = st.(*logic.MemoryHistory).Stats().Bytes
			return m
		},
	})
}
