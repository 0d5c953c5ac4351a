package redis_test

import (
	"strconv"
	"strings"
	"testing"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/internal/historytest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
)

// BenchmarkRedisHistoryFootprint is the Redis history's size per stored
// push and per stream (historytest.BenchFootprint) in a real
// redis-server: INFO memory's used_memory (what Redis allocated) and
// used_memory_rss (its resident size, which follows the allocator in
// steps), read around each fill of a flushed server. Run it alone:
//
//	go test -run '^$' -bench RedisHistoryFootprint -benchtime 1x ./redis
func BenchmarkRedisHistoryFootprint(b *testing.B) {
	srv := testenv.StartRedis(b)
	r := newRedisRouter(b, redis.Config{Addr: srv.Addr})
	conn, err := redigo.Dial("tcp", srv.Addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	historytest.BenchFootprint(b, historytest.Footprint{
		Open: func(*testing.B) historytest.Store {
			srv.FlushAll()
			return redis.NewHistory(r, redis.HistoryConfig{})
		},
		Usage: func(b *testing.B, _ historytest.Store) map[string]int64 {
			info, err := redigo.String(conn.Do("INFO", "memory"))
			if err != nil {
				b.Fatal(err)
			}
			m := map[string]int64{}
			for _, line := range strings.Split(info, "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				if k == "used_memory" || k == "used_memory_rss" {
					if m[k], err = strconv.ParseInt(v, 10, 64); err != nil {
						b.Fatalf("INFO memory: %q", line)
					}
				}
			}
			if len(m) != 2 {
				b.Fatalf("INFO memory without used_memory and used_memory_rss: %q", info)
			}
			return m
		},
	})
}
