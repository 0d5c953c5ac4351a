// Unit tests of imcloud.js, run with Node's built-in runner: node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeWebSocket, sleep, tick } from "./fake-websocket.mjs";
import {
  AuthError,
  Client,
  DEFAULT_ACCEPTS,
  HEADER_LEN,
  Message,
  Op,
  ProtocolError,
  State,
  VER_EXTENSIONS,
  authBody,
  backoffDelay,
  decodeFrames,
  decodeMessage,
  encodeBatch,
  encodeFrame,
  heartbeatOnline,
  parseOps,
  text,
  unbatch,
} from "./imcloud.js";

const hex = (u8) => Buffer.from(u8).toString("hex");

test("encodeFrame/decodeFrames round trip", () => {
  const cases = [
    { name: "empty body", frame: { op: Op.HEARTBEAT, ver: 1, seq: 7 } },
    { name: "text body", frame: { op: 1000, ver: 1, seq: 0, body: "héllo, 世界" } },
    { name: "binary body", frame: { op: 1001, ver: 2, seq: 2147483647, body: new Uint8Array([0, 255, 1, 254]) } },
    { name: "negative fields", frame: { op: -1, ver: -2, seq: -3, body: "x" } },
    { name: "4 KiB body", frame: { op: 1002, body: new Uint8Array(4096).fill(0xab) } },
  ];
  for (const { name, frame } of cases) {
    const wire = encodeFrame(frame);
    const body = frame.body === undefined ? new Uint8Array(0) : typeof frame.body === "string" ? new TextEncoder().encode(frame.body) : frame.body;
    assert.equal(wire.length, HEADER_LEN + body.length, name);
    const got = decodeFrames(wire);
    assert.equal(got.length, 1, name);
    assert.equal(got[0].op, frame.op, name);
    assert.equal(got[0].ver, frame.ver ?? 1, name);
    assert.equal(got[0].seq, frame.seq ?? 0, name);
    assert.deepEqual(Array.from(got[0].body), Array.from(body), name);
  }
});

test("decodeFrames accepts an ArrayBuffer and a view at an offset", () => {
  const wire = encodeFrame({ op: 1000, body: "abc" });
  const padded = new Uint8Array(wire.length + 5);
  padded.set(wire, 3);
  const view = padded.subarray(3, 3 + wire.length);
  assert.equal(text(decodeFrames(view)[0].body), "abc");
  assert.equal(text(decodeFrames(wire.slice().buffer)[0].body), "abc");
});

test("auth frame has the exact bytes", () => {
  const body = authBody({ mid: 123, roomId: "live://1000", accepts: [1000, 1001], token: "t" });
  assert.equal(body, '{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001],"token":"t"}');
  const wire = encodeFrame({ op: Op.AUTH, ver: VER_EXTENSIONS, seq: 1, body });
  const n = 16 + body.length; // 16 + 95 = 111 = 0x6f
  assert.equal(n, 0x6f);
  const header = "0000006f" + "0010" + "0002" + "00000007" + "00000001";
  assert.equal(hex(wire), header + Buffer.from(body).toString("hex"));
  // Without a token the field is left out (goim clients never send it).
  assert.equal(authBody({ mid: 5 }), '{"mid":5,"key":"","room_id":"","platform":"web","accepts":[]}');
});

test("a batch of several frames, back to back and inside op 9", () => {
  const pushes = [
    { op: 1000, body: "one" },
    { op: 1001, body: "" },
    { op: 1002, body: new Uint8Array([1, 2, 3]) },
  ];
  const batch = encodeBatch(pushes);
  const outer = decodeFrames(batch);
  assert.equal(outer.length, 1);
  assert.equal(outer[0].op, Op.RAW);
  const inner = unbatch(outer);
  assert.deepEqual(inner.map((f) => f.op), [1000, 1001, 1002]);
  assert.deepEqual(inner.map((f) => f.body.length), [3, 0, 3]);
  assert.equal(text(inner[0].body), "one");

  // A WebSocket message holding a plain frame, a batch and another frame.
  const hb = encodeFrame({ op: Op.HEARTBEAT_REPLY, seq: 9, body: new Uint8Array([0, 0, 1, 0]) });
  const msg = Buffer.concat([hb, batch, encodeFrame({ op: 1003, body: "last" })]);
  const flat = decodeMessage(new Uint8Array(msg));
  assert.deepEqual(flat.map((f) => f.op), [Op.HEARTBEAT_REPLY, 1000, 1001, 1002, 1003]);
  assert.equal(heartbeatOnline(flat[0].body), 256);

  // An empty op 9 body is no frames, not an error.
  assert.deepEqual(decodeMessage(encodeFrame({ op: Op.RAW })), []);
});

test("a text WebSocket message is read like a binary one", () => {
  // A frame whose bytes are all below 0x80 survives a text frame unchanged.
  const wire = encodeFrame({ op: 0x31313131, ver: 0x3131, seq: 0x31313131, body: "hi" });
  assert.ok(wire.every((b) => b < 0x80));
  const str = String.fromCharCode(...wire);
  const frames = decodeMessage(str);
  assert.equal(frames.length, 1);
  assert.equal(frames[0].op, 0x31313131);
  assert.equal(text(frames[0].body), "hi");
});

test("malformed input is a ProtocolError, never a crash", () => {
  const good = encodeFrame({ op: 1000, body: "hello" });
  const withHeaderLen = (n) => {
    const b = good.slice();
    new DataView(b.buffer).setInt16(4, n);
    return b;
  };
  const withPackLen = (n) => {
    const b = good.slice();
    new DataView(b.buffer).setInt32(0, n);
    return b;
  };
  const cases = [
    ["header cut short", good.subarray(0, 10), /truncated frame header/],
    ["body cut short", good.subarray(0, good.length - 1), /truncated frame/],
    ["second frame cut short", Buffer.concat([good, good.subarray(0, 20)]), /truncated frame at offset 21/],
    ["headerLen 0", withHeaderLen(0), /header length 0/],
    ["headerLen 20", withHeaderLen(20), /header length 20/],
    ["packLen below header", withPackLen(15), /pack length 15/],
    ["negative packLen", withPackLen(-1), /pack length -1/],
    ["packLen past the end", withPackLen(1 << 30), /truncated frame/],
    ["nested op 9", encodeBatch([{ op: Op.RAW, body: good }]), /nested/],
    ["truncated frame inside op 9", encodeFrame({ op: Op.RAW, body: good.subarray(0, 18) }), /truncated/],
  ];
  for (const [name, data, re] of cases) {
    assert.throws(() => decodeMessage(data), (err) => err instanceof ProtocolError && re.test(err.message), name);
  }
});

test("heartbeat reply online count", () => {
  const cases = [
    [[0, 0, 0, 0], 0],
    [[0, 0, 0, 1], 1],
    [[0, 1, 0, 0], 65536],
    [[0x7f, 0xff, 0xff, 0xff], 2147483647],
  ];
  for (const [bytes, want] of cases) assert.equal(heartbeatOnline(new Uint8Array(bytes)), want);
  const frame = decodeFrames(encodeFrame({ op: Op.HEARTBEAT_REPLY, body: new Uint8Array([0, 0, 0x30, 0x39]) }))[0];
  assert.equal(heartbeatOnline(frame.body), 12345);
  assert.throws(() => heartbeatOnline(new Uint8Array(3)), ProtocolError);
  assert.throws(() => heartbeatOnline(new Uint8Array(5)), ProtocolError);
});

test("parseOps", () => {
  assert.deepEqual(parseOps("1000, 1001,,1002"), [1000, 1001, 1002]);
  assert.deepEqual(parseOps([1000, "1001"]), [1000, 1001]);
  assert.deepEqual(parseOps(""), []);
  assert.throws(() => parseOps("1000,abc"), TypeError);
});

test("backoffDelay: exponential, capped, jittered, honours the server hint", () => {
  const opts = { minMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 };
  const lo = () => 0;
  const hi = () => 0.999999;
  assert.equal(backoffDelay(0, opts, null, lo), 50);
  assert.equal(backoffDelay(0, opts, null, hi), 100);
  assert.equal(backoffDelay(2, opts, null, lo), 200);
  assert.equal(backoffDelay(3, opts, null, hi), 800);
  assert.equal(backoffDelay(10, opts, null, hi), 1000); // capped
  assert.equal(backoffDelay(50, opts, null, lo), 500);
  // The hint is a floor, with up to hintJitter*hint (default 0.2) on top,
  // whatever the attempt.
  assert.equal(backoffDelay(0, opts, 3000, lo), 3000);
  assert.equal(backoffDelay(0, opts, 3000, hi), 3600);
  assert.equal(backoffDelay(9, opts, 3000, hi), 3600);
  assert.equal(backoffDelay(0, { hintJitter: 1 }, 3000, hi), 6000);
  // A zero hint falls back to the backoff.
  assert.equal(backoffDelay(0, opts, 0, hi), 100);
});

test("Client: auth, heartbeat, pushes, ChangeRoom, drain and reconnect", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", {
    mid: 42,
    roomId: "live://1000",
    accepts: "1000,1001",
    WebSocket: FakeWebSocket,
    backoff: { minMs: 5, maxMs: 20 },
  });
  t.after(() => c.close());
  const events = [];
  for (const type of ["open", "auth", "message", "online", "room", "disconnect", "close", "error"]) {
    c.on(type, (d) => events.push([type, d]));
  }
  c.connect();
  await tick();
  const ws = FakeWebSocket.instances[0];
  assert.equal(ws.sent.length, 1);
  const auth = ws.sent[0];
  assert.equal(auth.op, Op.AUTH);
  assert.equal(auth.ver, VER_EXTENSIONS, "auth opts into extensions");
  assert.deepEqual(JSON.parse(text(auth.body)), { mid: 42, key: "", room_id: "live://1000", platform: "web", accepts: [1000, 1001], recover: true });
  assert.equal(c.state, State.CONNECTING);

  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: auth.seq, body: JSON.stringify({ mid: 42, key: "k1", room_id: "live://1000", heartbeat: 240 }) }]);
  assert.equal(c.state, State.OPEN);
  assert.equal(c.key, "k1");
  assert.equal(c.heartbeatMs, 240000);
  assert.equal(ws.sent.at(-1).op, Op.HEARTBEAT, "a heartbeat right after auth fetches the online count");

  ws.serve([{ op: Op.HEARTBEAT_REPLY, seq: ws.sent.at(-1).seq, body: new Uint8Array([0, 0, 0, 3]) }]);
  assert.equal(c.online, 3);

  ws.serve([encodeBatch([{ op: 1000, body: '{"sent_ms":1}' }, { op: 1001, body: "b" }])]);
  const msgs = events.filter(([type]) => type === "message").map(([, m]) => m);
  assert.equal(msgs.length, 2);
  assert.ok(msgs[0] instanceof Message);
  assert.deepEqual(msgs[0].json(), { sent_ms: 1 });
  assert.equal(msgs[1].text(), "b");
  assert.equal(msgs[1].json(), undefined);
  assert.ok(msgs[0].receivedAt > 0);

  // ChangeRoom resolves on the server's reply with the same seq.
  const moved = c.changeRoom("live://2000");
  const cr = ws.sent.at(-1);
  assert.equal(cr.op, Op.CHANGE_ROOM);
  assert.equal(text(cr.body), "live://2000");
  ws.serve([{ op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: cr.body }]);
  assert.equal(await moved, "live://2000");
  assert.equal(ws.sent.at(-1).op, Op.HEARTBEAT, "heartbeat after ChangeRoom refreshes the count");

  // Upstream send resolves on the echo of the same op and seq.
  const sent = c.send("up");
  const up = ws.sent.at(-1);
  assert.equal(up.op, Op.SEND_MSG);
  ws.serve([{ op: Op.SEND_MSG, seq: up.seq }]);
  await sent;

  // Drain: op 6 then close; the client waits at least reconnect_ms.
  const closedAt = Date.now();
  ws.serve([{ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "server draining", reconnect_ms: 30 }) }]);
  ws.serverClose(1001);
  const disc = events.find(([type]) => type === "disconnect")[1];
  assert.deepEqual(disc, { reason: "server draining", reconnectMs: 30 });
  const close = events.find(([type]) => type === "close")[1];
  assert.equal(close.reconnect, true);
  assert.ok(close.delayMs >= 30 && close.delayMs <= 36, `delay ${close.delayMs}`);
  assert.equal(c.state, State.WAITING);

  while (FakeWebSocket.instances.length < 2) await sleep(5);
  assert.ok(Date.now() - closedAt >= 25);
  await tick();
  const ws2 = FakeWebSocket.instances[1];
  const auth2 = JSON.parse(text(ws2.sent[0].body));
  assert.equal(auth2.room_id, "live://2000", "the reconnect joins the room the client moved to");
  assert.equal(auth2.key, "k1", "the reconnect keeps the assigned key");
  assert.equal(events.filter(([type]) => type === "error").length, 0);
});

test("Client: a protocol error closes the socket and reconnects with backoff", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, backoff: { minMs: 5, maxMs: 10 } });
  t.after(() => c.close());
  const errors = [];
  c.on("error", (d) => errors.push(d.error));
  const closes = [];
  c.on("close", (d) => closes.push(d));
  c.connect();
  await tick();
  FakeWebSocket.instances[0].onmessage({ data: new Uint8Array([0, 0, 0, 20, 0, 8]).buffer });
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof ProtocolError);
  await tick();
  assert.equal(closes.length, 1);
  assert.equal(closes[0].reconnect, true);
  assert.ok(closes[0].delayMs <= 5);
  while (FakeWebSocket.instances.length < 2) await sleep(2);
});

test("Client: close() stops reconnecting and rejects pending requests", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket });
  t.after(() => c.close());
  c.connect();
  await tick();
  const ws = FakeWebSocket.instances[0];
  ws.serve([{ op: Op.AUTH_REPLY }]); // goim's empty AuthReply body
  assert.equal(c.state, State.OPEN);
  assert.equal(c.heartbeatMs, 30000, "keeps the default without a server interval");
  const pending = c.changeRoom("live://9");
  c.close();
  await assert.rejects(pending, /closed/);
  assert.equal(c.state, State.IDLE);
  await sleep(20);
  assert.equal(FakeWebSocket.instances.length, 1);
});

test("Client: the default accepts are 1000-1002; an explicit empty list takes none", async (t) => {
  FakeWebSocket.instances = [];
  assert.deepEqual([...DEFAULT_ACCEPTS], [1000, 1001, 1002]);
  for (const [accepts, want] of [
    [undefined, [1000, 1001, 1002]],
    [[], []],
    ["1005", [1005]],
  ]) {
    const c = new Client("ws://example/sub", { accepts, WebSocket: FakeWebSocket });
    t.after(() => c.close());
    c.connect();
    await tick();
    assert.deepEqual(JSON.parse(text(FakeWebSocket.instances.at(-1).sent[0].body)).accepts, want, String(accepts));
  }
});

test("Client: no WebSocket implementation is a TypeError at construction, not endless retries", () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = undefined; // Node.js before 22
  try {
    assert.throws(() => new Client("ws://example/sub"), (err) => err instanceof TypeError && /no WebSocket implementation.*options\.WebSocket/.test(err.message));
  } finally {
    globalThis.WebSocket = saved;
  }
  assert.throws(() => new Client("ws://example/sub", { WebSocket: FakeWebSocket, getToken: "not a function" }), TypeError);
});

test("Client: a URL the WebSocket constructor refuses stops the client", async () => {
  let calls = 0;
  class Refusing {
    constructor() {
      calls++;
      throw new SyntaxError("invalid URL");
    }
  }
  const c = new Client("nonsense", { WebSocket: Refusing, backoff: { minMs: 1, maxMs: 1 } });
  const seen = [];
  c.on("error", ({ error }) => seen.push(["error", error.name]));
  c.on("close", ({ reconnect }) => seen.push(["close", reconnect]));
  c.connect();
  await sleep(20);
  assert.equal(calls, 1);
  assert.deepEqual(seen, [["error", "SyntaxError"], ["close", false]]);
  assert.equal(c.state, State.IDLE);
});

// refuse plays a server that closes the socket after the auth frame without
// an AuthReply, after the given frames (an op 6, say).
async function refuse(ws, frames = []) {
  while (ws.sent.length === 0) await tick();
  assert.equal(ws.sent[0].op, Op.AUTH);
  if (frames.length) ws.serve(frames);
  ws.serverClose(1006);
}

test("Client: auth refused maxAuthRefusals times in a row is an AuthError, then no more retries", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const errors = [];
  const closes = [];
  c.on("error", ({ error }) => errors.push(error));
  c.on("close", (d) => closes.push(d));
  c.connect();
  for (let i = 0; i < 3; i++) {
    while (FakeWebSocket.instances.length <= i) await sleep(1);
    await refuse(FakeWebSocket.instances[i], i === 2 ? [{ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "invalid token" }) }] : []);
  }
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof AuthError);
  assert.equal(errors[0].reason, "invalid token");
  assert.equal(errors[0].refusals, 3);
  assert.match(errors[0].message, /refused auth 3 times in a row: invalid token/);
  assert.deepEqual(closes.map((d) => d.reconnect), [true, true, false]);
  assert.equal(c.state, State.IDLE);
  await sleep(20);
  assert.equal(FakeWebSocket.instances.length, 3, "no retry after giving up");

  // connect() starts afresh, and a successful auth resets the count.
  c.connect();
  await refuse(FakeWebSocket.instances[3]);
  while (FakeWebSocket.instances.length < 5) await sleep(1);
  const ws = FakeWebSocket.instances[4];
  await tick();
  ws.serve([{ op: Op.AUTH_REPLY, seq: ws.sent[0].seq }]);
  assert.equal(c.state, State.OPEN);
  assert.equal(errors.length, 1);
});

test("Client: closes before the AuthReply that are not refusals keep retrying", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, maxAuthRefusals: 1, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const errors = [];
  c.on("error", ({ error }) => errors.push(error));
  c.connect();
  // An op 6 with a reconnect hint: come back later (a limit, a drain).
  await refuse(FakeWebSocket.instances[0], [{ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "busy", reconnect_ms: 5 }) }]);
  // A protocol error: this client closed the socket.
  while (FakeWebSocket.instances.length < 2) await sleep(1);
  await tick();
  FakeWebSocket.instances[1].onmessage({ data: new Uint8Array([0, 0, 0, 20, 0, 8]).buffer });
  // Closed before the socket opened (the server is down): no auth was sent.
  FakeWebSocket.unreachable = 1;
  while (FakeWebSocket.instances.length < 4) await sleep(1);
  assert.equal(FakeWebSocket.instances[2].sent.length, 0);
  assert.deepEqual(errors.map((e) => e.name), ["ProtocolError"]);
  assert.notEqual(c.state, State.IDLE);
});

test("Client: an auth refusal with a hint (a revoked token's 1 s) still counts as a refusal", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, maxAuthRefusals: 1, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const errors = [];
  c.on("error", ({ error }) => errors.push(error));
  c.connect();
  await refuse(FakeWebSocket.instances[0], [{ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "auth", reconnect_ms: 1000 }) }]);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof AuthError);
  assert.equal(c.state, State.IDLE);
});

test("Client: reconnect false gives up at the first refusal", async () => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, reconnect: false });
  const errors = [];
  c.on("error", ({ error }) => errors.push(error));
  c.connect();
  await refuse(FakeWebSocket.instances[0]);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof AuthError);
  assert.equal(errors[0].reason, "");
  assert.match(errors[0].message, /refused auth 1 time in a row \(closed before its auth reply\)/);
  assert.equal(c.state, State.IDLE);
});

test("Client: getToken is called before every attempt and may return a Promise", async (t) => {
  FakeWebSocket.instances = [];
  const tokens = ["t1", "t2", "t3"];
  let calls = 0;
  const getToken = async () => {
    calls++;
    await sleep(2);
    if (calls === 2) throw new Error("token service down");
    return tokens.shift();
  };
  const c = new Client("ws://example/sub", { WebSocket: FakeWebSocket, token: "static", getToken, backoff: { minMs: 1, maxMs: 2 } });
  t.after(() => c.close());
  const errors = [];
  c.on("error", ({ error }) => errors.push(error));
  c.connect();
  assert.equal(c.state, State.CONNECTING);
  assert.equal(FakeWebSocket.instances.length, 0, "the socket waits for the token");
  while (FakeWebSocket.instances.length < 1) await sleep(1);
  let ws = FakeWebSocket.instances[0];
  await tick();
  assert.equal(JSON.parse(text(ws.sent[0].body)).token, "t1");
  ws.serve([{ op: Op.AUTH_REPLY, seq: ws.sent[0].seq }]);
  ws.serverClose(1001);

  // The second call fails: an error event, and a retry with backoff.
  while (FakeWebSocket.instances.length < 2) await sleep(1);
  assert.equal(calls, 3);
  assert.equal(errors.length, 1);
  assert.match(errors[0].message, /getToken failed: token service down/);
  ws = FakeWebSocket.instances[1];
  await tick();
  assert.equal(JSON.parse(text(ws.sent[0].body)).token, "t2");

  // close() while getToken is pending: no socket opens afterwards.
  ws.serverClose(1001);
  while (calls < 4) await sleep(1);
  c.close();
  await sleep(20);
  assert.equal(FakeWebSocket.instances.length, 2);
  assert.equal(c.state, State.IDLE);

  // A synchronous getToken works too.
  const d = new Client("ws://example/sub", { WebSocket: FakeWebSocket, getToken: () => "sync" });
  t.after(() => d.close());
  d.connect();
  while (FakeWebSocket.instances.length < 3) await sleep(1);
  await tick();
  assert.equal(JSON.parse(text(FakeWebSocket.instances[2].sent[0].body)).token, "sync");
});
