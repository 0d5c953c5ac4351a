package node

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/imcloud/imcloud/examples/web"
)

// mountDemo serves the browser demo page and the JavaScript client at "/",
// telling the page which WebSocket address to dial.
func (a *App) mountDemo(mux *http.ServeMux) {
	ws := demoWebSocket(a.cfg.AdvertiseWS, a.Addr("ws"), a.cfg.TLSCert != "")
	mux.Handle("/", web.Handler(web.Config{WebSocket: ws}))
}

// demoWebSocket is the WebSocket URL the demo page dials: the advertised
// address (-advertise-ws) when set; else the bound one, whose host is left
// empty when it is bound to every interface, so that the page dials the
// host it was loaded from (a browser on another machine cannot use the
// 127.0.0.1 the startup log prints). "" (a process without a WebSocket
// listener) leaves the page to its default, :3102 on the page's host.
func demoWebSocket(advertised, bound string, tls bool) string {
	addr := advertised
	if addr == "" {
		host, port, err := net.SplitHostPort(bound)
		if err != nil {
			return ""
		}
		addr = bound
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			addr = ":" + port
		}
	}
	if tls {
		return "wss://" + addr + "/sub"
	}
	return "ws://" + addr + "/sub"
}
