package redis

import (
	"testing"

	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRoutesReplyParsing reads the mids script's reply format and refuses
// replies that do not follow it, item by item.
func TestRoutesReplyParsing(t *testing.T) {
	reply := []byte("2:5:key:16:node-a0:1:x0:6:node\n:")
	n, rest, err := decimalPrefix(reply)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	var items []string
	for i := 0; i < 2*n; i++ {
		var item []byte
		item, rest, err = lengthPrefixed(rest)
		require.NoError(t, err)
		items = append(items, string(item))
	}
	assert.Equal(t, []string{"key:1", "node-a", "", "x"}, items)
	n, rest, err = decimalPrefix(rest)
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	item, _, err := lengthPrefixed(rest) // bytes within an item are not separators
	require.NoError(t, err)
	assert.Equal(t, "node\n:", string(item))

	for _, bad := range []string{"", ":", "x:", "1", "-1:", "12a:", "1234567890:", "5:abc", "3:"} {
		_, _, err := lengthPrefixed([]byte(bad))
		assert.ErrorIs(t, err, logic.ErrRouter, "%q", bad)
	}
}

// TestFillRoutesAllOrNothing: a mids reply that does not parse to its last
// byte fails the whole batch, so no lookup answers from a reply that was
// not what the script wrote.
func TestFillRoutesAllOrNothing(t *testing.T) {
	batch := func() []*lookup {
		return []*lookup{{mids: []int64{1}}, {keys: []string{"k"}}, {mids: []int64{2, 3}}}
	}
	keyReply := []any{[]byte("g1:5"), nil, []byte("node-b")}
	good := "4:g1:50:" + "1:2:k16:node-a" + "0:" + "1:2:k36:node-a"

	live := batch()
	gen, marker, err := fillRoutes(live, keyReply, []byte(good), nodeNames{})
	require.NoError(t, err)
	assert.Equal(t, "g1:5", string(gen))
	assert.Empty(t, marker)
	assert.Equal(t, map[string]string{"k1": "node-a"}, live[0].out)
	assert.Equal(t, map[string]string{"k": "node-b"}, live[1].out)
	assert.Equal(t, map[string]string{"k3": "node-a"}, live[2].out)

	for _, bad := range []string{
		good[:len(good)-1],               // cut short
		"4:g1:50:1:2:k16:node-a0:",       // the last mid missing
		good + "garbage",                 // more than asked for
		good + "0:",                      // an extra mid
		"1:2:k16:node-a0:1:2:k36:node-a", // no generation
		"",
	} {
		_, _, err := fillRoutes(batch(), keyReply, []byte(bad), nodeNames{})
		assert.ErrorIs(t, err, logic.ErrRouter, "%q", bad)
	}
}

// TestFillRoutesGeneration: the generation and the marker come from the
// mids reply, or from the head of the keys reply when there are no mids;
// a missing generation is nil.
func TestFillRoutesGeneration(t *testing.T) {
	live := []*lookup{{keys: []string{"k"}}}
	gen, marker, err := fillRoutes(live, []any{[]byte("g2:7"), []byte("g2:7"), nil}, nil, nodeNames{})
	require.NoError(t, err)
	assert.Equal(t, "g2:7", string(gen))
	assert.Equal(t, "g2:7", string(marker))
	assert.Empty(t, live[0].out)

	gen, marker, err = fillRoutes([]*lookup{{mids: []int64{1}}}, nil, []byte("0:0:0:"), nodeNames{})
	require.NoError(t, err)
	assert.Nil(t, gen)
	assert.Empty(t, marker)
}
