package cloud_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// TestDefaultNodeID: a server made before it listens has no address to
// put in its id; the id has no empty part then, and two servers never
// share an id.
func TestDefaultNodeID(t *testing.T) {
	newServer := func(cfg cloud.Config) *cloud.Server {
		cfg.Authenticator = cloud.DevAuthenticator()
		s, err := cloud.New(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		return s
	}
	a, b := newServer(cloud.Config{}), newServer(cloud.Config{})
	require.NotContains(t, a.ID(), "//")
	require.Len(t, strings.Split(a.ID(), "/"), 2, "host/epoch")
	require.NotEqual(t, a.ID(), b.ID())

	c := newServer(cloud.Config{LinkAddr: "10.0.0.1:3121"})
	require.Contains(t, c.ID(), "/10.0.0.1:3121/")
}
