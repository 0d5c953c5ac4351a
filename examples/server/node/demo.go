package node

import (
	"net/http"

	"github.com/imcloud/imcloud/examples/web"
)

// mountDemo serves the browser demo page and the JavaScript client at "/".
func mountDemo(mux *http.ServeMux) { mux.Handle("/", web.Handler()) }
