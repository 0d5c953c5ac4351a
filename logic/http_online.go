package logic

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/imcloud/imcloud"
)

func (h *handler) onlineTop(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	limit, err := strconv.Atoi(q.Get("limit"))
	if typ == "" || err != nil || limit <= 0 {
		writeError(w, http.StatusBadRequest, "type and a positive limit are required")
		return
	}
	tops, err := h.p.TopRooms(r.Context(), typ, limit)
	if err != nil {
		h.answerErr(w, err)
		return
	}
	type top struct {
		RoomID string `json:"room_id"`
		Count  int32  `json:"count"`
	}
	out := make([]top, len(tops))
	for i, t := range tops {
		out[i] = top{t.Room, t.Count}
	}
	h.answerData(w, out)
}

func (h *handler) onlineRoom(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	ids := splitList(q["rooms"])
	if typ == "" || len(ids) == 0 {
		writeError(w, http.StatusBadRequest, "type and rooms are required")
		return
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = typ + "://" + id
	}
	counts, err := h.p.RoomCounts(r.Context(), keys)
	if err != nil {
		h.answerErr(w, err)
		return
	}
	out := make(map[string]int32, len(ids))
	for i, id := range ids {
		out[id] = counts[keys[i]]
	}
	h.answerData(w, out)
}

func (h *handler) onlineTotal(w http.ResponseWriter, r *http.Request) {
	t, err := h.p.Totals(r.Context())
	if err != nil {
		h.answerErr(w, err)
		return
	}
	h.answerData(w, map[string]int{"ip_count": t.IPs, "conn_count": t.Conns})
}

// nodesWeighted answers goim's nodes/weighted: the client connection
// settings and the hosts to connect to, least loaded first. Platform "web"
// gets the hosts of the nodes' ws/wss addresses, any other platform those
// of their tcp addresses.
func (h *handler) nodesWeighted(w http.ResponseWriter, r *http.Request) {
	nodes, err := h.p.Nodes(r.Context())
	if err != nil {
		h.answerErr(w, err)
		return
	}
	web := r.URL.Query().Get("platform") == "web"
	sort.SliceStable(nodes, func(i, j int) bool { return nodes[i].Conns < nodes[j].Conns })
	hosts := []string{}
	seen := map[string]bool{}
	for _, n := range nodes {
		for _, a := range n.PublicAddrs {
			u, err := url.Parse(a)
			if err != nil || u.Hostname() == "" {
				continue
			}
			if (u.Scheme == "ws" || u.Scheme == "wss") != web || seen[u.Hostname()] {
				continue
			}
			seen[u.Hostname()] = true
			hosts = append(hosts, u.Hostname())
		}
	}
	c := h.cfg.Client
	if len(hosts) == 0 && c.Domain != "" {
		hosts = append(hosts, c.Domain)
	}
	h.answerData(w, struct {
		Domain       string          `json:"domain"`
		TCPPort      int             `json:"tcp_port"`
		WSPort       int             `json:"ws_port"`
		WSSPort      int             `json:"wss_port"`
		Heartbeat    int             `json:"heartbeat"`
		HeartbeatMax int             `json:"heartbeat_max"`
		Backoff      imcloud.Backoff `json:"backoff"`
		Nodes        []string        `json:"nodes"`
	}{
		Domain: c.Domain, TCPPort: max(c.TCPPort, 0), WSPort: max(c.WSPort, 0), WSSPort: max(c.WSSPort, 0),
		Heartbeat: c.HeartbeatSeconds(), HeartbeatMax: c.HeartbeatMax,
		Backoff: c.Backoff, Nodes: hosts,
	})
}

// nodeJSON is a node as nodes/instances reports it.
type nodeJSON struct {
	ID       string    `json:"id"`
	LinkAddr string    `json:"link_addr"`
	Addrs    []string  `json:"addrs"`
	Conns    int       `json:"conn_count"`
	IPs      int       `json:"ip_count"`
	Updated  time.Time `json:"updated"`
}

func (h *handler) nodesInstances(w http.ResponseWriter, r *http.Request) {
	nodes, err := h.p.Nodes(r.Context())
	if err != nil {
		h.answerErr(w, err)
		return
	}
	out := make([]nodeJSON, len(nodes))
	for i, n := range nodes {
		addrs := n.PublicAddrs
		if addrs == nil {
			addrs = []string{}
		}
		out[i] = nodeJSON{n.ID, n.LinkAddr, addrs, n.Conns, n.IPs, n.Updated}
	}
	h.answerData(w, out)
}

func (h *handler) answerData(w http.ResponseWriter, data any) {
	b, err := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    any    `json:"data"`
	}{codeOK, "", data})
	if err != nil {
		h.answerErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

// writeError answers status with code -status (-400, -500, ...) and msg.
func writeError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{-status, msg})
	writeJSON(w, status, b)
}

// writeJSON answers status with the JSON b. A body that fits net/http's
// response buffer gets its Content-Length from net/http when the handler
// returns (nothing to format or allocate here, on every push); a larger
// one is given it, so it is not sent chunked.
func writeJSON(w http.ResponseWriter, status int, b []byte) {
	hd := w.Header()
	hd["Content-Type"] = jsonContentType
	if len(b) > netHTTPBufferedBody {
		hd["Content-Length"] = []string{strconv.Itoa(len(b))}
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// netHTTPBufferedBody is how much of a response body net/http's server
// buffers before it must choose between Content-Length and chunking
// (bufferBeforeChunkingSize in net/http).
const netHTTPBufferedBody = 2048

var jsonContentType = []string{"application/json; charset=utf-8"}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }
