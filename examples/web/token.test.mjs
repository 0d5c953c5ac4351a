// Unit tests of the token's lifetime and of kicks in imcloud.js (Refresh and
// RefreshReply, ops 22 and 23; op 6 "token_expired" and a kick's reason;
// token.js), run with Node's built-in runner: node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeWebSocket, sleep, tick } from "./fake-websocket.mjs";
import { AuthError, Client, Op, ProtocolError, RefreshError, State, isKick, jwtClaims, parseRefreshReply, refreshDelay, text } from "./imcloud.js";

const T0 = 1_700_000_000_000; // the fake clock's start, ms
const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
// jwt is an unsigned JWT with these claims: the client reads, never verifies.
const jwt = (claims) => `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}.c2ln`;
// fresh mints a token for mid 42 issued now (the fake or the real clock) and valid for ttl seconds.
const fresh = (ttl, claims = {}) => {
  const now = Math.floor(Date.now() / 1000);
  return jwt({ mid: 42, iat: now, exp: now + ttl, ...claims });
};
// flush lets promises and microtasks run; setImmediate is never faked here.
const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};
const of = (events, type) => events.filter(([t]) => t === type).map(([, d]) => d);
const sent = (ws, op) => ws.sent.filter((f) => f.op === op);
const refreshOK = (seq, expires) => ({ op: Op.REFRESH_REPLY, seq, body: JSON.stringify({ ok: true, expires }) });
const disconnect = (reason, reconnectMs = 0) => ({ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason, reconnect_ms: reconnectMs }) });

// start connects a Client whose getToken hands out tokens(n) for its n-th
// call (from 1) and returns it, its events as [type, detail] and calls(),
// the tokens handed out so far.
function start(t, tokens, options = {}) {
  FakeWebSocket.instances = [];
  const handed = [];
  const c = new Client("ws://example/sub", {
    WebSocket: FakeWebSocket,
    backoff: { minMs: 1, maxMs: 2 },
    getToken: () => {
      const token = tokens(handed.length + 1);
      handed.push(token);
      return Promise.resolve(token);
    },
    ...options,
  });
  t.after(() => c.close());
  const events = [];
  for (const type of ["refresh", "kicked", "disconnect", "close", "error", "auth"]) c.on(type, (d) => events.push([type, d]));
  c.connect();
  return { c, events, calls: () => handed.slice() };
}

// authed answers the auth of socket i (waiting for it to be sent) with a
// long heartbeat, so that only the token's timers matter.
async function authed(i = 0) {
  for (let n = 0; !(FakeWebSocket.instances[i]?.sent.length > 0); n++) {
    if (n > 200) assert.fail(`socket ${i} sent no auth`);
    await flush();
  }
  const ws = FakeWebSocket.instances[i];
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq, body: JSON.stringify({ mid: 42, key: "k", heartbeat: 3600 }) }]);
  return ws;
}
const authToken = (ws) => JSON.parse(text(ws.sent[0].body)).token;

// nextSocket waits (real time) for socket i to exist.
async function nextSocket(i) {
  for (let n = 0; FakeWebSocket.instances.length <= i; n++) {
    if (n > 500) assert.fail(`no socket ${i}`);
    await sleep(1);
  }
}

test("jwtClaims reads a JWT's payload without verifying it; anything else is null", () => {
  assert.deepEqual(jwtClaims(jwt({ mid: 7, exp: 1700000060, iat: 1700000000 })), { mid: 7, exp: 1700000060, iat: 1700000000 });
  // base64url without padding, of every length modulo 4, and UTF-8.
  for (const name of ["a", "ab", "abc", "abcd", "é世界"]) assert.equal(jwtClaims(jwt({ name, exp: 1 })).name, name);
  for (const [what, token] of [
    ["empty", ""],
    ["opaque", "0123456789abcdef"],
    ["two parts", "e30.e30"],
    ["four parts", "e30.e30.e30.e30"],
    ["payload not base64url", "e30.e3+0.sig"],
    ["payload not JSON", `e30.${Buffer.from("nope").toString("base64url")}.sig`],
    ["payload an array", `e30.${b64url([1, 2])}.sig`],
    ["not a string", 42],
  ]) {
    assert.equal(jwtClaims(token), null, what);
  }
});

test("refreshDelay: at 80% of the time left at the fetch, from the token's iat when the clock is behind, never under 1 s", () => {
  const now = T0;
  const s = now / 1000;
  // A token minted for the fetch: 80% of its lifetime.
  assert.equal(refreshDelay({ iat: s, exp: s + 60 }, now), 48000);
  assert.equal(refreshDelay({ exp: s + 3600 }, now), 2880000, "no iat: the time left");
  // Measured from the fetch: the auth reply came 2 s later.
  assert.equal(refreshDelay({ iat: s, exp: s + 60 }, now, now + 2000), 46000);
  // A cached token, half used: 80% of what it had left (a refresh at 90% of its lifetime).
  assert.equal(refreshDelay({ iat: s - 30, exp: s + 30 }, now), 24000);
  // The local clock 20 s behind the issuer's: counted from iat, not from the local now.
  assert.equal(refreshDelay({ iat: s + 20, exp: s + 80 }, now), 48000);
  // The local clock 2 min ahead: the token looks expired; its own lifetime counts.
  assert.equal(refreshDelay({ iat: s - 120, exp: s - 60 }, now), 48000);
  assert.equal(refreshDelay({ exp: s - 60 }, now), null, "expired, no iat: nothing to go by");
  // Never a busy loop.
  assert.equal(refreshDelay({ iat: s, exp: s + 1 }, now, now + 5000), 1000);
  // Never past a timer's limit (about 24.8 days), which would fire at once.
  assert.equal(refreshDelay({ iat: s, exp: s + 365 * 86400 }, now), 2 ** 31 - 1);
  // Tokens that do not expire.
  for (const claims of [null, undefined, {}, { exp: "soon" }, { exp: Infinity }, { iat: s }]) assert.equal(refreshDelay(claims, now), null);
});

test("parseRefreshReply and isKick", () => {
  assert.deepEqual(parseRefreshReply('{"ok":true,"expires":1700000060}'), { ok: true, expires: 1700000060, error: "" });
  assert.deepEqual(parseRefreshReply('{"ok":true}'), { ok: true, expires: null, error: "" });
  assert.deepEqual(parseRefreshReply('{"ok":true,"expires":0}'), { ok: true, expires: null, error: "" }, "0: no expiry");
  assert.deepEqual(parseRefreshReply('{"ok":false,"error":"token of another user"}'), { ok: false, expires: null, error: "token of another user" });
  assert.deepEqual(parseRefreshReply('{"ok":false}'), { ok: false, expires: null, error: "refused" });
  for (const [what, body, re] of [
    ["not JSON", "ok", /not JSON/],
    ["no ok", '{"expires":1}', /no boolean ok/],
    ["expires a string", '{"ok":true,"expires":"1"}', /expires is not a number/],
  ]) {
    assert.throws(() => parseRefreshReply(body), (err) => err instanceof ProtocolError && re.test(err.message), what);
  }

  for (const reason of ["kicked", "banned for spam", "logged out elsewhere", "Auth"]) assert.equal(isKick(reason), true, reason);
  assert.equal(isKick("kicked", 0), true);
  for (const reason of ["", "shutdown", "replaced", "slow consumer", "token_expired", "auth", "identity", "ip_cap", "room_forbidden", "drain", "heartbeat_timeout"]) {
    assert.equal(isKick(reason), false, reason);
  }
  assert.equal(isKick("server draining", 2500), false, "a reconnect hint asks the client back: not a kick");
  assert.equal(isKick(undefined), false);
});

test("Client: refreshes at 80% of the token's lifetime, then from the server's expires (fake clock)", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: T0 });
  const { c, events, calls } = start(t, () => fresh(60));
  const ws = await authed();
  assert.equal(c.state, State.OPEN);
  assert.equal(authToken(ws), calls()[0]);
  assert.equal(c.tokenExpiresAt, T0 + 60000);

  t.mock.timers.tick(47999);
  await flush();
  assert.equal(calls().length, 1, "not yet");
  assert.equal(sent(ws, Op.REFRESH).length, 0);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(calls().length, 2, "getToken at 80%");
  const [r1] = sent(ws, Op.REFRESH);
  assert.equal(text(r1.body), calls()[1], "op 22 carries the new token");
  assert.equal(jwtClaims(calls()[1]).exp, T0 / 1000 + 48 + 60);

  // The server's expires is the one it enforces (here shorter than the token's exp).
  const expires = T0 / 1000 + 48 + 30;
  ws.serve([refreshOK(r1.seq, expires)]);
  await flush();
  assert.deepEqual(of(events, "refresh"), [{ ok: true, expiresAt: expires * 1000, error: "" }]);
  assert.equal(c.tokenExpiresAt, expires * 1000);

  // The next one at 80% of those 30 s.
  t.mock.timers.tick(23999);
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 1);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 2);
  assert.equal(c.state, State.OPEN);
  assert.equal(of(events, "error").length, 0);

  // expires 0: the new identity does not expire; nothing more to refresh.
  ws.serve([refreshOK(sent(ws, Op.REFRESH)[1].seq, 0)]);
  await flush();
  assert.deepEqual(of(events, "refresh").at(-1), { ok: true, expiresAt: null, error: "" });
  assert.equal(c.tokenExpiresAt, null);
  t.mock.timers.tick(3600000);
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 2);
  assert.equal(calls().length, 3);

  // A refresh that brings an expiry again arms the timer; close() stops it.
  const again = c.refreshToken();
  await flush();
  const expiresAgain = Math.floor(Date.now() / 1000) + 60;
  ws.serve([refreshOK(sent(ws, Op.REFRESH)[2].seq, expiresAgain)]);
  assert.equal(await again, expiresAgain * 1000);
  assert.equal(calls().length, 4);
  c.close();
  t.mock.timers.tick(3600000);
  await flush();
  assert.equal(calls().length, 4, "no refresh after close()");
});

test("Client: a refresh that fails on this side is retried at half the time left; an older server is not asked again (fake clock)", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: T0 });
  let failing = true;
  const { c, events, calls } = start(
    t,
    (n) => {
      if (n === 2 && failing) throw new Error("backend down");
      return fresh(100);
    },
    { requestTimeoutMs: 2000 },
  );
  const ws = await authed();
  t.mock.timers.tick(80000);
  await flush();
  assert.equal(calls().length, 1, "the failed call handed out nothing");
  assert.match(of(events, "error")[0].error.message, /getToken failed: backend down/);
  assert.equal(sent(ws, Op.REFRESH).length, 0);
  failing = false;

  // 20 s were left: again after 10 s.
  t.mock.timers.tick(9999);
  await flush();
  assert.equal(calls().length, 1);
  t.mock.timers.tick(1);
  await flush();
  assert.equal(calls().length, 2);
  const [r] = sent(ws, Op.REFRESH);

  // No reply within requestTimeoutMs (2 s): an error, and again at half of the 8 s left.
  t.mock.timers.tick(2000);
  await flush();
  assert.match(of(events, "error")[1].error.message, /no reply to op 22/);
  t.mock.timers.tick(3999);
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 1);
  t.mock.timers.tick(1);
  await flush();
  const [, r2] = sent(ws, Op.REFRESH);
  assert.ok(r2 && r2.seq !== r.seq);

  // An older server echoes op 22 as an upstream message: reported once, not asked again.
  ws.serve([{ op: Op.REFRESH, seq: r2.seq }]);
  await flush();
  const last = of(events, "error").at(-1).error;
  assert.equal(last.code, "ERR_UNSUPPORTED_OP");
  assert.match(last.message, /does not know op 22/);
  const errors = of(events, "error").length;
  t.mock.timers.tick(3600000);
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 2);
  assert.equal(of(events, "error").length, errors);
  assert.equal(c.state, State.OPEN, "the connection stays: an older server does not expire it");
});

test("Client: a refused refresh is a refresh event and a RefreshError; the server closes, the client reconnects with a new token", async (t) => {
  const { c, events, calls } = start(t, (n) => fresh(3600, { n }));
  const ws = await authed();
  const refreshed = c.refreshToken();
  await flush();
  const [r] = sent(ws, Op.REFRESH);
  assert.equal(text(r.body), calls()[1]);
  // A second call while the first waits for its reply shares it.
  const again = c.refreshToken();
  await flush();
  assert.equal(sent(ws, Op.REFRESH).length, 1);
  assert.equal(calls().length, 2);

  ws.serve([{ op: Op.REFRESH_REPLY, seq: r.seq, body: JSON.stringify({ ok: false, error: "token of another user" }) }]);
  await assert.rejects(refreshed, (err) => err instanceof RefreshError && err.error === "token of another user" && /token of another user/.test(err.message));
  await assert.rejects(again, RefreshError);
  assert.deepEqual(of(events, "refresh"), [{ ok: false, expiresAt: null, error: "token of another user" }]);

  // The server closes the connection with op 6 "auth": not a kick, not an auth refusal.
  ws.serve([disconnect("auth")]);
  ws.serverClose(1001);
  await nextSocket(1);
  const ws2 = await authed(1);
  assert.equal(calls().length, 3);
  assert.equal(authToken(ws2), calls()[2], "the reconnect authenticates with a token from getToken");
  assert.equal(c.state, State.OPEN);
  assert.equal(of(events, "kicked").length, 0);
  assert.equal(of(events, "error").length, 0);

  // An accepted refresh resolves with the expiry.
  const ok = c.refreshToken();
  await flush();
  const [r2] = sent(ws2, Op.REFRESH);
  ws2.serve([refreshOK(r2.seq, 1900000000)]);
  assert.equal(await ok, 1900000000000);
  assert.equal(c.tokenExpiresAt, 1900000000000);
});

test("Client: refreshToken needs getToken and a connection", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, token: fresh(60) });
  t.after(() => c.close());
  await assert.rejects(c.refreshToken(), /needs options.getToken/);
  c.getToken = () => fresh(60);
  await assert.rejects(c.refreshToken(), /not connected/);
  c.getToken = null;
  // A static token's expiry is known; nothing refreshes it.
  c.connect();
  await tick();
  assert.equal(c.tokenExpiresAt, jwtClaims(c.token).exp * 1000);
});

test("Client: op 6 token_expired is followed by a reconnect with a token from getToken, not counted as a refusal", async (t) => {
  const { c, events, calls } = start(t, (n) => fresh(3600, { n }), { maxAuthRefusals: 1 });
  const ws = await authed();
  ws.serve([disconnect("token_expired")]);
  ws.serverClose(1001);
  assert.deepEqual(of(events, "disconnect").at(-1), { reason: "token_expired", reconnectMs: 0 });
  assert.equal(of(events, "close").at(-1).reconnect, true);

  // A token that expired on its way is refused at auth: getToken fetches another, and that is no refusal either.
  await nextSocket(1);
  await flush();
  const ws2 = FakeWebSocket.instances[1];
  assert.equal(authToken(ws2), calls()[1]);
  ws2.serve([disconnect("token_expired")]);
  ws2.serverClose(1008);
  await nextSocket(2);
  const ws3 = await authed(2);
  assert.equal(authToken(ws3), calls()[2]);
  assert.deepEqual(
    calls().map((tok) => jwtClaims(tok).n),
    [1, 2, 3],
    "a new token for each connection",
  );
  assert.equal(c.state, State.OPEN);
  assert.equal(of(events, "error").length, 0);
  assert.equal(of(events, "kicked").length, 0);
});

test("Client: without getToken, a token refused as expired at auth is a refusal", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, token: "static", maxAuthRefusals: 1, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const errors = [];
  c.on("error", ({ error }) => errors.push(error));
  c.connect();
  await tick();
  const ws = FakeWebSocket.instances[0];
  ws.serve([disconnect("token_expired")]);
  ws.serverClose(1008);
  assert.ok(errors[0] instanceof AuthError);
  assert.equal(errors[0].reason, "token_expired");
  assert.equal(c.state, State.IDLE);
  assert.equal(c.tokenExpiresAt, null, "not a JWT: no known expiry");
});

test("Client: a kick is a kicked event with its reason and stops the client; reconnectAfterKick keeps it going", async (t) => {
  for (const reason of ["banned for spam", "kicked"]) {
    const { c, events } = start(t, () => fresh(3600));
    const ws = await authed();
    ws.serve([disconnect(reason)]);
    ws.serverClose(1001);
    assert.deepEqual(of(events, "disconnect"), [{ reason, reconnectMs: 0 }]);
    assert.deepEqual(of(events, "kicked"), [{ reason }]);
    assert.equal(of(events, "close").at(-1).reconnect, false);
    assert.equal(c.state, State.IDLE);
    assert.equal(of(events, "error").length, 0, "a kick is not an error");
    await sleep(20);
    assert.equal(FakeWebSocket.instances.length, 1, "no reconnect");
    // connect() starts again; the next socket is not a kicked one.
    c.connect();
    await nextSocket(1);
    const ws2 = await authed(1);
    ws2.serverClose(1006);
    assert.equal(of(events, "close").at(-1).reconnect, true);
    c.close();
  }

  const { c, events } = start(t, () => fresh(3600), { reconnectAfterKick: true });
  const ws = await authed();
  ws.serve([disconnect("logged out elsewhere")]);
  ws.serverClose(1001);
  assert.deepEqual(of(events, "kicked"), [{ reason: "logged out elsewhere" }]);
  assert.equal(of(events, "close").at(-1).reconnect, true);
  await nextSocket(1);
  await authed(1);
  assert.equal(c.state, State.OPEN);
});

test("Client: the node's own op 6 reasons are not kicks: it reconnects", async (t) => {
  for (const [reason, hint] of [
    ["replaced", 0],
    ["slow consumer", 0],
    ["shutdown", 20],
    ["a drain with another text", 20],
  ]) {
    const { c, events } = start(t, () => fresh(3600));
    const ws = await authed();
    ws.serve([disconnect(reason, hint)]);
    ws.serverClose(1001);
    assert.equal(of(events, "kicked").length, 0, reason);
    assert.equal(of(events, "close").at(-1).reconnect, true, reason);
    await nextSocket(1);
    await authed(1);
    assert.equal(c.state, State.OPEN, reason);
    c.close();
  }
});

test("isKick takes the node's kick flag over the reason's text", () => {
  assert.equal(isKick("shutdown", 0, true), true);
  assert.equal(isKick("banned", 0, false), false);
  assert.equal(isKick("banned", 0), true); // a node that does not mark kicks
  assert.equal(isKick("slow_consumer", 0), false);
});
