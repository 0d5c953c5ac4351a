package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The scale report over one redis-server and over several each replace
// their own block of the "scale" section and leave the other, and the
// text around both, alone; over several, the hold's Redis commands are
// given per shard.
func TestScaleReportBlocks(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "BENCHMARKS.md")
	three := shardedSection(3)
	doc := scaleSection.heading + "\n\n" + scaleSection.begin + "\nold one\n" + scaleSection.end + "\nreading one\n\n" +
		three.heading + "\n\n" + three.begin + "\nold three\n" + three.end + "\nreading three\n\n### Cost as the work grows\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(shards int, hold scaleResult) string {
		t.Helper()
		js := filepath.Join(dir, "results.jsonl")
		var lines []string
		for _, r := range []scaleResult{{Phase: "ramp", Gateways: 2, Conns: 100, Seconds: 1.5, Pass: true}, hold,
			{Phase: "room", Gateways: 2, Conns: 100, Seconds: 0.2, P50: 90, P99: 190, Missing: 1}} {
			b, _ := json.Marshal(r)
			lines = append(lines, string(b))
		}
		if err := os.WriteFile(js, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := scaleReport(&scaleCtlConfig{jsonOut: js, md: md, shards: shards}); err != nil {
			t.Fatal(err)
		}
		out, _ := os.ReadFile(md)
		return string(out)
	}
	s := write(3, scaleResult{Phase: "hold", Gateways: 2, Conns: 100, Seconds: 30, RedisOps: 3000,
		RedisShardOps: []float64{1200, 900, 900}, Pass: true})
	for _, want := range []string{"\nold one\n", "3 redis-servers 3,000 commands/s in all (1,200, 900, 900)",
		"| room | 2 | 100 | 0.20 | 90 / 190 | 1 | 0 | 0 | 0 / 0 | **no**", "reading one\n", "reading three\n\n### Cost"} {
		if !strings.Contains(s, want) {
			t.Errorf("3 shards: report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "old three") || strings.Index(s, "(1,200") < strings.Index(s, three.begin) {
		t.Errorf("3 shards: written outside its block:\n%s", s)
	}
	s = write(1, scaleResult{Phase: "hold", Gateways: 2, Conns: 100, Seconds: 30, RedisOps: 2500, Pass: true})
	if strings.Contains(s, "old one") || !strings.Contains(s, "redis-server 2,500 commands/s.") ||
		!strings.Contains(s, "(1,200, 900, 900)") || strings.Index(s, "2,500") > strings.Index(s, "reading one") {
		t.Errorf("1 shard: block not replaced, or the 3-shard block lost:\n%s", s)
	}
}
