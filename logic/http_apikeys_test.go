package logic_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcloud/imcloud/logic"
)

// TestHTTPAPIKeys: during a rotation two keys (or more) are valid at
// once: APIKey and each of APIKeys open the routes, in either header;
// anything else, a prefix of a key, several keys joined or none at all is
// answered 401 and pushes nothing. Empty keys in the list open nothing.
func TestHTTPAPIKeys(t *testing.T) {
	for name, cfg := range map[string]logic.HandlerConfig{
		"APIKey and APIKeys": {APIKey: "old-key", APIKeys: []string{"", "new-key"}},
		"APIKeys only":       {APIKeys: []string{"old-key", "new-key"}},
	} {
		t.Run(name, func(t *testing.T) {
			e, srv := newAPI(t, logic.Config{}, cfg)
			u := srv.URL + "/goim/push/mids?operation=1000&mids=1"
			for _, bad := range [][]string{
				nil,
				{"X-Api-Key", ""},
				{"X-Api-Key", "old"},
				{"X-Api-Key", "old-key,new-key"},
				{"X-Api-Key", "new-key2"},
				{"Authorization", "Bearer "},
				{"Authorization", "Bearer other"},
			} {
				status, _ := call(t, "POST", u, "", "x", bad...)
				assert.Equal(t, 401, status, "%q", bad)
			}
			assert.Zero(t, e.queue.Len())
			for _, key := range []string{"old-key", "new-key"} {
				status, _ := call(t, "POST", u, "", "x", "X-Api-Key", key)
				assert.Equal(t, 200, status, key)
				status, _ = call(t, "POST", u, "", "x", "Authorization", "Bearer "+key)
				assert.Equal(t, 200, status, key)
				status, _ = call(t, "GET", srv.URL+"/goim/online/total", "", "", "X-Api-Key", key)
				assert.Equal(t, 200, status, key)
			}
		})
	}
	// A list of empty keys is no key: no check, as without any.
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{APIKeys: []string{""}})
	status, _ := call(t, "POST", srv.URL+"/goim/push/mids?operation=1000&mids=1", "", "x")
	assert.Equal(t, 200, status)
}
