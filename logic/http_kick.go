package logic

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
)

// kick answers POST {prefix}/kick: Pusher.Kick of every connection of the
// users mids=1,2 or of the connections keys=a,b (exactly one of the two;
// lists repeated or comma-separated, as the push routes take them), with
// reason= (WithReason) and revoke=1 (WithRevoke; by mids only). data is
// {"id":"<32 hex>","connections":N,"nodes":M}: the connections the
// Router found and their nodes. Bad input is 400 with nothing kicked, a
// revoke on a router without revocations 501, a rebuilding router or an
// overloaded Pusher 503 with Retry-After, as for the pushes.
func (h *handler) kick(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var t KickTarget
	if vals := q["mids"]; len(vals) > 0 {
		mids, err := parseInts(vals)
		if err != nil {
			writeError(w, http.StatusBadRequest, "mids: "+err.Error())
			return
		}
		t.Mids = mids
	}
	t.Keys = splitList(q["keys"])
	if (len(t.Mids) == 0) == (len(t.Keys) == 0) {
		writeError(w, http.StatusBadRequest, "name mids or keys, one of the two")
		return
	}
	opts := []KickOption{WithReason(q.Get("reason"))}
	if s := q.Get("revoke"); s != "" {
		revoke, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "revoke "+strconv.Quote(s)+" is not 1, 0, true or false")
			return
		}
		if revoke {
			opts = append(opts, WithRevoke())
		}
	}
	res, err := h.p.Kick(r.Context(), t, opts...)
	if errors.Is(err, ErrRevokeUnsupported) {
		writeError(w, http.StatusNotImplemented, err.Error())
		return
	}
	if err != nil {
		h.answerErr(w, err)
		return
	}
	b := append(make([]byte, 0, 96), `{"code":0,"message":"","data":{"id":"`...)
	b = hex.AppendEncode(b, res.ID[:])
	b = append(b, `","connections":`...)
	b = appendInt(b, res.Connections)
	b = append(b, `,"nodes":`...)
	b = appendInt(b, res.Nodes)
	writeJSON(w, http.StatusOK, append(b, "}}"...))
}
