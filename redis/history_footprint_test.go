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
// steps), read around each fill of a fresh server. Run it alone:
//
//	go test -run '^$' -bench RedisHistoryFootprint -benchtime 1x ./redis
func BenchmarkRedisHistoryFootprint(b *testing.B) {
	var addr string // the redis-server of the store being weighed
	historytest.BenchFootprint(b, historytest.Footprint{
		Open: func(b *testing.B) historytest.Store {
			// A fresh server each time: Redis keeps its resident size
			// after a FLUSHALL, which would hide the next fill's.
			srv := testenv.StartRedis(b)
			addr = srv.Addr
			return redis.NewHistory(newRedisRouter(b, redis.Config{Addr: srv.Addr}), redis.HistoryConfig{})
		},
		Usage: func(b *testing.B, _ historytest.Store) map[string]int64 {
			conn, err := redigo.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
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
