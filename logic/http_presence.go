package logic

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/imcloud/imcloud"
)

// presenceJSON is one connection as the presence route reports it.
type presenceJSON struct {
	Key      string `json:"key"`
	Node     string `json:"node"`
	Platform string `json:"platform"`
	Room     string `json:"room"`
	Since    string `json:"since,omitempty"` // RFC 3339, UTC; absent when unknown
}

// presence answers the presence route: data maps every asked mid
// (decimal) to its connections (Pusher.Presence), [] for a user who has
// none.
func (h *handler) presence(w http.ResponseWriter, r *http.Request) {
	mids, err := parseInts(r.URL.Query()["mids"])
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "mids: "+err.Error())
		return
	case len(mids) == 0:
		writeError(w, http.StatusBadRequest, "mids is required")
		return
	case len(mids) > MaxPresenceMids:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("mids: %d users, at most %d", len(mids), MaxPresenceMids))
		return
	}
	got, err := h.p.Presence(r.Context(), mids)
	if errors.Is(err, ErrPresenceUnsupported) {
		writeError(w, http.StatusNotImplemented, err.Error())
		return
	}
	if err != nil {
		h.answerErr(w, err)
		return
	}
	out := make(map[string][]presenceJSON, len(mids))
	for _, mid := range mids {
		out[strconv.FormatInt(mid, 10)] = presenceList(got[mid])
	}
	h.answerData(w, out)
}

func presenceList(sessions []imcloud.Session) []presenceJSON {
	out := make([]presenceJSON, len(sessions))
	for i, s := range sessions {
		out[i] = presenceJSON{Key: s.Key, Node: s.Node, Platform: s.Platform, Room: s.Room}
		if !s.Since.IsZero() {
			out[i].Since = s.Since.UTC().Format(time.RFC3339)
		}
	}
	return out
}
