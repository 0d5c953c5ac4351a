package logic

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/imcloud/imcloud"
)

// historyEntryJSON is one push as the history route reports it. The body
// is text when it is valid UTF-8 (what a push API caller sent as text, or
// a JSON msg's encoding), else base64 in body_base64: an application
// renders the text as it is and decodes only what is binary.
type historyEntryJSON struct {
	Offset     int64      `json:"offset"`
	ID         string     `json:"id"`
	Op         int32      `json:"op"`
	Body       *string    `json:"body,omitempty"`
	BodyBase64 []byte     `json:"body_base64,omitempty"`
	Accepted   time.Time  `json:"accepted"`
	Expires    *time.Time `json:"expires,omitempty"`
}

// history answers GET {prefix}/history: the last n pushes of one stream
// (Pusher.History), named by stream=u:42 or r:live://1, by mid=42 (the
// user's stream) or by type=live&room=1 (the room's, as push/room names
// it); exactly one of the three. n is 1 to MaxHistoryRead, default
// DefaultHistoryRead. Bad input is 400; a Pusher without history 501.
func (h *handler) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var (
		stream imcloud.Stream
		forms  int
	)
	if s := q.Get("stream"); s != "" {
		stream, forms = imcloud.Stream(s), forms+1
	}
	if s := q.Get("mid"); s != "" {
		mid, err := strconv.ParseInt(s, 10, 64)
		if err != nil || mid <= 0 {
			writeError(w, http.StatusBadRequest, "mid "+strconv.Quote(s)+" is not a positive integer")
			return
		}
		stream, forms = imcloud.UserStream(mid), forms+1
	}
	if typ, room := q.Get("type"), q.Get("room"); typ != "" || room != "" {
		if typ == "" || room == "" {
			writeError(w, http.StatusBadRequest, "a room is named by both type and room")
			return
		}
		stream, forms = imcloud.RoomStream(imcloud.RoomKey(typ, room)), forms+1
	}
	if forms != 1 {
		writeError(w, http.StatusBadRequest, "name one stream: stream, mid, or type and room")
		return
	}
	n := DefaultHistoryRead
	if s := q.Get("n"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 || n > MaxHistoryRead {
			writeError(w, http.StatusBadRequest, "n "+strconv.Quote(s)+" is not an integer from 1 to "+strconv.Itoa(MaxHistoryRead))
			return
		}
	}
	read, err := h.p.History(r.Context(), stream, n)
	if err != nil {
		h.answerErr(w, err)
		return
	}
	entries := make([]historyEntryJSON, len(read.Entries))
	for i, e := range read.Entries {
		j := &entries[i]
		j.Offset, j.ID, j.Op, j.Accepted = e.Offset, hex.EncodeToString(e.ID[:]), e.Op, e.Accepted
		if utf8.Valid(e.Body) {
			s := string(e.Body)
			j.Body = &s
		} else {
			j.BodyBase64 = e.Body
		}
		if !e.Expires.IsZero() {
			j.Expires = &read.Entries[i].Expires
		}
	}
	h.answerData(w, struct {
		Stream  imcloud.Stream     `json:"stream"`
		Epoch   string             `json:"epoch"`
		Top     int64              `json:"top"`
		Entries []historyEntryJSON `json:"entries"`
	}{stream, read.Epoch, read.Top, entries})
}
