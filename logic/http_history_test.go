package logic_test

import (
	"encoding/json"
	"testing"

	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pushData is a push answer's data.
type pushData struct {
	ID       string `json:"id"`
	Nodes    int    `json:"nodes"`
	Keys     int    `json:"keys"`
	Users    *int   `json:"users"`
	Messages int    `json:"messages"`
}

// TestHTTPPushMidsHistoryOn: with history on, a mids push answers the
// users it was published to (one message each), nodes and keys 0; with
// history off the answer has no "users".
func TestHTTPPushMidsHistoryOn(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := logic.Config{}
		if on {
			cfg.History = newHistory(t)
		}
		_, srv := newAPI(t, cfg, logic.HandlerConfig{})
		status, r := call(t, "POST", srv.URL+"/goim/push/mids?operation=1000&mids=1,2,404", "", "x")
		require.Equal(t, 200, status)
		assert.Equal(t, 0, r.Code)
		var d pushData
		require.NoError(t, json.Unmarshal(r.Data, &d))
		assert.Len(t, d.ID, 32)
		if on {
			require.NotNil(t, d.Users)
			assert.Equal(t, pushData{ID: d.ID, Users: d.Users, Messages: 3}, d)
			assert.Equal(t, 3, *d.Users)
		} else {
			assert.Equal(t, pushData{ID: d.ID, Nodes: 2, Keys: 3, Messages: 2}, d)
		}
	}
}
