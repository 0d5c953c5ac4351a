package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sweep report splits the results into runs at each ramp, writes the
// three plots and one table row per run into its own subsection, and
// leaves the rest of the document alone.
func TestSweepReport(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	add := func(r scaleResult) {
		b, _ := json.Marshal(r)
		lines = append(lines, string(b))
	}
	for _, run := range []struct {
		gws   int
		conns int64
	}{{1, 19000}, {1, 5000}, {2, 10000}} {
		add(scaleResult{Phase: "ramp", Gateways: run.gws, Conns: run.conns, Seconds: 2, Pass: true})
		procs := []procResult{{Name: "redis", Cores: 0.01}}
		for k := 0; k < run.gws; k++ {
			procs = append(procs, procResult{Name: "gw-" + string(rune('0'+k)), Cores: 0.02, RSSBytes: 50e6})
		}
		add(scaleResult{Phase: "hold", Gateways: run.gws, Conns: run.conns, RSSPerConn: 5 * 1024, Procs: procs, Pass: true, Load1: 1.5})
		add(scaleResult{Phase: "room", Gateways: run.gws, Conns: run.conns, Seconds: 0.25, P50: 100, P99: 240, Pass: run.gws == 1})
	}
	js, md := filepath.Join(dir, "sweep.jsonl"), filepath.Join(dir, "BENCHMARKS.md")
	if err := os.WriteFile(js, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := "## scale (examples/bench)\n\n" + sweepSection.heading + "\n\n" + sweepSection.begin + "\nold\n" + sweepSection.end + "\n\n### Router cost per shard\n\nkept\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &scaleCtlConfig{jsonOut: js, md: md, svgDir: dir}
	if err := sweepReport(c); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(md)
	s := string(out)
	for _, want := range []string{
		"| 1 | 5,000 | 5,000 | 2.0 | 5.00 | 50 | 0.020 | 0.010 |",
		"| 1 | 19,000 | 19,000 |",
		"| 2 | 5,000 | 10,000 | 2.0 | 5.00 | 100 | 0.040 | 0.010 |",
		"| 0.25 | 100 / 240 | 0.0 | **no**",
		"docs/bench-scale-nodes.svg", "### Router cost per shard\n\nkept\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\nold\n") || strings.Index(s, "| 1 | 5,000") > strings.Index(s, "| 1 | 19,000") {
		t.Errorf("old block kept or rows out of order:\n%s", s)
	}
	for _, name := range []string{"bench-scale-conns.svg", "bench-scale-nodes.svg", "bench-scale-room.svg"} {
		svg, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "<circle") {
			t.Errorf("%s: %v %.80q", name, err, svg)
		}
	}
	nodes, _ := os.ReadFile(filepath.Join(dir, "bench-scale-nodes.svg"))
	if n := strings.Count(string(nodes), "<circle"); n != 4 {
		t.Errorf("nodes plot: %d points, want 2 runs x 2 series", n)
	}
}
