package logic

import (
	"testing"

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
		assert.ErrorIs(t, err, ErrRouter, "%q", bad)
	}
}
