package imcloud_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackendDependencies keeps each backend library in its own package:
// an embedder who uses the memory backends links neither sarama nor
// redigo, and no library package links client_golang.
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
