// imcloud.js: a small, dependency-free browser (and Node) client for the goim v2
// wire protocol that imcloud's cloud nodes speak over WebSocket. Published as
// the npm package @imcloud/client; imcloud.d.ts next to it declares its types.
//
// Six modules, this one the entry point that exports everything:
//   - codec.js: pure codec helpers (encodeFrame, decodeFrames, unbatch,
//     heartbeatOnline, authBody, ...) that work on Uint8Array/ArrayBuffer and
//     never touch the network, so they are unit-tested in Node;
//   - recovery.js: the bodies of ops 24 and 25 and the positions kept per stream;
//   - rooms.js: Join and Leave (ops 18-21), the rooms a Client is in;
//   - token.js: the token's lifetime (refresh, ops 22 and 23) and kicks;
//   - reconnect.js: the reconnect waits (backoffDelay) and when to give up;
//   - here, Client, an EventTarget that connects, authenticates (opting into the
//     protocol extensions with header ver 2), keeps heartbeats at the interval
//     the server returns, decodes op 9 batches, reconnects with jittered
//     exponential backoff that honours the server's reconnect hint (op 6),
//     recovers the pushes it missed while disconnected (ops 24 and 25, see Client),
//     may be in several rooms (join and leave), refreshes its token before it
//     expires and stops when the application kicks it.
//
// Usage:
//
//	import { Client } from "@imcloud/client"; // or "./imcloud.js"
//	const c = new Client("ws://127.0.0.1:3102/sub", { mid: 42, roomId: "live://1000" });
//	c.on("message", (m) => console.log(m.op, m.text()));
//	c.connect();
import { Message, Op, VER_EXTENSIONS, VER_GOIM, decodeMessage, encodeFrame, heartbeatOnline, parseOps, text, authBody } from "./codec.js";
import { PositionBook, onPushAt, onRecovery } from "./recovery.js";
import { Rooms } from "./rooms.js";
import { Tokens } from "./token.js";
import { onClosed, scheduleReconnect } from "./reconnect.js";

export * from "./codec.js";
export { MAX_HELD, MAX_POSITIONS, decodePushAt, encodePushAt, parseRecovery } from "./recovery.js";
export { RoomError, changeRoomRefusal, parseRoomReply, roomBody } from "./rooms.js";
export { RefreshError, isKick, jwtClaims, parseRefreshReply, refreshDelay } from "./token.js";
export { AuthError, backoffDelay } from "./reconnect.js";

/**
 * DEFAULT_ACCEPTS are the push ops a Client takes for key, mid and broadcast
 * pushes when options.accepts is not given: goim's example ops 1000-1002, which
 * the README's pushes use. The Go client (cloud/client) has the same default.
 * Room pushes are not filtered by op; an explicit empty list takes no key, mid
 * or broadcast push (goim's rule).
 */
export const DEFAULT_ACCEPTS = Object.freeze([1000, 1001, 1002]);

function makeEvent(type, detail) {
  if (typeof CustomEvent === "function") return new CustomEvent(type, { detail });
  const e = new Event(type);
  e.detail = detail;
  return e;
}

/** Connection states, in Client.state. */
export const State = Object.freeze({
  IDLE: "idle", // not started, or closed by close()
  CONNECTING: "connecting", // socket opening, or auth sent and not yet answered
  OPEN: "open", // authenticated
  WAITING: "waiting", // disconnected, a reconnect is scheduled
});

/**
 * Client is one logical connection to a cloud node over WebSocket that
 * survives reconnects. It is an EventTarget; every event is a CustomEvent
 * whose detail is described below. `on(type, fn)` is a shorthand that passes
 * the detail and returns an unsubscribe function.
 *
 * Events:
 *   open        {url}                       the socket opened; auth is sent
 *   auth        {mid, key, room_id, heartbeat}  the server accepted auth (AuthReply)
 *   message     Message                     a push: {op, ver, seq, body, receivedAt, text(), json(),
 *                                           stream, epoch, offset, replayed, room}
 *   recovery    {streams, recovered, replayed, resumed}  what the server recovered (see Recovery)
 *   online      {count}                     the primary room's online count (heartbeat reply)
 *   room        {room}                      the primary room changed: ChangeRoom acknowledged, or leave() of it
 *   join        {room, rejoin}              the server confirmed a Join (rejoin: the one after an auth)
 *   leave       {room}                      the server confirmed a Leave
 *   refused     {op, room, code, error}     a Join no promise waits for was refused (see Rooms)
 *   disconnect  {reason, reconnectMs, kick} the server says why it is closing (op 6)
 *   kicked      {reason}                    the application kicked the connection (after "disconnect")
 *   refresh     {ok, expiresAt, error}      the server took a fresh token (op 23), or refused it
 *   close       {code, reason, wasClean, reconnect, delayMs, attempt}  the socket closed
 *   error       {error}                     something failed; see below
 *   state       {state}                     State changed
 *
 * When it gives up. The client retries what may pass (a refused or dropped
 * socket, a protocol error, a getToken that failed) with backoff
 * (backoffDelay), forever, until close(). It stops, with an "error" event
 * (none after a kick) and then a "close" event whose reconnect is false
 * (state IDLE), on what retrying cannot fix: a malformed URL, auth refused
 * maxAuthRefusals times in a row (AuthError), a kick (unless
 * options.reconnectAfterKick); reconnect.js says which.
 * And new Client() throws a TypeError when there is no WebSocket
 * implementation (Node.js before 22 has no global WebSocket; pass one, such
 * as the "ws" package's, as options.WebSocket). connect() after a stop starts
 * afresh.
 *
 * getToken. For tokens that must be fetched (a short-lived JWT from the
 * application's backend), options.getToken is called before every connection
 * attempt, the first and each reconnect, before the socket opens; it returns
 * the token or a Promise of it, which is sent in that attempt's auth frame
 * (instead of options.token). A getToken that throws or rejects is reported
 * as an "error" event and retried with backoff like a failed connection.
 * When that token is a JWT with "exp", getToken is also called before it
 * expires and the new token sent (op 22): see token.js, also for kicks.
 *
 * Recovery. With options.recover (the default), the client gets back the
 * pushes it missed while disconnected, within the server's history: op 24
 * pushes are "message" events that say their stream, epoch, offset and
 * whether they were replayed; each op 25 is a "recovery" event; positions()
 * are where it stands per stream. recovery.js says how it goes.
 *
 * Rooms. A connection may be in several rooms: its primary room (roomId,
 * changeRoom) and those join() adds, re-joined after every auth; leave()
 * leaves either; rooms() lists them; a refusal is a RoomError (or a
 * "refused" event for a re-join); see rooms.js.
 */
export class Client extends EventTarget {
  /**
   * @param {string} url  ws:// or wss:// address of the cloud node, path /sub
   * @param {object} options
   * @param {number} [options.mid]       user id (ignored by a server that verifies tokens)
   * @param {string} [options.key]       connection key; empty lets the server assign one
   * @param {string} [options.roomId]    room key "type://id", or empty
   * @param {string} [options.platform]  default "web"
   * @param {number[]|string} [options.accepts]  push ops for key/mid/broadcast pushes; default DEFAULT_ACCEPTS (1000-1002)
   * @param {string} [options.token]     token for a server with a token authenticator
   * @param {() => string|Promise<string>} [options.getToken]  fetches the token before every connection attempt and before it expires
   * @param {boolean} [options.reconnect]  default true
   * @param {boolean} [options.reconnectAfterKick]  reconnect after a kick too; default false
   * @param {number} [options.maxAuthRefusals]  auth refusals in a row before giving up; default 3
   * @param {{minMs?: number, maxMs?: number, factor?: number, jitter?: number, hintJitter?: number}} [options.backoff]
   *   reconnect waits (see backoffDelay); defaults 500 ms, 30 s, 2, 0.5, 0.2
   * @param {number} [options.heartbeatMs]  used until the server's AuthReply says otherwise; default 30000
   * @param {number} [options.requestTimeoutMs]  how long changeRoom/join/leave/sub/unsub/send wait for a reply; default 10000
   * @param {Function} [options.WebSocket]  WebSocket constructor (default globalThis.WebSocket)
   * @param {boolean} [options.recover]  ask for the pushes missed while disconnected (ops 24, 25); default true
   * @param {Object<string, {epoch: string, offset: number}>} [options.positions]  positions to start from (see positions())
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.mid = options.mid ?? 0;
    this.key = options.key ?? "";
    this.roomId = options.roomId ?? "";
    this.platform = options.platform ?? "web";
    this.accepts = parseOps(options.accepts ?? DEFAULT_ACCEPTS);
    this.token = options.token ?? "";
    this.getToken = options.getToken ?? null;
    if (this.getToken !== null && typeof this.getToken !== "function") {
      throw new TypeError("imcloud: options.getToken must be a function returning the token or a Promise of it");
    }
    this.reconnect = options.reconnect ?? true;
    this.reconnectAfterKick = options.reconnectAfterKick ?? false;
    this.maxAuthRefusals = options.maxAuthRefusals ?? 3;
    this.backoff = { ...options.backoff };
    this.heartbeatMs = options.heartbeatMs ?? 30000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10000;
    this.recover = options.recover ?? true;
    this._rooms = new Rooms(this);
    this._tokens = new Tokens(this);
    /** When the connection's token expires (ms since the epoch; its exp, or the server's refresh reply), or null. */
    this.tokenExpiresAt = null;
    // It follows any user stream (the server decides the user) and its
    // rooms'.
    this._book = new PositionBook((s) => s.startsWith("u:") || (s.startsWith("r:") && this._rooms.has(s.slice(2))), options.positions);
    /** The detail of the last "recovery" event, or null. */
    this.lastRecovery = null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError(
        "imcloud: no WebSocket implementation: this runtime has no global WebSocket (Node.js before 22); " +
          'pass one as options.WebSocket, e.g. import { WebSocket } from "ws"',
      );
    }
    /** @type {string} */ this.state = State.IDLE;
    /** Online count of the primary room, from the last heartbeat reply. */
    this.online = null;
    /** The last op 6 the server sent: {reason, reconnectMs}, or null. */
    this.lastDisconnect = null;
    /** When the scheduled reconnect runs (ms since the epoch), while WAITING. */
    this.nextRetryAt = null;
    this._ws = null;
    this._gen = 0; // bumped by every attempt and by close(): a late getToken answer is dropped
    this._seq = 0;
    this._attempt = 0;
    this._refusals = 0;
    this._hintMs = null;
    this._hbTimer = null;
    this._deadTimer = null;
    this._retryTimer = null;
    this._pending = new Map(); // seq -> {op, reply, resolve, reject, timer, apply}
    this._replaying = new Set(); // op 24 frames of these streams are replayed (after a ChangeRoom or Join reply)
  }

  /** on adds a listener that receives the event's detail; returns a function that removes it. */
  on(type, fn) {
    const h = (e) => fn(e.detail, e);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  /** connect opens the connection (and keeps it open until close()). */
  connect() {
    if (this.state !== State.IDLE && this.state !== State.WAITING) return;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._closedByUser = false;
    if (this.state === State.IDLE) this._refusals = 0;
    this._open();
  }

  /** close closes the connection and stops reconnecting. */
  close(code = 1000, reason = "client close") {
    this._closedByUser = true;
    this._gen++;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._stopTimers();
    const ws = this._ws;
    this._ws = null;
    this._failPending(new Error("imcloud: connection closed"));
    if (ws) {
      this._detach(ws);
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
      this._emit("close", { code, reason, wasClean: true, reconnect: false, delayMs: null, attempt: this._attempt });
    }
    this._setState(State.IDLE);
  }

  /**
   * changeRoom moves the connection's primary room to room ("type://id"; ""
   * leaves it; op 12): resolves once the server replied, rejects with a
   * RoomError when it refused. See Rooms.changeRoom.
   */
  changeRoom(room) {
    return this._rooms.changeRoom(room);
  }

  /**
   * join enters room ("type://id") besides the rooms the connection is in
   * (op 18): resolves on the server's ok, rejects with a RoomError when it
   * refused; the room is re-joined after every reconnect. See Rooms.join.
   */
  join(room) {
    return this._rooms.join(room);
  }

  /** leave leaves room, a joined one or the primary room (op 20); see Rooms.leave. */
  leave(room) {
    return this._rooms.leave(room);
  }

  /** rooms returns the rooms the connection is in (or enters at the next auth): its primary room first, then those it joined. */
  rooms() {
    return this._rooms.list();
  }

  /** refreshToken sends a token from getToken now (op 22), as done before expiry; see Tokens.refresh. */
  refreshToken() {
    return this._tokens.refresh();
  }

  /** sub adds push ops to accept (op 14); remembered for reconnects. */
  async sub(ops) {
    const list = parseOps(ops);
    for (const op of list) if (!this.accepts.includes(op)) this.accepts.push(op);
    if (this.state === State.OPEN) await this._request(Op.SUB, list.join(","), Op.SUB_REPLY);
    return this.accepts.slice();
  }

  /** unsub stops accepting push ops (op 16); remembered for reconnects. */
  async unsub(ops) {
    const list = parseOps(ops);
    this.accepts = this.accepts.filter((op) => !list.includes(op));
    if (this.state === State.OPEN) await this._request(Op.UNSUB, list.join(","), Op.UNSUB_REPLY);
    return this.accepts.slice();
  }

  /** send sends an upstream message (op 4 by default); resolves when the server echoed the op. */
  send(body, op = Op.SEND_MSG) {
    if (this.state !== State.OPEN) return Promise.reject(new Error("imcloud: not connected"));
    return this._request(op, body, op);
  }

  /** heartbeat sends a heartbeat now (the reply carries the online count). */
  heartbeat() {
    this._write(Op.HEARTBEAT, null);
  }

  /**
   * positions returns the positions the client holds, {stream: {epoch,
   * offset}}: its user's, its rooms' and those of rooms it moved away from
   * with changeRoom (its next auth sends its user's and its primary room's,
   * its re-joins the joined rooms'). A copy; pass it as options.positions to
   * a new Client to continue from there.
   */
  positions() {
    return this._book.all();
  }

  // ---- internals ----

  // _decode returns decode(body), or undefined after an "error" event when
  // it throws: a malformed frame is skipped, the connection stays.
  _decode(decode, body) {
    try {
      return decode(body);
    } catch (error) {
      this._emit("error", { error });
      return undefined;
    }
  }

  _emit(type, detail) {
    this.dispatchEvent(makeEvent(type, detail));
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", { state });
  }

  _nextSeq() {
    this._seq = (this._seq + 1) | 0;
    if (this._seq <= 0) this._seq = 1;
    return this._seq;
  }

  _write(op, body, ver = VER_GOIM) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return 0;
    const seq = this._nextSeq();
    ws.send(encodeFrame({ op, ver, seq, body }));
    return seq;
  }

  // _request sends a request and resolves when its reply (op reply, same
  // seq) comes: with apply(body)'s result when given, which runs as the
  // reply is dispatched (before the frames after it); a throw rejects.
  _request(op, body, reply, apply = (b) => b) {
    return new Promise((resolve, reject) => {
      const seq = this._write(op, body);
      if (!seq) {
        reject(new Error("imcloud: not connected"));
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(seq);
        reject(new Error(`imcloud: no reply to op ${op} within ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this._pending.set(seq, { op, reply, resolve, reject, timer, apply });
    });
  }

  // _settle settles the request f answers, if any. A server that does not
  // know an op (Join, Leave: an older one) echoes it as an upstream message.
  _settle(f) {
    const p = this._pending.get(f.seq);
    if (f.seq === 0 || !p || (f.op !== p.reply && f.op !== p.op)) return false;
    this._pending.delete(f.seq);
    clearTimeout(p.timer);
    if (f.op !== p.reply) {
      const err = new Error(`imcloud: the server does not know op ${p.op} (it echoed it as an upstream message)`);
      err.code = "ERR_UNSUPPORTED_OP";
      p.reject(err);
      return true;
    }
    try {
      p.resolve(p.apply(f.body));
    } catch (err) {
      p.reject(err);
    }
    return true;
  }

  _failPending(err) {
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
  }

  // _open starts one connection attempt: the token (getToken's, when set),
  // then the socket.
  _open() {
    this._setState(State.CONNECTING);
    this._hintMs = null;
    this.nextRetryAt = null;
    const gen = ++this._gen;
    if (!this.getToken) {
      this._tokens.fetched(this.token);
      this._dial(this.token);
      return;
    }
    let token;
    try {
      token = Promise.resolve(this.getToken());
    } catch (err) {
      token = Promise.reject(err);
    }
    token.then(
      (t) => {
        if (gen !== this._gen) return;
        this._tokens.fetched(t ?? "");
        this._dial(t ?? "");
      },
      (err) => {
        if (gen !== this._gen) return;
        const error = new Error(`imcloud: getToken failed: ${err?.message ?? err}`, { cause: err });
        this._emit("error", { error });
        scheduleReconnect(this, { code: 0, reason: error.message, wasClean: false });
      },
    );
  }

  _dial(token) {
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (error) {
      // A URL the constructor refuses is refused again on every retry.
      this._emit("error", { error });
      this._stop({ code: 0, reason: String(error), wasClean: false });
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._authSent = false; // the auth frame went out on this socket
    this._authed = false; // its AuthReply came back
    this._selfClosed = false; // this client closed it (protocol error, silence)
    this._refusedWith = ""; // the reason of an op 6 that came before the AuthReply
    this._recovers = false; // an op 25 came on this socket: the server recovers
    this._replayAll = false; // op 24 frames now are replayed ones (after the AuthReply)
    this._replaying.clear();
    ws.onopen = () => {
      this._emit("open", { url: this.url });
      const positions = this.recover ? this._book.forAuth((s) => s.startsWith("u:") || s === `r:${this.roomId}`) : {};
      const body = authBody({
        mid: this.mid,
        key: this.key,
        roomId: this.roomId,
        platform: this.platform,
        accepts: this.accepts,
        token: String(token),
        recover: this.recover,
        positions,
      });
      this._authSent = this._write(Op.AUTH, body, VER_EXTENSIONS) !== 0;
      this._armDeadline(this.heartbeatMs * 2);
    };
    ws.onmessage = (ev) => this._onMessage(ev.data);
    ws.onerror = () => {}; // the close event that follows carries what we need
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._stopTimers();
      this._failPending(new Error("imcloud: connection closed"));
      onClosed(this, { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
    };
  }

  // _closeSocket closes the current socket from this side.
  _closeSocket(code, reason) {
    const ws = this._ws;
    if (!ws) return;
    this._selfClosed = true;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
  }

  _detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  // _stop gives up: no reconnect until connect() is called again.
  _stop({ code, reason, wasClean }) {
    this._emit("close", { code, reason, wasClean, reconnect: false, delayMs: null, attempt: this._attempt });
    this._setState(State.IDLE);
  }

  _stopTimers() {
    clearInterval(this._hbTimer);
    clearTimeout(this._deadTimer);
    this._hbTimer = this._deadTimer = null;
    this._tokens.stop();
  }

  // _armDeadline closes a connection that has been silent for ms: a half-open
  // TCP connection otherwise goes unnoticed until the OS gives up.
  _armDeadline(ms) {
    clearTimeout(this._deadTimer);
    const ws = this._ws;
    this._deadTimer = setTimeout(() => {
      if (this._ws === ws && ws) this._closeSocket(4000, "heartbeat timeout");
    }, ms);
  }

  _onMessage(data) {
    const receivedAt = Date.now();
    let frames;
    try {
      frames = decodeMessage(data);
    } catch (error) {
      this._emit("error", { error });
      this._closeSocket(4002, "protocol error");
      return;
    }
    this._armDeadline(this.heartbeatMs * 2 + 5000);
    for (const f of frames) this._dispatch(f, receivedAt);
  }

  _dispatch(f, receivedAt) {
    switch (f.op) {
      case Op.AUTH_REPLY: {
        let info = {};
        if (f.body.length) {
          try {
            info = JSON.parse(text(f.body));
          } catch {
            info = {}; // goim sends an empty body
          }
        }
        if (info.key) this.key = info.key;
        if (Number(info.heartbeat) > 0) this.heartbeatMs = Number(info.heartbeat) * 1000;
        this._authed = true;
        this._replayAll = this.recover; // until the op 25, if the server recovers
        this._attempt = 0;
        this._refusals = 0;
        this.lastDisconnect = null;
        this._rooms.rejoin(); // before the app hears of it: a join() there adds to these
        this._tokens.authed();
        this._setState(State.OPEN);
        clearInterval(this._hbTimer);
        this._hbTimer = setInterval(() => this.heartbeat(), this.heartbeatMs);
        this._armDeadline(this.heartbeatMs * 2 + 5000);
        this._emit("auth", { mid: info.mid ?? this.mid, key: this.key, room_id: info.room_id ?? this.roomId, heartbeat: this.heartbeatMs / 1000 });
        this.heartbeat(); // the first reply brings the room's online count
        return;
      }
      case Op.HEARTBEAT_REPLY: {
        const count = this._decode(heartbeatOnline, f.body);
        if (count === undefined) return;
        this.online = count;
        this._emit("online", { count });
        return;
      }
      case Op.DISCONNECT: {
        let info = {};
        try {
          info = JSON.parse(text(f.body));
        } catch {
          info = { reason: text(f.body) };
        }
        const reconnectMs = Number.isFinite(Number(info.reconnect_ms)) && info.reconnect_ms !== undefined ? Number(info.reconnect_ms) : null;
        this._hintMs = reconnectMs;
        this.lastDisconnect = { reason: info.reason ?? "", reconnectMs };
        if (typeof info.kick === "boolean") this.lastDisconnect.kick = info.kick;
        if (!this._authed) this._refusedWith = this.lastDisconnect.reason;
        this._emit("disconnect", this.lastDisconnect);
        this._tokens.disconnect(this.lastDisconnect);
        return;
      }
      case Op.PUSH_AT:
        onPushAt(this, f, receivedAt);
        return;
      case Op.RECOVERY:
        onRecovery(this, f);
        return;
      case Op.CHANGE_ROOM_REPLY:
      case Op.SUB_REPLY:
      case Op.UNSUB_REPLY:
      case Op.JOIN_REPLY:
      case Op.LEAVE_REPLY:
      case Op.REFRESH_REPLY:
        this._settle(f); // a reply no request waits for any more is dropped
        return;
      default:
        // An upstream send is answered with the same op and seq; anything
        // else is a push.
        if (this._settle(f)) return;
        this._emit("message", new Message(f, receivedAt));
    }
  }
}
