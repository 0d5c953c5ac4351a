package imcloud_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackendDependencies keeps each backend library in its own package:
// an embedder who uses the memory backends links neither sarama nor
// redigo (package metrics included), and no role or backend links
// client_golang.
func TestBackendDependencies(t *testing.T) {
	const mod = "github.com/imcloud/imcloud"
	forbidden := map[string][]string{
		"":          {"IBM/sarama", "gomodule/redigo", "prometheus/client_golang"},
		"/protocol": {"IBM/sarama", "gomodule/redigo", "prometheus/client_golang"},
		"/logic":    {"IBM/sarama", "gomodule/redigo", "prometheus/client_golang"},
		"/job":      {"IBM/sarama", "gomodule/redigo", "prometheus/client_golang"},
		"/cloud":    {"IBM/sarama", "gomodule/redigo", "prometheus/client_golang"},
		"/kafka":    {"gomodule/redigo", "prometheus/client_golang"},
		"/redis":    {"IBM/sarama", "prometheus/client_golang"},
		"/metrics":  {"IBM/sarama", "gomodule/redigo"},
	}
	for pkg, libs := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		require.NoError(t, err, "go list -deps %s: %s", mod+pkg, out)
		for _, dep := range strings.Fields(string(out)) {
			for _, lib := range libs {
				require.NotContains(t, dep, lib, "%s must not depend on %s", mod+pkg, lib)
			}
		}
	}
}

// TestOnlyMetricsLinksPrometheus: of the module's packages, only metrics
// (and its subpackages), the test support that parses expositions and the
// examples depend on client_golang.
func TestOnlyMetricsLinksPrometheus(t *testing.T) {
	const mod = "github.com/imcloud/imcloud"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "./...").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	allowed := []string{mod + "/metrics", mod + "/internal/metricstest", mod + "/examples/"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		if !strings.Contains(deps, "prometheus/client_golang") {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || pkg == a || strings.HasPrefix(pkg, strings.TrimSuffix(a, "/")+"/")
		}
		require.True(t, ok, "%s depends on prometheus/client_golang: only package metrics may", pkg)
	}
}
