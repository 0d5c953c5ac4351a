// reconnect.js: when a Client reconnects and when it gives up, from
// imcloud.js's side (see Client there): the wait before each attempt
// (backoffDelay) and what counts as an auth refusal (AuthError).
// imcloud.js re-exports AuthError and backoffDelay.
//
// Waits. A Client reconnects with jittered exponential backoff that honours
// the server's reconnect hint (op 6 reconnect_ms): backoffDelay, with
// options.backoff; a successful auth starts the count afresh.
//
// When it gives up. The client retries what may pass (a refused or dropped
// socket, a protocol error, a getToken that failed) with backoff, forever,
// until close(). It stops, with an "error" event and then a "close" event
// whose reconnect is false (state IDLE), on what retrying cannot fix:
//   - the WebSocket constructor throws (a malformed URL);
//   - the server refused auth maxAuthRefusals times in a row (AuthError; at
//     the first refusal when reconnect is false). A refusal is a socket the
//     server closed after the auth frame and before its AuthReply, unless an
//     op 6 before the close asked the client to come back later
//     (reconnect_ms > 0, a reason other than "auth"). The default, 3,
//     tolerates a refusal that is not about the credentials (a per-IP connection cap, a restart in the middle
//     of the handshake) and, with getToken, a token that expired in flight;
//   - the application kicked it (a "kicked" event; no "error" event), unless
//     options.reconnectAfterKick.
// connect() after a stop starts afresh.

const WAITING = "waiting"; // State.WAITING of imcloud.js

/**
 * AuthError is the error of the "error" event with which a Client gives up
 * after the server refused its auth options.maxAuthRefusals times in a row
 * (see Client). reason is the server's op 6 reason when it sent one, else "".
 */
export class AuthError extends Error {
  constructor(reason, refusals) {
    const why = reason ? `: ${reason}` : " (closed before its auth reply)";
    super(`imcloud: the server refused auth ${refusals} time${refusals === 1 ? "" : "s"} in a row${why}; check the token (or getToken), or the server's log`);
    this.name = "AuthError";
    /** @type {string} */ this.reason = reason;
    /** @type {number} */ this.refusals = refusals;
  }
}

/**
 * backoffDelay is the wait before reconnect attempt n (0 for the first retry):
 * exponential from minMs by factor, capped at maxMs, with "equal jitter" (half
 * fixed, half random) so a crowd of clients spreads out. When the server sent
 * a reconnect hint (op 6 reconnect_ms), the wait is at least the hint, plus up
 * to hintJitter*hint (default 0.2) so that clients given the same hint do not
 * return in the same millisecond (a server may already spread its hints).
 * @param {number} attempt
 * @param {{minMs?: number, maxMs?: number, factor?: number, jitter?: number, hintJitter?: number}} opts
 * @param {number|null} hintMs
 * @param {() => number} random  returns [0, 1)
 */
export function backoffDelay(attempt, opts = {}, hintMs = null, random = Math.random) {
  const { minMs = 500, maxMs = 30000, factor = 2, jitter = 0.5, hintJitter = 0.2 } = opts;
  const base = Math.min(maxMs, minMs * Math.pow(factor, Math.max(0, attempt)));
  const backoff = base * (1 - jitter) + random() * base * jitter;
  if (hintMs === null || hintMs === undefined || !(hintMs >= 0)) return Math.round(backoff);
  const spread = hintMs * hintJitter * random();
  return Math.round(hintMs > 0 ? hintMs + spread : backoff);
}

/**
 * onClosed decides what follows the close of Client c's socket, closed
 * being {code, reason, wasClean} of the close event: a stop after an
 * AuthError when it was the auth refusal that ends the retries, a stop after
 * a kick, else a reconnect (scheduleReconnect).
 */
export function onClosed(c, closed) {
  const expired = c._refusedWith === "token_expired" && c.getToken; // getToken fetches another
  // A hint asks to come back later (a cap that passes), except with
  // reason "auth": the credential was refused (a revoked one comes
  // with a 1 s hint), which counts whatever the hint.
  const later = c._hintMs > 0 && c._refusedWith !== "auth";
  const refused = c._authSent && !c._authed && !c._selfClosed && !later && !expired;
  if (refused && (++c._refusals >= c.maxAuthRefusals || !c.reconnect)) {
    c._emit("error", { error: new AuthError(c._refusedWith, c._refusals) });
    c._stop(closed);
    return;
  }
  if (c._tokens.kicked !== null && !c.reconnectAfterKick) {
    c._stop(closed);
    return;
  }
  scheduleReconnect(c, closed);
}

/**
 * scheduleReconnect puts Client c in state WAITING with its next attempt
 * after backoffDelay, announced by a "close" event whose reconnect is true;
 * or stops it when it does not reconnect (close(), options.reconnect false).
 */
export function scheduleReconnect(c, closed) {
  if (c._closedByUser || !c.reconnect) {
    c._stop(closed);
    return;
  }
  const delayMs = backoffDelay(c._attempt, c.backoff, c._hintMs);
  const attempt = c._attempt;
  c._attempt++;
  c._setState(WAITING);
  c.nextRetryAt = Date.now() + delayMs;
  c._emit("close", { ...closed, reconnect: true, delayMs, attempt });
  c._retryTimer = setTimeout(() => {
    c._retryTimer = null;
    if (c.state === WAITING) c._open();
  }, delayMs);
}
