package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/metrics"
)

// The backends each role needs, by the small interfaces the roles declare.
// The memory and Redis routers satisfy all of them.
type router interface {
	logic.Router
	cloud.SessionStore
	cloud.RoomStore
	job.NodeDirectory
	job.Rooms
	job.DrainedDirectory
}

// history is the stream history every role reads or appends to: logic's
// memory store or the Redis one.
type history interface {
	logic.History
	cloud.History
	job.History
}

// App is one process of the reference server: every role (the default) or
// one of them, with its listeners and backends.
type App struct {
	cfg Config
	log *slog.Logger

	router  router
	history history // nil: history off
	queue   logic.Queue
	source  job.Source
	dlq     func(context.Context, imcloud.Record) error
	closer  []func() error // backends this App owns, closed last

	pusher  *logic.Pusher
	cloud   *cloud.Server
	linkTLS *tls.Config // the link listener's, if TLS
	job     *job.Job
	admin   *admin
	events  *appEvents // events.go

	listeners map[string]net.Listener
	httpSrv   *http.Server
	adminSrv  *http.Server

	runCtx    context.Context
	cancelRun context.CancelFunc
	wg        sync.WaitGroup
	errs      chan error
	stopOnce  sync.Once
}

// New builds the roles of cfg and binds their listeners, so that Addr
// answers before Run. Backends that are unreachable are not an error here:
// the roles report and retry.
func New(cfg Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: log, listeners: map[string]net.Listener{}, errs: make(chan error, 8)}
	a.runCtx, a.cancelRun = context.WithCancel(context.Background())
	a.admin = newAdmin(cfg.Pprof)
	ok := false
	defer func() {
		if !ok {
			a.closeAll()
		}
	}()
	if err := a.bind(); err != nil {
		return nil, err
	}
	if err := a.openBackends(); err != nil {
		return nil, err
	}
	if err := a.openEvents(); err != nil {
		return nil, err
	}
	if cfg.needs(RoleCloud) {
		if err := a.newCloud(); err != nil {
			return nil, err
		}
	}
	if cfg.needs(RoleLogic) {
		if err := a.newLogic(); err != nil {
			return nil, err
		}
	}
	if cfg.needs(RoleJob) {
		if err := a.newJob(); err != nil {
			return nil, err
		}
	}
	a.admin.addCheck("router", a.routerReady)
	ok = true
	return a, nil
}

// bind opens every listener this process serves.
func (a *App) bind() error {
	c := a.cfg
	want := map[string]string{}
	if c.needs(RoleCloud) {
		want["tcp"], want["ws"] = c.TCPAddr, c.WSAddr
		if c.Clustered() {
			want["link"] = c.LinkAddr
		}
	}
	if c.needs(RoleLogic) {
		want["http"] = c.HTTPAddr
	}
	if admin := a.adminAddr(); admin != "" {
		want["admin"] = admin
	}
	for name, addr := range want {
		if addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			flagName := map[string]string{"tcp": "tcp-addr", "ws": "ws-addr", "link": "link-addr", "http": "http-addr", "admin": "admin-addr"}[name]
			return fmt.Errorf("%w: -%s: listen %s: %v", ErrUsage, flagName, addr, err)
		}
		a.listeners[name] = ln
	}
	return nil
}

// adminAddr is where the admin endpoints get their own listener; "" means
// they share the push API's.
func (a *App) adminAddr() string {
	if a.cfg.AdminAddr != "" {
		return a.cfg.AdminAddr
	}
	if a.cfg.needs(RoleLogic) {
		return ""
	}
	return "127.0.0.1:3119"
}

// Addr returns the bound address of a listener: "tcp", "ws", "link",
// "http" or "admin" ("" when this process has none).
func (a *App) Addr(name string) string {
	if ln, ok := a.listeners[name]; ok {
		return ln.Addr().String()
	}
	return ""
}

// advertised picks the address others should use for listener name:
// the flag when set, else the bound address with an unspecified host
// replaced: by 127.0.0.1 in one process, by the host name in a cluster.
func (a *App) advertised(flagValue, name string) string {
	if flagValue != "" {
		return flagValue
	}
	addr := a.Addr(name)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		// Bound to every interface: in one process clients are local;
		// in a cluster other machines need this host's name.
		host = "127.0.0.1"
		if name, err := os.Hostname(); err == nil && a.cfg.Clustered() {
			host = name
		}
	}
	return net.JoinHostPort(host, port)
}

func (a *App) newCloud() error {
	auth, err := a.authenticator()
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if a.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("%w: -tls-cert: %v", ErrUsage, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if a.linkTLS, _, err = a.cfg.linkTLS(); err != nil {
		return err
	}
	var proxies []netip.Prefix
	for _, p := range a.cfg.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("%w: -trusted-proxies: %v", ErrUsage, err)
		}
		proxies = append(proxies, pfx)
	}
	var public []string
	scheme := map[bool][2]string{false: {"tcp", "ws"}, true: {"tcps", "wss"}}[tlsCfg != nil]
	if a.Addr("tcp") != "" {
		public = append(public, scheme[0]+"://"+a.advertised(a.cfg.AdvertiseTCP, "tcp"))
	}
	if a.Addr("ws") != "" {
		public = append(public, scheme[1]+"://"+a.advertised(a.cfg.AdvertiseWS, "ws")+"/sub")
	}
	cc := cloud.Config{
		NodeID:             a.cfg.NodeID,
		Store:              a.router,
		Authenticator:      auth,
		LinkSecret:         a.cfg.LinkSecret,
		LinkAddr:           a.advertised(a.cfg.AdvertiseLink, "link"),
		PublicAddrs:        public,
		TLS:                tlsCfg,
		TrustedProxies:     proxies,
		MaxConns:           a.cfg.MaxConns,
		MaxConnsPerIP:      a.cfg.MaxConnsPerIP,
		AcceptRate:         a.cfg.AcceptRate,
		AcceptRatePerIP:    a.cfg.AcceptRatePerIP,
		MaxHandshakes:      a.cfg.MaxHandshakes,
		MaxHandshakesPerIP: a.cfg.MaxHandshakesPerIP,
		HandshakeTimeout:   a.cfg.HandshakeTimeout,
		InboundRate:        a.cfg.InboundRate,
		MaxInboundBody:     a.cfg.MaxInboundBody,
		QueueLength:        a.cfg.QueueLength,
		MaxBroadcasts:      a.cfg.MaxBroadcasts,
		HeartbeatTimeout:   a.cfg.HeartbeatMax,
		NodeTTL:            a.cfg.NodeTTL,
		Events:             a.events.events,
		UpstreamHook:       a.events.upstream,
		Client:             a.clientSettings(),
		Logger:             a.log.With("role", RoleCloud),
	}
	if a.history != nil {
		cc.History = a.history
	}
	srv, err := cloud.New(cc)
	if err != nil {
		return err // already "cloud: ..."
	}
	a.cloud = srv
	a.admin.register(metrics.Cloud(srv))
	return nil
}

func (a *App) authenticator() (cloud.Authenticator, error) {
	switch a.cfg.Auth {
	case AuthToken:
		auth, err := cloud.NewJWTAuthenticator(cloud.JWTConfig{HS256Secret: []byte(a.cfg.TokenSecret),
			JWKSFile: a.cfg.JWKSFile, JWKSURL: a.cfg.JWKSURL, Logger: a.log.With("role", RoleCloud)})
		if err != nil {
			return nil, err // "cloud: JWK Set ...": unreadable at start
		}
		a.closer = append(a.closer, auth.Close)
		return auth, nil
	case AuthDev:
		a.log.Warn("client auth is in dev mode: clients are trusted to say who they are (goim's behaviour); use -auth token with -token-secret in production")
		return cloud.DevAuthenticator(), nil
	}
	return nil, fmt.Errorf("%w: -auth: %q", ErrUsage, a.cfg.Auth)
}

func (a *App) newLogic() error {
	lc := logic.Config{Router: a.router, Queue: a.queue, Timeout: pushTimeout,
		MaxPushCost: a.cfg.MaxPushCost, Logger: a.log.With("role", RoleLogic)}
	if a.history != nil {
		lc.History = a.history
	}
	p, err := logic.New(lc)
	if err != nil {
		return err // already "logic: ..."
	}
	a.pusher = p
	a.admin.register(metrics.Logic(p))
	return nil
}

// routerReady is the readiness check every role shares: the router
// answers.
func (a *App) routerReady(ctx context.Context) error {
	_, err := a.router.Nodes(ctx)
	return err
}

func (a *App) newJob() error {
	_, linkTLS, err := a.cfg.linkTLS()
	if err != nil {
		return err
	}
	cfg := job.Config{
		Source:      a.source,
		Directory:   a.router,
		LinkSecret:  a.cfg.LinkSecret,
		LinkOptions: job.LinkOptions{TLS: linkTLS},
		DeadLetter:  a.deadLetter(),
		Users:       a.router,
		Events:      a.events.events,
		Logger:      a.log.With("role", RoleJob),
	}
	if a.history != nil {
		cfg.History = a.history
	}
	if a.cfg.RoomDispatch {
		cfg.Rooms = a.router
	}
	if !a.cfg.Clustered() {
		// One process: deliver straight into the gateway, no link.
		srv := a.cloud
		cfg.Connect = func(context.Context, imcloud.Node) (job.Link, error) { return srv, nil }
	}
	j, err := job.New(cfg)
	if err != nil {
		return err // already "job: ..."
	}
	a.job = j
	a.admin.register(metrics.Job(j))
	return nil
}

// pushAPI is the push API's mux: goim's routes, the admin endpoints when
// they share the port, and the demo page.
func (a *App) pushAPI() http.Handler {
	mux := http.NewServeMux()
	api := logic.NewHandler(a.pusher, logic.HandlerConfig{
		APIKeys:      a.cfg.APIKeys(),
		MaxBodyBytes: a.cfg.MaxBodySize,
		Client:       a.clientSettings(),
		Logger:       a.log.With("role", RoleLogic),
	})
	mux.Handle("/goim/", api)
	if a.adminAddr() == "" {
		mux.Handle("/healthz", a.admin.handler)
		mux.Handle("/readyz", a.admin.handler)
		mux.Handle("/metrics", a.admin.handler)
		mux.Handle("/debug/pprof/", a.admin.handler)
	}
	a.mountDemo(mux)
	return mux
}

// clientSettings are what clients are told, by the gateway's auth reply
// and by the push API's nodes/weighted alike: the advertised ports and
// the defaults for the rest. Only what listens is advertised: with
// -tls-cert the WebSocket listener speaks TLS, so its port is the WSS
// port and there is no plain WebSocket port; without it there is no WSS
// port; a disabled listener is no port.
func (a *App) clientSettings() imcloud.ClientSettings {
	ws := a.clientPort(a.cfg.AdvertiseWS, "ws", a.cfg.WSAddr)
	s := imcloud.ClientSettings{TCPPort: a.clientPort(a.cfg.AdvertiseTCP, "tcp", a.cfg.TCPAddr), WSPort: ws}
	if a.cfg.TLSCert != "" {
		s.WSPort, s.WSSPort = imcloud.NoPort, ws
	}
	return s
}

// clientPort is the port clients are told for listener name: the
// advertised address's, else the listener's; a process that does not
// serve clients (the logic role alone) reports the fleet's from the
// listener flag. imcloud.NoPort when the listener is disabled.
func (a *App) clientPort(advertise, name, flagAddr string) int {
	addr := advertise
	if addr == "" {
		addr = a.Addr(name)
	}
	if addr == "" && !a.cfg.needs(RoleCloud) {
		addr = flagAddr
	}
	if p := portOf(addr); p > 0 {
		return p
	}
	return imcloud.NoPort
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// Run serves until ctx ends or a listener fails; then it returns (call
// Shutdown to drain).
func (a *App) Run(ctx context.Context) error {
	a.start()
	a.logStartup()
	select {
	case <-ctx.Done():
		return nil
	case err := <-a.errs:
		return err
	}
}

func (a *App) goServe(name string, serve func() error) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := serve(); err != nil && !isClosed(err) {
			a.errs <- fmt.Errorf("%s: %w", name, err)
		}
	}()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) || errors.Is(err, cloud.ErrServerClosed)
}

func (a *App) start() {
	if a.cloud != nil {
		if ln := a.listeners["tcp"]; ln != nil {
			a.goServe("tcp", func() error { return a.cloud.ServeTCP(ln) })
		}
		if ln := a.listeners["ws"]; ln != nil {
			a.goServe("ws", func() error { return a.cloud.ServeWS(ln) })
		}
		if ln := a.listeners["link"]; ln != nil {
			if a.linkTLS != nil {
				ln = tls.NewListener(ln, a.linkTLS)
			}
			a.goServe("link", func() error { return a.cloud.ServeLink(ln) })
		}
	}
	if a.job != nil {
		a.goServe("job", func() error { return a.job.Run(a.runCtx) })
	}
	if ln := a.listeners["http"]; ln != nil {
		a.httpSrv = &http.Server{Handler: a.pushAPI(), ReadHeaderTimeout: headerTimeout, ReadTimeout: bodyTimeout,
			WriteTimeout: pushWriteTimeout, IdleTimeout: idleTimeout}
		a.goServe("http", func() error { return a.httpSrv.Serve(ln) })
	}
	if ln := a.listeners["admin"]; ln != nil {
		a.adminSrv = &http.Server{Handler: a.admin.handler, ReadHeaderTimeout: headerTimeout, ReadTimeout: bodyTimeout,
			WriteTimeout: adminWriteTimeout, IdleTimeout: idleTimeout}
		a.goServe("admin", func() error { return a.adminSrv.Serve(ln) })
	}
}

func (a *App) logStartup() {
	attrs := []any{"version", imcloud.Version, "role", a.cfg.Role, "backends", map[bool]string{false: "memory", true: "redis+kafka"}[a.cfg.Clustered()]}
	for _, name := range []string{"tcp", "ws", "link", "http", "admin"} {
		if addr := a.Addr(name); addr != "" {
			attrs = append(attrs, name, addr)
		}
	}
	if a.cloud != nil {
		attrs = append(attrs, "node", a.cloud.ID())
	}
	a.log.Info("imcloud listening", attrs...)
	a.logExposure()
	if a.Addr("http") == "" {
		return
	}
	host := a.advertised("", "http")
	auth := ""
	switch keys := a.cfg.APIKeys(); {
	case len(keys) == 1:
		// The key itself stays out of the log.
		auth = `-H "X-Api-Key: $` + EnvName("api-key") + `" `
	case len(keys) > 1:
		auth = `-H "X-Api-Key: ${` + EnvName("api-key") + `%%,*}" ` // the first key
	}
	a.log.Info("push a first message: curl " + auth + "-d 'hello' 'http://" + host + "/goim/push/room?operation=1000&type=live&room=1000'")
	if a.cloud != nil {
		a.log.Info("clients connect to TCP " + a.advertised(a.cfg.AdvertiseTCP, "tcp") +
			" or WebSocket ws://" + a.advertised(a.cfg.AdvertiseWS, "ws") + "/sub; demo page http://" + host + "/")
	}
}

// Shutdown stops accepting pushes, drains clients (op 6 to those that
// opted in), lets job finish what it holds, and closes the backends this
// App opened. It returns ctx.Err() if ctx ends first.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	a.stopOnce.Do(func() {
		a.admin.setDraining()
		if a.httpSrv != nil {
			errs = append(errs, a.httpSrv.Shutdown(ctx))
		}
		if a.pusher != nil {
			errs = append(errs, a.pusher.Shutdown(ctx))
		}
		if a.job != nil {
			errs = append(errs, a.job.Shutdown(ctx))
		}
		a.cancelRun()
		if a.cloud != nil {
			errs = append(errs, a.cloud.Shutdown(ctx))
		}
		if a.adminSrv != nil {
			errs = append(errs, a.adminSrv.Shutdown(ctx))
		}
		a.closeAll()
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, ctx.Err())
		}
	})
	return errors.Join(errs...)
}

// closeAll closes listeners not yet served and the backends this App owns.
func (a *App) closeAll() {
	for _, ln := range a.listeners {
		_ = ln.Close()
	}
	for i := len(a.closer) - 1; i >= 0; i-- {
		if err := a.closer[i](); err != nil {
			a.log.Warn("closing a backend", "err", err)
		}
	}
	a.closer = nil
}

// logExposure says who can reach the push API and the admin endpoints.
func (a *App) logExposure() {
	for _, l := range []struct{ name, what string }{{"http", "push API"}, {"admin", "admin endpoints"}} {
		addr := a.Addr(l.name)
		switch {
		case addr == "":
		case IsLoopback(addr):
			a.log.Info(l.what+" reachable from this machine only", "addr", addr)
		case l.name == "http" && len(a.cfg.APIKeys()) == 0:
			a.log.Warn(l.what+" reachable from other machines WITHOUT an API key (-insecure-api): anyone can push to every client",
				"addr", addr)
		case l.name == "http":
			a.log.Info(l.what+" reachable from other machines; push routes need the API key", "addr", addr)
		default:
			a.log.Info(l.what+" reachable from other machines (health, metrics)", "addr", addr, "pprof", a.cfg.Pprof)
		}
	}
}

// Timeouts of the HTTP servers this App starts, so that no client holds a
// connection, a goroutine or a request body for as long as it likes.
const (
	headerTimeout = 10 * time.Second
	// bodyTimeout bounds reading a whole request, body included.
	bodyTimeout = 30 * time.Second
	// idleTimeout closes keep-alive connections that send nothing.
	idleTimeout = 90 * time.Second
	// adminWriteTimeout leaves room for a 60 s CPU profile.
	adminWriteTimeout = 90 * time.Second
	// pushTimeout bounds a push's work (logic.Config.Timeout).
	pushTimeout = 10 * time.Second
	// pushWriteTimeout bounds a push request from its first byte to the
	// answer's last: reading the body, then the push's work.
	pushWriteTimeout = bodyTimeout + pushTimeout + 5*time.Second
)
