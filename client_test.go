package imcloud

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClientSettingsDefaults(t *testing.T) {
	t.Parallel()
	s := ClientSettings{}.WithDefaults()
	assert.Equal(t, ClientSettings{
		TCPPort: 3101, WSPort: 3102, // no WSS port unless set
		Heartbeat: 30 * time.Second, HeartbeatMax: 2,
		Backoff: Backoff{MaxDelay: 300, BaseDelay: 3, Factor: 1.8, Jitter: 1.3},
	}, s)
	assert.Equal(t, 30, s.HeartbeatSeconds())

	set := ClientSettings{Domain: "conn.example", TCPPort: 1, WSPort: 2, WSSPort: 3, Heartbeat: time.Minute, HeartbeatMax: 5,
		Backoff: Backoff{MaxDelay: 9}}
	assert.Equal(t, set, set.WithDefaults(), "set fields are kept")
	assert.Equal(t, 60, set.HeartbeatSeconds())

	none := ClientSettings{TCPPort: NoPort, WSPort: NoPort}
	assert.Equal(t, none.TCPPort, none.WithDefaults().TCPPort, "NoPort is kept")
	assert.Equal(t, NoPort, none.WithDefaults().WSPort)
}

// TestBackoffJSON: the reconnect policy's wire names are goim's.
func TestBackoffJSON(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(ClientSettings{}.WithDefaults().Backoff)
	require.NoError(t, err)
	assert.JSONEq(t, `{"max_delay":300,"base_delay":3,"factor":1.8,"jitter":1.3}`, string(b))
}
