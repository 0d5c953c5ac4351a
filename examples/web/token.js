// token.js: how the server ends what a connection may do, from imcloud.js's
// side (see Client there): its token's lifetime (refresh before expiry with
// ops 22 and 23; op 6 "token_expired" when it ran out) and kicks (op 6 with
// the application's reason). imcloud.js re-exports RefreshError,
// parseRefreshReply, jwtClaims, refreshDelay and isKick.
//
// Token lifetime. Under a server's token authenticator a connection is
// closed when its token expires (op 6 "token_expired") unless the client
// sent a fresh token first: Refresh (op 22, body the token) is answered by
// RefreshReply (op 23, same seq) with JSON {"ok":true,"expires":<unix s>}, or
// {"ok":false,"error":"..."} when the server refused the token (it fails the
// authenticator, names another user, or was revoked by a kick), after which
// the server closes the connection (op 6 "auth"). A Client
//   - reads "exp" and "iat" of its token when it is a JWT (decoded, not
//     verified; tokenExpiresAt);
//   - with getToken, calls it again when 80% of the time the token had left
//     at its fetch has passed (its lifetime, for a token minted for the
//     fetch; refreshDelay) and sends the new token. A "refresh" event says
//     how the server answered: {ok: true, expiresAt}, and the next refresh
//     is scheduled from the server's expires (none when it is 0); or
//     {ok: false, error} (the server's code: "invalid_token",
//     "token_expired", "other_user", "other_key", "revoked"), and the
//     server closes the connection, after which the client reconnects with
//     a token from getToken as after any drop. refreshToken() does the same
//     at once;
//   - when getToken fails or no reply comes, reports an "error" event and
//     tries again when half the time left has passed (while that is at
//     least a second); an older server, which echoes op 22, is not asked
//     again on that connection;
//   - on op 6 "token_expired" (no refresh in time: a failing getToken, a
//     local clock far behind), reconnects with a token from getToken; that
//     is not an auth refusal (nor an expired token refused at auth, with
//     getToken). Without getToken nothing refreshes: the reconnect sends
//     options.token (or client.token, which the application may replace)
//     again, and the server's refusals end in an AuthError.
//
// Kicks. The application kicks a user's connections (or some keys) through
// the server; the connection gets op 6 with the kick's reason ("kicked"
// unless the application gave one) and no reconnect hint, then closes. An op
// 6 after the AuthReply without a hint (reconnect_ms 0) whose reason is none
// of the node's own (NODE_REASONS) is a kick: "disconnect", then "kicked"
// {reason}, then "close" with reconnect false, and the client stays IDLE
// (no "error" event) until connect(): the application decided that this
// client should go, and decides what its user sees. With
// options.reconnectAfterKick it reconnects as after any drop (with a fresh
// token from getToken; a kick that revoked the user's tokens refuses only
// those issued before it).
import { Op, ProtocolError, text } from "./codec.js";

const OPEN = "open"; // State.OPEN of imcloud.js

/** The share of a token's lifetime after which a Client refreshes it. */
const REFRESH_AT = 0.8;
/** The shortest wait before a refresh (or its retry): no busy loop on a wrong clock. */
const MIN_REFRESH_MS = 1000;
/** The longest: a timer's limit (about 24.8 days); a longer one would fire at once. */
const MAX_REFRESH_MS = 2 ** 31 - 1;

/**
 * The op 6 reasons a node gives on its own (docs/protocol.md), and the
 * disconnect reasons of its connection events but "kicked" (a node might
 * send those too): any other reason is a kick's.
 */
const NODE_REASONS = new Set([
  ...["shutdown", "replaced", "slow consumer", "token_expired", "auth", "identity", "ip_cap", "room_forbidden"],
  ...["client_closed", "heartbeat_timeout", "slow_consumer", "drain", "protocol_error"],
]);

/**
 * isKick says whether an op 6 sent to an authenticated connection is a
 * kick's: the node marks it ("kick": true, pass it as kick); from a node
 * that does not mark kicks (kick undefined), a reason that is not one of
 * the node's own and no reconnect hint (reconnectMs 0 or null: a hint asks
 * the client to come back later).
 */
export function isKick(reason, reconnectMs = null, kick = undefined) {
  if (typeof kick === "boolean") return kick;
  return typeof reason === "string" && reason !== "" && !NODE_REASONS.has(reason) && !(reconnectMs > 0);
}

/**
 * RefreshError is the error with which refreshToken rejects when the server
 * refused the new token (op 23 with "ok": false); error is the server's
 * text. The server then closes the connection, and the client reconnects
 * with a token from getToken.
 */
export class RefreshError extends Error {
  constructor(error) {
    super(`imcloud: the server refused the refreshed token: ${error}`);
    this.name = "RefreshError";
    /** @type {string} */ this.error = error;
  }
}

/**
 * parseRefreshReply parses an op 23 body: {ok, expires, error}, expires the
 * connection's new expiry in unix seconds (null when it has none: the
 * server sends 0), error "" when ok. Throws ProtocolError for a body that
 * is not such JSON.
 * @returns {{ok: boolean, expires: number|null, error: string}}
 */
export function parseRefreshReply(body) {
  let v;
  try {
    v = JSON.parse(text(body));
  } catch (err) {
    throw new ProtocolError(`refresh reply is not JSON: ${err.message}`);
  }
  if (!v || typeof v !== "object" || typeof v.ok !== "boolean") throw new ProtocolError("refresh reply has no boolean ok");
  if (!v.ok) return { ok: false, expires: null, error: typeof v.error === "string" && v.error !== "" ? v.error : "refused" };
  const expires = v.expires ?? null;
  if (expires !== null && (typeof expires !== "number" || !Number.isFinite(expires))) throw new ProtocolError("refresh reply's expires is not a number");
  return { ok: true, expires: expires > 0 ? expires : null, error: "" };
}

/**
 * jwtClaims returns the payload of a JWT (header.payload.signature,
 * base64url), decoded but NOT verified, or null when token is not one. The
 * client reads "exp" and "iat" from it to know when to refresh; the server
 * is what verifies tokens.
 * @returns {Object<string, unknown>|null}
 */
export function jwtClaims(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
    const v = JSON.parse(text(Uint8Array.from(bin, (ch) => ch.charCodeAt(0))));
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * refreshDelay is how long after now to refresh a token with these claims
 * ({exp, iat} in unix seconds) fetched at fetchedAt (ms since the epoch):
 * when 80% of the time it had left at its fetch has passed, but at least
 * 1 s from now and at most 2^31-1 ms (a timer's limit, about 24.8 days);
 * null when it does not expire (no numeric exp). A local clock
 * behind the issuer's (iat after the fetch) counts from iat; one so far
 * ahead that the token looked expired at its fetch counts its lifetime,
 * exp - iat, from the fetch (no iat: null).
 */
export function refreshDelay(claims, fetchedAt = Date.now(), now = fetchedAt) {
  const left = timeLeft(claims, fetchedAt);
  if (left === null) return null;
  return Math.min(MAX_REFRESH_MS, Math.max(MIN_REFRESH_MS, Math.round(fetchedAt + REFRESH_AT * left - now)));
}

// timeLeft is the time a token had left when it was fetched at fetchedAt
// (ms), by the rules of refreshDelay, or null.
function timeLeft(claims, fetchedAt) {
  const exp = claims?.exp;
  if (typeof exp !== "number" || !Number.isFinite(exp)) return null;
  const iat = typeof claims.iat === "number" && Number.isFinite(claims.iat) ? claims.iat : null;
  const left = exp * 1000 - Math.max(fetchedAt, iat === null ? 0 : iat * 1000);
  if (left > 0) return left;
  return iat !== null && exp > iat ? (exp - iat) * 1000 : null;
}

/**
 * Tokens is what a Client keeps of its token's lifetime and of a kick: the
 * claims of the token the connection authenticated or last refreshed with,
 * the refresh timer, and whether the server kicked the current socket. It
 * works through the Client's internals (_request, _emit, _ws, _authed,
 * getToken, state, tokenExpiresAt); Client.refreshToken is its refresh.
 */
export class Tokens {
  constructor(client) {
    this.c = client;
    this._claims = null;
    this._fetchedAt = 0;
    this._timer = null;
    this._inflight = null; // the refresh waiting for its reply
    /** The reason of the kick that ends the current socket, or null. */
    this.kicked = null;
  }

  /** fetched records the token of a connection attempt (getToken's or options.token). */
  fetched(token) {
    this._set(jwtClaims(token), Date.now());
    this.kicked = null;
  }

  /** authed starts the refresh timer: the server accepted the token. */
  authed() {
    this._arm(refreshDelay(this._claims, this._fetchedAt, Date.now()));
  }

  /** stop stops the refresh timer (the socket closed). */
  stop() {
    clearTimeout(this._timer);
    this._timer = null;
  }

  /** disconnect takes note of an op 6: a kick's emits "kicked". */
  disconnect({ reason, reconnectMs, kick }) {
    if (!this.c._authed || !isKick(reason, reconnectMs, kick)) return;
    this.kicked = reason;
    this.c._emit("kicked", { reason });
  }

  /**
   * refresh fetches a token from getToken and sends it (op 22). It resolves
   * with the token's expiry (ms since the epoch, or null) once the server
   * took it, emitting "refresh" {ok: true, expiresAt}, and schedules the next
   * refresh. It rejects with a RefreshError when the server refused it
   * ("refresh" {ok: false, error}; the server closes the connection), with
   * an Error when getToken failed, no reply came, the connection went away,
   * or the server does not know op 22. A refresh while one waits for its
   * reply waits for that one.
   * @returns {Promise<number|null>}
   */
  refresh() {
    if (!this._inflight) {
      const p = this._refresh();
      this._inflight = p;
      p.catch(() => {}).finally(() => this._inflight === p && (this._inflight = null));
    }
    return this._inflight;
  }

  async _refresh() {
    const c = this.c;
    if (typeof c.getToken !== "function") throw new Error("imcloud: refreshing the token needs options.getToken");
    if (c.state !== OPEN) throw new Error("imcloud: not connected");
    const ws = c._ws;
    let token;
    try {
      token = String((await c.getToken()) ?? "");
    } catch (err) {
      throw new Error(`imcloud: getToken failed: ${err?.message ?? err}`, { cause: err });
    }
    if (c._ws !== ws || c.state !== OPEN) throw new Error("imcloud: connection closed");
    const fetchedAt = Date.now();
    return c._request(Op.REFRESH, token, Op.REFRESH_REPLY, (body) => {
      const reply = parseRefreshReply(body);
      if (!reply.ok) {
        this.stop();
        c._emit("refresh", { ok: false, expiresAt: null, error: reply.error });
        throw new RefreshError(reply.error);
      }
      // The server's expiry is the one it enforces (none: the connection
      // is no longer closed for its token); the token's iat still corrects
      // a clock behind.
      const claims = reply.expires === null ? null : { ...jwtClaims(token), exp: reply.expires };
      this._set(claims, fetchedAt);
      this._arm(refreshDelay(claims, fetchedAt, Date.now()));
      c._emit("refresh", { ok: true, expiresAt: c.tokenExpiresAt, error: "" });
      return c.tokenExpiresAt;
    });
  }

  _set(claims, fetchedAt) {
    this._claims = claims;
    this._fetchedAt = fetchedAt;
    const exp = claims?.exp;
    this.c.tokenExpiresAt = typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  }

  // _arm schedules the next refresh in delay ms (none: null, or no getToken).
  _arm(delay) {
    this.stop();
    if (delay === null || typeof this.c.getToken !== "function") return;
    const ws = this.c._ws;
    this._timer = setTimeout(() => {
      this._timer = null;
      this.refresh().catch((error) => this._failed(error, ws));
    }, delay);
  }

  // _failed reports a refresh that failed on this side and tries again when
  // half the token's time left has passed, while that is at least a second:
  // a token that runs out meanwhile ends in op 6 "token_expired", and the
  // client reconnects with a token from getToken. A refusal was reported as
  // a "refresh" event (the server closes the connection); an older server
  // that does not know op 22 is not asked again on this connection.
  _failed(error, ws) {
    const c = this.c;
    if (error instanceof RefreshError || c._ws !== ws || c.state !== OPEN) return;
    c._emit("error", { error });
    if (error.code === "ERR_UNSUPPORTED_OP") return;
    const left = timeLeft(this._claims, this._fetchedAt);
    if (left === null) return;
    const half = (this._fetchedAt + left - Date.now()) / 2;
    if (half >= MIN_REFRESH_MS) this._arm(Math.min(MAX_REFRESH_MS, Math.round(half)));
  }
}
