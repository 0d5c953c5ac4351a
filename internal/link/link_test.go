package link

import (
	"testing"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

func TestMessagesRoundTrip(t *testing.T) {
	msgs := []*imcloud.Message{
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1000, Room: "live://1", Body: []byte("a")},
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1001, Node: "n", Keys: []string{"k"}, Body: []byte("b")},
	}
	body := AppendMessages(nil, msgs)
	var got []*imcloud.Message
	require.NoError(t, SplitMessages(body, func(enc []byte) error {
		var m imcloud.Message
		if err := m.UnmarshalBinary(enc); err != nil {
			return err
		}
		got = append(got, &m)
		return nil
	}))
	require.Len(t, got, 2)
	require.Equal(t, msgs[0].ID, got[0].ID)
	require.Equal(t, msgs[1].Keys, got[1].Keys)
}

func TestSplitMessagesMalformed(t *testing.T) {
	body := AppendMessages(nil, []*imcloud.Message{{Kind: imcloud.KindBroadcast}})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": body[:len(body)-1],
		"trailing":  append(append([]byte{}, body...), 0),
		"huge":      {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		require.ErrorIs(t, SplitMessages(b, func([]byte) error { return nil }), ErrMalformed, name)
	}
}
