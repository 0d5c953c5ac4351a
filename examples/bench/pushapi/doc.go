// Package pushapi holds the push API's benchmarks through real backends:
// logic's Pusher and HTTP handler over a real redis-server and a
// Kafka-protocol broker (kfake), driven in process or by wrk (Debian's wrk
// package) in a process of its own. It has no code of its own; run
//
//	go test ./examples/bench/pushapi -run '^$' -bench .
//
// one benchmark at a time on a quiet machine (BENCHMARKS.md, logic).
package pushapi
