package logic_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
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
			assert.Equal(t, pushData{ID: d.ID, Nodes: 2, Keys: 3, Users: d.Users, Messages: 3}, d,
				"keys and nodes: the connections the users had when the push was accepted")
			assert.Equal(t, 3, *d.Users)
		} else {
			assert.Equal(t, pushData{ID: d.ID, Nodes: 2, Keys: 3, Messages: 2}, d)
		}
	}
}

// historyReply is the history route's data.
type historyReply struct {
	Stream  string `json:"stream"`
	Epoch   string `json:"epoch"`
	Top     int64  `json:"top"`
	Entries []struct {
		Offset     int64      `json:"offset"`
		ID         string     `json:"id"`
		Op         int32      `json:"op"`
		Body       *string    `json:"body"`
		BodyBase64 []byte     `json:"body_base64"`
		Accepted   time.Time  `json:"accepted"`
		Expires    *time.Time `json:"expires"`
	} `json:"entries"`
}

// historyAPI is the HTTP API over a Pusher with a memory history holding
// pushes at offsets 3, 7 and 9 of user 42's stream (the one at 7 binary,
// the one at 9 with an expiry) and one at offset 5 of room live://1's.
func historyAPI(t *testing.T, hcfg logic.HandlerConfig) (*httptest.Server, []imcloud.HistoryAppend) {
	t.Helper()
	hist := newHistory(t)
	_, srv := newAPI(t, logic.Config{History: hist}, hcfg)
	acc := time.Now().Add(-time.Second).Round(time.Millisecond)
	entry := func(off int64, body string) imcloud.HistoryEntry {
		return imcloud.HistoryEntry{Offset: off, ID: imcloud.NewMessageID(), Op: 1000 + int32(off), Body: []byte(body), Accepted: acc}
	}
	items := []imcloud.HistoryAppend{
		{Stream: imcloud.UserStream(42), Entry: entry(3, "first")},
		{Stream: imcloud.UserStream(42), Entry: entry(7, "\xff\x00bin")},
		{Stream: imcloud.UserStream(42), Entry: entry(9, `{"text":"héllo"}`)},
		{Stream: imcloud.RoomStream("live://1"), Partition: 1, Entry: entry(5, "room")},
	}
	items[2].Entry.Expires = acc.Add(time.Hour)
	require.NoError(t, hist.Append(context.Background(), items))
	return srv, items
}

func getHistory(t *testing.T, url string, hdr ...string) historyReply {
	t.Helper()
	status, r := call(t, "GET", url, "", "", hdr...)
	require.Equal(t, 200, status, "%s: %s", url, r.Message)
	require.Equal(t, 0, r.Code)
	var h historyReply
	require.NoError(t, json.Unmarshal(r.Data, &h))
	return h
}

func TestHTTPHistory(t *testing.T) {
	srv, items := historyAPI(t, logic.HandlerConfig{})
	u := srv.URL + "/goim/history"

	h := getHistory(t, u+"?stream=u:42")
	assert.Equal(t, "u:42", h.Stream)
	assert.Equal(t, items[0].Epoch, h.Epoch)
	assert.NotEmpty(t, h.Epoch)
	assert.Equal(t, int64(9), h.Top)
	require.Len(t, h.Entries, 3, "default n is 100: all three")
	for i, e := range h.Entries {
		in := items[i].Entry
		assert.Equal(t, in.Offset, e.Offset)
		assert.Equal(t, in.ID.String(), e.ID)
		assert.Equal(t, in.Op, e.Op)
		assert.True(t, in.Accepted.Equal(e.Accepted), "accepted %v, want %v", e.Accepted, in.Accepted)
	}
	require.NotNil(t, h.Entries[0].Body)
	assert.Equal(t, "first", *h.Entries[0].Body, "a text body is text")
	assert.Nil(t, h.Entries[0].BodyBase64)
	assert.Nil(t, h.Entries[1].Body, "a body that is not UTF-8 is not text")
	assert.Equal(t, []byte("\xff\x00bin"), h.Entries[1].BodyBase64)
	require.NotNil(t, h.Entries[2].Body)
	assert.Equal(t, `{"text":"héllo"}`, *h.Entries[2].Body)
	assert.Nil(t, h.Entries[0].Expires)
	require.NotNil(t, h.Entries[2].Expires)
	assert.True(t, items[2].Entry.Expires.Equal(*h.Entries[2].Expires))

	h = getHistory(t, u+"?mid=42&n=2")
	assert.Equal(t, "u:42", h.Stream)
	require.Len(t, h.Entries, 2, "the last two, oldest first")
	assert.Equal(t, []int64{7, 9}, []int64{h.Entries[0].Offset, h.Entries[1].Offset})

	h = getHistory(t, u+"?type=live&room=1&n=1000")
	assert.Equal(t, "r:live://1", h.Stream)
	assert.Equal(t, items[3].Epoch, h.Epoch)
	require.Len(t, h.Entries, 1)
	assert.Equal(t, "room", *h.Entries[0].Body)
	h = getHistory(t, u+"?stream="+url.QueryEscape("r:live://1"))
	require.Len(t, h.Entries, 1)

	h = getHistory(t, u+"?mid=7")
	assert.Equal(t, int64(-1), h.Top, "nothing pushed to user 7")
	assert.NotEmpty(t, h.Epoch)
	assert.NotNil(t, h.Entries, "entries is [], never null")
	assert.Empty(t, h.Entries)
}

func TestHTTPHistoryBadInput(t *testing.T) {
	srv, _ := historyAPI(t, logic.HandlerConfig{APIKey: "s3cret"})
	u := srv.URL + "/goim/history"
	key := []string{"X-Api-Key", "s3cret"}
	for _, q := range []string{
		"", "?n=10", "?stream=x:1", "?stream=u:0", "?stream=u:042", "?stream=r:", "?stream=r:nokey",
		"?stream=u:" + strings.Repeat("9", 300), "?mid=abc", "?mid=0", "?mid=-4", "?mid=1.5",
		"?type=live", "?room=1", "?stream=u:42&mid=42", "?mid=42&type=live&room=1",
		"?mid=42&n=0", "?mid=42&n=-1", "?mid=42&n=1001", "?mid=42&n=ten",
	} {
		status, r := call(t, "GET", u+q, "", "", key...)
		assert.Equal(t, 400, status, "query %q", q)
		assert.Equal(t, -400, r.Code, "query %q", q)
	}
	status, _ := call(t, "POST", u+"?mid=42", "", "", key...)
	assert.Equal(t, 405, status)

	status, r := call(t, "GET", u+"?mid=42", "", "")
	assert.Equal(t, 401, status, "the history is the application's: it needs the key")
	assert.Equal(t, -401, r.Code)
	status, _ = call(t, "GET", u+"?mid=42", "", "", "X-Api-Key", "wrong")
	assert.Equal(t, 401, status)
	getHistory(t, u+"?mid=42", key...)
	getHistory(t, u+"?mid=42", "Authorization", "Bearer s3cret")
}

// TestHTTPHistoryOff: a Pusher without history answers the route 501.
func TestHTTPHistoryOff(t *testing.T) {
	_, srv := newAPI(t, logic.Config{}, logic.HandlerConfig{})
	status, r := call(t, "GET", srv.URL+"/goim/history?mid=42", "", "")
	assert.Equal(t, 501, status)
	assert.Equal(t, -501, r.Code)
	assert.Contains(t, r.Message, "history is off")
	status, _ = call(t, "GET", srv.URL+"/goim/history?mid=x", "", "")
	assert.Equal(t, 400, status, "bad input is bad input, history on or off")
}

// failingHistory is a memory history whose reads fail.
type failingHistory struct{ *logic.MemoryHistory }

func (failingHistory) Last(context.Context, imcloud.Stream, int) (imcloud.HistoryRead, error) {
	return imcloud.HistoryRead{}, errBackend
}

func TestHistoryReadFails(t *testing.T) {
	_, srv := newAPI(t, logic.Config{History: failingHistory{newHistory(t)}}, logic.HandlerConfig{})
	status, r := call(t, "GET", srv.URL+"/goim/history?mid=42", "", "")
	assert.Equal(t, 500, status)
	assert.Equal(t, -500, r.Code)

	e := newEnv(t, logic.Config{History: failingHistory{newHistory(t)}})
	_, err := e.p.History(context.Background(), imcloud.UserStream(42), 10)
	require.ErrorIs(t, err, logic.ErrHistory)
	require.ErrorIs(t, err, errBackend)
}
