package logic

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/imcloud/imcloud"
)

// HandlerConfig configures the goim-compatible HTTP API. Every zero field
// means the documented default.
type HandlerConfig struct {
	// Prefix is where the routes are mounted. Default "/goim", goim's own.
	Prefix string
	// APIKey, when set, is required on every route but nodes/weighted
	// (the clients' bootstrap), in an "X-Api-Key" header or as
	// "Authorization: Bearer <key>"; a request without it is answered 401.
	// The online routes reveal who is where and nodes/instances the link
	// addresses, so they are the application's, like the pushes. Default
	// "": no check (goim has none).
	APIKey string
	// APIKeys are more keys accepted as APIKey is, so that keys rotate
	// without downtime: add the new key next to the old one, move the
	// callers, drop the old one. APIKey and APIKeys together are the
	// keys; empty strings are ignored, and with no key at all there is no
	// check. A presented key is compared with every key in constant time
	// (through their SHA-256 digests, so neither which key matched nor
	// their lengths show in the timing).
	APIKeys []string
	// MaxBodyBytes limits a push request's body; past it the answer is
	// 413. Default 1 MiB.
	MaxBodyBytes int64
	// EarlyReply answers a push 200 "accepted" as soon as the Pusher's
	// pool took it, before the Queue accepted it (the im-cloud article's
	// mode). Later failures are only logged and counted (Pusher.Stats).
	// Default false: the answer waits for the Queue.
	EarlyReply bool
	// EarlyReplyTimeout bounds an early-replied push's work. Default 10s.
	EarlyReplyTimeout time.Duration
	// Client is what nodes/weighted reports, as goim's logic configuration
	// does: the client ports, domain, heartbeat and reconnect policy. Give
	// cloud.Config.Client the same value: its auth reply reports the same
	// heartbeat.
	Client imcloud.ClientSettings
	// Logger receives request failures (500s). Nil is silent.
	Logger *slog.Logger
}

// Response codes in the JSON body, goim's.
const (
	codeOK          = 0
	codeBadRequest  = -400
	codeServerError = -500
)

type handler struct {
	p   *Pusher
	cfg HandlerConfig
	log *slog.Logger
	// keys are the SHA-256 digests of the API keys (APIKey, APIKeys); none:
	// no check.
	keys [][sha256.Size]byte
}

// NewHandler returns goim's REST API over p:
//
//	POST {prefix}/push/keys?operation=&keys=     body = the message
//	POST {prefix}/push/mids?operation=&mids=
//	POST {prefix}/push/room?operation=&type=&room=
//	POST {prefix}/push/all?operation=&speed=
//	GET  {prefix}/online/top?type=&limit=
//	GET  {prefix}/online/room?type=&rooms=
//	GET  {prefix}/online/total
//	GET  {prefix}/nodes/weighted?platform=
//	GET  {prefix}/nodes/instances
//	GET  {prefix}/history?stream=&n=      or mid=, or type=&room=
//	POST {prefix}/kick?mids=&reason=&revoke=  or keys=   (http_kick.go)
//	GET  {prefix}/presence?mids=
//
// Lists may be repeated parameters (keys=a&keys=b) or comma-separated
// (keys=a,b). A push whose Content-Type is application/json may instead
// carry {"operation":1000,"mids":[1,2],"msg":"..."} (also "keys", "type",
// "room", "speed"); a JSON string msg is sent as its text, any other JSON
// value as its encoding. Answers are {"code":0,"message":"","data":...};
// bad parameters are HTTP 400 with code -400, server failures 500 with code
// -500, an overloaded Pusher (ErrOverloaded: its pool full or its cost
// budget spent, see Config.MaxPushCost) 503 with Retry-After: 1, and a key
// or mid push the Router cannot resolve while it rebuilds after losing its
// data (ErrRouterRebuilding) 503 with Retry-After: 1: nothing was
// published, retry it.
//
// Retries are safe with an idempotency key: an "Idempotency-Key" header,
// else an "id" query parameter or JSON field, of 1 to 128 printable ASCII
// bytes (imcloud.MessageIDForKey; 400 otherwise). The push then carries
// the message id derived from it, the same on every retry, and the cloud
// nodes drop a copy they delivered within their dedup window (the last
// 65,536 messages each node received: cloud.Config.DedupSize). Every push
// answer, early or not, carries the message id used as "id" in data (32
// hex digits); a retry may send that id back as its key.
//
// A push answer's data is {"id":...,"nodes":N,"keys":N,"messages":N}
// (Result). With history on (Config.History) a mids push's data adds
// "users", the users it was published to, one message each; nodes and
// keys count the connections online when it was accepted. A mids push's
// data adds "offline":[...], the users who had no connection then
// (Result.Offline; [] when none), for a fallback such as mobile push
// (not in an early reply, which precedes the lookup).
//
// The presence route (imcloud's, under the API key) answers which
// connections users have (Pusher.Presence): mids= as push/mids takes it,
// 1 to 10,000 (MaxPresenceMids) user ids above 0; data maps every asked
// mid (decimal) to its connections, [] for none: {"42":[{"key":"...",
// "node":"...","platform":"web","room":"live://1","since":"<RFC 3339>"}],
// "7":[]}, each user's by since (absent when the node did not record
// one). Bad input is 400, a Router that does not report presence 501
// with code -501, a router rebuilding after it lost its data 503 with
// Retry-After: 1.
//
// The history route (imcloud's, under the API key like the pushes) answers
// the last n pushes of one stream (Pusher.History), for late joiners and
// for applications that render a backlog. The stream is named by stream=
// ("u:42", "r:live://1"), mid=42 (the user's) or type=live&room=1 (the
// room's, as push/room names it): exactly one of them. n is 1 to 1000
// (MaxHistoryRead), default 100. data is {"stream":"u:42","epoch":"...",
// "top":120,"entries":[{"offset":118,"id":"<32 hex>","op":1000,
// "body":"hi","accepted":"<RFC 3339>","expires":"<RFC 3339>"},...]},
// oldest first: top is the offset of the stream's last push (-1: none in
// this epoch), expires only when the push has one, and a body that is not
// valid UTF-8 comes as "body_base64" instead of "body". Bad input is 400,
// a Pusher without history (Config.History nil) 501 with code -501, a
// failed read 500.
//
// The kick route (imcloud's, under the API key) is Pusher.Kick: mids= or
// keys= (one of the two), reason= and revoke=1; data is {"id":"<32 hex>",
// "connections":N,"nodes":M}, the connections targeted. Bad input is 400
// with nothing kicked, a revoke the router cannot keep 501.
//
// The handler uses only p's exported API (Push, PushAsync, Kick and the
// online queries): an API of one's own over a Pusher can do all it does.
func NewHandler(p *Pusher, cfg HandlerConfig) http.Handler {
	if cfg.Prefix == "" {
		cfg.Prefix = "/goim"
	}
	cfg.Prefix = "/" + strings.Trim(cfg.Prefix, "/")
	if cfg.Prefix == "/" {
		cfg.Prefix = ""
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.EarlyReplyTimeout <= 0 {
		cfg.EarlyReplyTimeout = 10 * time.Second
	}
	cfg.Client = cfg.Client.WithDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{p: p, cfg: cfg, log: log}
	for _, k := range append([]string{cfg.APIKey}, cfg.APIKeys...) {
		if k != "" {
			h.keys = append(h.keys, sha256.Sum256([]byte(k)))
		}
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, h.cfg.Prefix)
	if !ok {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	var (
		method string
		serve  func(http.ResponseWriter, *http.Request)
		open   bool // served without the API key
	)
	switch path {
	case "/push/keys":
		method, serve = http.MethodPost, h.pushKeys
	case "/push/mids":
		method, serve = http.MethodPost, h.pushMids
	case "/push/room":
		method, serve = http.MethodPost, h.pushRoom
	case "/push/all":
		method, serve = http.MethodPost, h.pushAll
	case "/online/top":
		method, serve = http.MethodGet, h.onlineTop
	case "/online/room":
		method, serve = http.MethodGet, h.onlineRoom
	case "/online/total":
		method, serve = http.MethodGet, h.onlineTotal
	case "/nodes/weighted":
		method, serve, open = http.MethodGet, h.nodesWeighted, true
	case "/nodes/instances":
		method, serve = http.MethodGet, h.nodesInstances
	case "/history":
		method, serve = http.MethodGet, h.history
	case "/kick":
		method, serve = http.MethodPost, h.kick
	case "/presence":
		method, serve = http.MethodGet, h.presence
	default:
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if !open && len(h.keys) > 0 && !h.authorized(r) {
		writeError(w, http.StatusUnauthorized, "missing or wrong API key")
		return
	}
	serve(w, r)
}

func (h *handler) authorized(r *http.Request) bool {
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			key = a
		}
	}
	got := sha256.Sum256([]byte(key))
	ok := 0
	for i := range h.keys {
		ok |= subtle.ConstantTimeCompare(got[:], h.keys[i][:])
	}
	return key != "" && ok == 1
}

// pushRequest is a push's parameters, from the query or a JSON body.
type pushRequest struct {
	Operation json.Number     `json:"operation"`
	Keys      []string        `json:"keys"`
	Mids      []int64         `json:"mids"`
	Type      string          `json:"type"`
	Room      string          `json:"room"`
	Speed     json.Number     `json:"speed"`
	Msg       json.RawMessage `json:"msg"`
	ID        string          `json:"id"`

	op    int32
	speed int32
	id    imcloud.MessageID
	body  []byte
	json  bool
	list  []string // the query's keys or mids values
}

// readPush reads the body and, for a JSON request, decodes it. It writes
// the error answer itself and returns false on failure.
func (h *handler) readPush(w http.ResponseWriter, r *http.Request, listName string) (*pushRequest, bool) {
	body, err := readBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBodyBytes))
		} else {
			writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		}
		return nil, false
	}
	req := &pushRequest{body: body}
	q := parsePushQuery(r.URL.RawQuery, listName)
	req.list = q.list
	if ct := r.Header.Get("Content-Type"); strings.HasPrefix(ct, "application/json") {
		if mt, _, _ := mime.ParseMediaType(ct); mt == "application/json" {
			req.json = true
			if err := json.Unmarshal(body, req); err != nil {
				writeError(w, http.StatusBadRequest, "JSON body: "+err.Error())
				return nil, false
			}
			req.body = nil
			if len(req.Msg) > 0 {
				var s string
				if json.Unmarshal(req.Msg, &s) == nil {
					req.body = []byte(s)
				} else {
					req.body = req.Msg
				}
			}
		}
	}
	if req.Operation == "" {
		req.Operation = json.Number(q.operation)
	}
	if req.Operation == "" {
		writeError(w, http.StatusBadRequest, "operation is required")
		return nil, false
	}
	op, err := req.Operation.Int64()
	if err != nil || op <= 0 || op > 1<<31-1 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("operation %q is not a positive 32-bit integer", req.Operation))
		return nil, false
	}
	req.op = int32(op)
	if req.Speed == "" {
		req.Speed = json.Number(q.speed)
	}
	if req.Speed != "" {
		s, err := req.Speed.Int64()
		if err != nil || s < 0 || s > 1<<31-1 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("speed %q is not a non-negative 32-bit integer", req.Speed))
			return nil, false
		}
		req.speed = int32(s)
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = req.ID
	}
	if key == "" {
		key = q.id
	}
	if key == "" {
		req.id = imcloud.NewMessageID()
	} else if req.id, err = imcloud.MessageIDForKey(key); err != nil {
		writeError(w, http.StatusBadRequest, "idempotency key: "+err.Error())
		return nil, false
	}
	if req.Type == "" {
		req.Type = q.typ
	}
	if req.Room == "" {
		req.Room = q.room
	}
	return req, true
}

// readBody reads r's body whole, refusing more than limit bytes.
// smallBody is the largest declared body allocated at once.
const smallBody = 4096

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength >= 0 && r.ContentLength <= smallBody {
		// net/http already stops the body at Content-Length.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	// A larger body grows as its bytes arrive: a declared Content-Length
	// is not memory to hand out before the client sent it.
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

func (h *handler) pushKeys(w http.ResponseWriter, r *http.Request) {
	req, ok := h.readPush(w, r, "keys")
	if !ok {
		return
	}
	keys := req.Keys
	if !req.json || keys == nil {
		keys = splitList(req.list)
	}
	if len(keys) == 0 {
		writeError(w, http.StatusBadRequest, "keys is required")
		return
	}
	h.push(w, r, req, ToKeys(keys...))
}

func (h *handler) pushMids(w http.ResponseWriter, r *http.Request) {
	req, ok := h.readPush(w, r, "mids")
	if !ok {
		return
	}
	mids := req.Mids
	if !req.json || mids == nil {
		var err error
		if mids, err = parseInts(req.list); err != nil {
			writeError(w, http.StatusBadRequest, "mids: "+err.Error())
			return
		}
	}
	if len(mids) == 0 {
		writeError(w, http.StatusBadRequest, "mids is required")
		return
	}
	h.push(w, r, req, ToMids(mids...))
}

func (h *handler) pushRoom(w http.ResponseWriter, r *http.Request) {
	req, ok := h.readPush(w, r, "")
	if !ok {
		return
	}
	if req.Type == "" || req.Room == "" {
		writeError(w, http.StatusBadRequest, "type and room are required")
		return
	}
	h.push(w, r, req, ToRoom(req.Type+"://"+req.Room))
}

func (h *handler) pushAll(w http.ResponseWriter, r *http.Request) {
	req, ok := h.readPush(w, r, "")
	if !ok {
		return
	}
	h.push(w, r, req, ToAll(), WithSpeed(req.speed))
}

// push runs req's push to t through the Pusher's exported API, with
// req's message id (WithID): in early-reply mode it answers "accepted"
// once the pool took the push, otherwise once the Queue accepted its
// messages. A bad target is the Pusher's ErrInvalidArgument, answered 400.
func (h *handler) push(w http.ResponseWriter, r *http.Request, req *pushRequest, t Target, opts ...PushOption) {
	opts = append(opts, WithID(req.id))
	if h.cfg.EarlyReply {
		ctx, done := h.earlyCtx(r)
		if err := h.p.PushAsync(ctx, t, req.op, req.body, done, opts...); err != nil {
			done(Result{}, err) // never ran: release its context now
			h.answerErr(w, err)
			return
		}
		b := append(make([]byte, 0, 96), `{"code":0,"message":"accepted","data":{"id":"`...)
		b = hex.AppendEncode(b, req.id[:])
		writeJSON(w, http.StatusOK, append(b, `"}}`...))
		return
	}
	res, err := h.p.Push(r.Context(), t, req.op, req.body, opts...)
	h.answerPush(w, res, err, t.Kind == TargetMids)
}

// earlyCtx is the context of an early-replied push: detached from the
// request, which ends with the answer, and bounded by EarlyReplyTimeout.
func (h *handler) earlyCtx(r *http.Request) (context.Context, AsyncFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.cfg.EarlyReplyTimeout)
	return ctx, func(Result, error) { cancel() }
}

// answerPush answers a push's Result; a mid push's (mids) lists its
// offline users.
func (h *handler) answerPush(w http.ResponseWriter, res Result, err error, mids bool) {
	if err != nil {
		h.answerErr(w, err)
		return
	}
	b := make([]byte, 0, 128)
	b = append(b, `{"code":0,"message":"","data":{"id":"`...)
	b = hex.AppendEncode(b, res.ID[:])
	b = append(b, `","nodes":`...)
	b = appendInt(b, res.Nodes)
	b = append(b, `,"keys":`...)
	b = appendInt(b, res.Keys)
	if res.Users > 0 { // a mid push with history on: published per user
		b = append(b, `,"users":`...)
		b = appendInt(b, res.Users)
	}
	b = append(b, `,"messages":`...)
	b = appendInt(b, res.Messages)
	if mids {
		b = append(b, `,"offline":[`...)
		for i, mid := range res.Offline {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, mid, 10)
		}
		b = append(b, ']')
	}
	b = append(b, "}}"...)
	writeJSON(w, http.StatusOK, b)
}

func (h *handler) answerErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalidArgument):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrHistoryOff):
		writeError(w, http.StatusNotImplemented, err.Error())
	case errors.Is(err, ErrClosed):
		writeError(w, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, ErrOverloaded), errors.Is(err, ErrRouterRebuilding):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, err.Error())
	default:
		h.log.Warn("logic: request failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}
