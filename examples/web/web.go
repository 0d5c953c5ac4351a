// Package web is imcloud's browser side: imcloud.js, a dependency-free
// JavaScript client for the goim v2 wire protocol over WebSocket (with the
// modules it imports, codec.js, recovery.js, rooms.js, token.js and
// reconnect.js; also the npm package @imcloud/client, with imcloud.d.ts and
// package.json here), and a demo page that joins rooms, shows pushes
// arriving live with their latency and pushes through the HTTP API. Both are
// embedded in the binary; Handler serves them.
//
// The page is meant to be mounted at "/" of the push API listener, so that its
// push form reaches /goim/push/... on the same origin:
//
//	mux.Handle("/goim/", pushAPI)
//	mux.Handle("/", web.Handler(web.Config{WebSocket: "ws://:3102/sub"}))
//
// The page dials the WebSocket address the server gives in Config (it reads
// /config.json), unless its query string says otherwise
// (?ws=ws://host:port/sub). The handler is stateless and safe for
// concurrent use.
package web

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static imcloud.js codec.js recovery.js rooms.js token.js reconnect.js
var files embed.FS

// contentTypes are set explicitly so the answer does not depend on the
// machine's /etc/mime.types (a module script must be served as JavaScript).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".png":  "image/png",
	".svg":  "image/svg+xml",
}

type asset struct {
	body        []byte
	contentType string
}

// Config is what the demo page learns from the server that serves it.
type Config struct {
	// WebSocket is the URL the page's client dials, as the server
	// advertises it: "ws://host:port/sub" or "wss://...". An empty host
	// ("ws://:3102/sub") means the host the page was loaded from, for a
	// listener bound to every interface. Empty: ws://<page host>:3102/sub,
	// the default listener's address.
	WebSocket string `json:"ws,omitempty"`
}

// Handler returns an http.Handler serving the demo page at "/" (and
// "/index.html"), its assets next to it, the client module at
// "/imcloud.js" (and the modules it imports beside it), and cfg at
// "/config.json". Anything else is 404; methods
// other than GET and HEAD are 405.
func Handler(cfg Config) http.Handler {
	assets := make(map[string]asset)
	add := func(urlPath, name string) {
		b, err := files.ReadFile(name)
		if err != nil {
			panic("web: embedded file missing: " + name) // the embed directive guarantees it
		}
		ct := contentTypes[path.Ext(name)]
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		assets[urlPath] = asset{body: b, contentType: ct}
	}
	_ = fs.WalkDir(files, "static", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			add(strings.TrimPrefix(name, "static"), name)
		}
		return err
	})
	for _, module := range []string{"imcloud.js", "codec.js", "recovery.js", "rooms.js", "token.js", "reconnect.js"} {
		add("/"+module, module)
	}
	assets["/"] = assets["/index.html"]
	config, err := json.Marshal(cfg)
	if err != nil {
		panic("web: " + err.Error()) // a struct of strings always marshals
	}
	assets["/config.json"] = asset{body: config, contentType: "application/json"}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
