package logic_test

import (
	"context"
	"testing"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
)

// emptyHistory is a History that holds nothing: what the publishing tests
// need is history on, not a store.
type emptyHistory struct{}

func (emptyHistory) Last(context.Context, imcloud.Stream, int) (imcloud.HistoryRead, error) {
	return imcloud.HistoryRead{Epoch: "e", Top: -1}, nil
}

func newHistory(*testing.T) logic.History { return emptyHistory{} }
