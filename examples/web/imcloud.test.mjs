// Unit tests of imcloud.js, run with Node's built-in runner: node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AuthError,
  Client,
  DEFAULT_ACCEPTS,
  HEADER_LEN,
  MAX_POSITIONS,
  Message,
  Op,
  ProtocolError,
  State,
  VER_EXTENSIONS,
  authBody,
  backoffDelay,
  decodeFrames,
  decodeMessage,
  decodePushAt,
  encodeBatch,
  encodeFrame,
  encodePushAt,
  heartbeatOnline,
  parseOps,
  parseRecovery,
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

// FakeWebSocket is a WebSocket stand-in: it records what the client sends and
// lets the test play the server.
class FakeWebSocket {
  static instances = [];
  static unreachable = 0; // this many next sockets fail to open, as when nothing listens
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
    const open = FakeWebSocket.unreachable-- <= 0;
    queueMicrotask(() => {
      if (!open) {
        this.serverClose(1006);
        return;
      }
      this.readyState = 1;
      this.onopen?.({});
    });
  }
  send(data) {
    this.sent.push(...decodeFrames(data));
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason, wasClean: true }));
  }
  serve(frames) {
    const parts = frames.map((f) => (f instanceof Uint8Array ? f : encodeFrame(f)));
    this.onmessage?.({ data: new Uint8Array(Buffer.concat(parts)).buffer });
  }
  serverClose(code = 1001) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "", wasClean: true });
  }
}

const tick = () => new Promise((r) => setTimeout(r, 0));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// ---- recovery (ops 24 and 25) ----

test("op 24 body has the exact bytes of docs/protocol.md and round-trips", () => {
  const body = encodePushAt({ op: 1000, offset: 120, stream: "u:42", epoch: "a1b2", body: "hi" });
  // op 1000 | offset 120 | 4 "u:42" | 4 "a1b2" | "hi"
  assert.equal(hex(body), "000003e8" + "0000000000000078" + "04" + Buffer.from("u:42").toString("hex") + "04" + Buffer.from("a1b2").toString("hex") + Buffer.from("hi").toString("hex"));
  const p = decodePushAt(body);
  assert.deepEqual({ ...p, body: text(p.body) }, { op: 1000, offset: 120, stream: "u:42", epoch: "a1b2", body: "hi" });

  const cases = [
    { op: 1001, offset: 0, stream: "r:live://1000", epoch: "e", body: "" },
    { op: -5, offset: 2 ** 32 + 7, stream: "r:" + "x".repeat(253), epoch: "é".repeat(127), body: new Uint8Array([0, 1, 2]) },
    { op: 2147483647, offset: Number.MAX_SAFE_INTEGER, stream: "u:1", epoch: "0123456789abcdef", body: "{}" },
  ];
  for (const c of cases) {
    const got = decodePushAt(encodePushAt(c));
    assert.equal(got.op, c.op);
    assert.equal(got.offset, c.offset);
    assert.equal(got.stream, c.stream);
    assert.equal(got.epoch, c.epoch);
    assert.deepEqual(Array.from(got.body), Array.from(new Uint8Array(Buffer.from(typeof c.body === "string" ? c.body : c.body))));
  }
  assert.throws(() => encodePushAt({ op: 1000, offset: 1, stream: "", epoch: "e" }), TypeError);
  assert.throws(() => encodePushAt({ op: 1000, offset: -1, stream: "u:1", epoch: "e" }), TypeError);
});

test("a malformed op 24 body is a ProtocolError, never a crash", () => {
  const good = encodePushAt({ op: 1000, offset: 5, stream: "u:42", epoch: "ep", body: "x" });
  const patched = (i, byte) => {
    const b = good.slice();
    b[i] = byte;
    return b;
  };
  const cases = [
    ["empty", new Uint8Array(0), /0 bytes/],
    ["13 bytes", good.subarray(0, 13), /13 bytes/],
    ["stream runs past the body", good.subarray(0, 16), /stream name of 4 bytes runs past/],
    ["stream length 255", patched(12, 255), /stream name of 255 bytes runs past/],
    ["epoch runs past the body", good.subarray(0, 19), /epoch of 2 bytes runs past/],
    ["epoch length 200", patched(17, 200), /epoch of 200 bytes runs past/],
    ["empty stream", patched(12, 0), /stream name is empty/],
    ["empty epoch", patched(17, 0), /epoch is empty/],
    ["negative offset", patched(4, 0x80), /negative/],
    ["offset past 2^53", patched(5, 0x20), /past 2\^53/],
  ];
  for (const [name, body, re] of cases) {
    assert.throws(() => decodePushAt(body), (err) => err instanceof ProtocolError && re.test(err.message), name);
  }
});

test("op 25 body: parsed, defaults filled, malformed ones refused", () => {
  const body = JSON.stringify({
    streams: [
      { stream: "u:42", epoch: "a1b2", offset: 135, recovered: true, replayed: 15 },
      { stream: "r:live://1", epoch: "c9", offset: 140, recovered: false, reason: "epoch_changed", replayed: 0 },
      { stream: "r:live://2", recovered: false, reason: "not_followed" },
    ],
  });
  assert.deepEqual(parseRecovery(body), [
    { stream: "u:42", epoch: "a1b2", offset: 135, recovered: true, reason: "", replayed: 15 },
    { stream: "r:live://1", epoch: "c9", offset: 140, recovered: false, reason: "epoch_changed", replayed: 0 },
    { stream: "r:live://2", epoch: "", offset: 0, recovered: false, reason: "not_followed", replayed: 0 },
  ]);
  assert.deepEqual(parseRecovery('{"streams":[]}'), []);
  const bad = [
    ["not JSON", "{", /not JSON/],
    ["no streams", "{}", /no streams array/],
    ["null", "null", /no streams array/],
    ["entry not an object", '{"streams":[1]}', /not an object/],
    ["no stream name", '{"streams":[{"recovered":true}]}', /no stream name/],
    ["recovered a string", '{"streams":[{"stream":"u:1","recovered":"yes"}]}', /recovered is not a boolean/],
    ["offset a string", '{"streams":[{"stream":"u:1","recovered":true,"offset":"7"}]}', /offset is not an integer/],
    ["offset fractional", '{"streams":[{"stream":"u:1","recovered":true,"offset":1.5}]}', /offset is not an integer/],
    ["epoch a number", '{"streams":[{"stream":"u:1","recovered":true,"epoch":3}]}', /epoch is not a string/],
    ["negative replayed", '{"streams":[{"stream":"u:1","recovered":true,"replayed":-1}]}', /replayed is not a count/],
  ];
  for (const [name, b, re] of bad) {
    assert.throws(() => parseRecovery(b), (err) => err instanceof ProtocolError && re.test(err.message), name);
  }
});

test("auth body with recover: the flag, and positions when there are any", () => {
  const base = { mid: 42, roomId: "live://1", accepts: [1000] };
  assert.equal(authBody({ ...base, recover: false, positions: { "u:42": { epoch: "a", offset: 1 } } }), '{"mid":42,"key":"","room_id":"live://1","platform":"web","accepts":[1000]}');
  assert.equal(authBody({ ...base, recover: true }), '{"mid":42,"key":"","room_id":"live://1","platform":"web","accepts":[1000],"recover":true}');
  assert.equal(authBody({ ...base, recover: true, positions: {} }), '{"mid":42,"key":"","room_id":"live://1","platform":"web","accepts":[1000],"recover":true}');
  assert.equal(
    authBody({ ...base, recover: true, positions: { "u:42": { epoch: "a1b2", offset: 120 }, "r:live://1": { epoch: "c3", offset: 98 } } }),
    '{"mid":42,"key":"","room_id":"live://1","platform":"web","accepts":[1000],"recover":true,"positions":{"u:42":{"epoch":"a1b2","offset":120},"r:live://1":{"epoch":"c3","offset":98}}}',
  );
});

// pushAt is an op 24 frame as the server sends it.
const pushAt = (push) => ({ op: Op.PUSH_AT, ver: 2, body: encodePushAt(push) });
const recovery = (streams) => ({ op: Op.RECOVERY, ver: 2, body: JSON.stringify({ streams }) });

// recoverClient connects a Client to a FakeWebSocket and returns both, with
// the client's events as [type, detail] in events.
async function recoverClient(t, options = {}) {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { mid: 42, roomId: "live://1", WebSocket: FakeWebSocket, backoff: { minMs: 1, maxMs: 2 }, ...options });
  t.after(() => c.close());
  const events = [];
  for (const type of ["auth", "message", "recovery", "error", "close"]) c.on(type, (d) => events.push([type, d]));
  c.connect();
  await tick();
  return { c, ws: FakeWebSocket.instances[0], events };
}
const of = (events, type) => events.filter(([t]) => t === type).map(([, d]) => d);

test("Client: recover is on by default; op 24 alone and in op 9 are pushes with their place; positions go out on reconnect", async (t) => {
  const { c, ws, events } = await recoverClient(t);
  assert.equal(c.recover, true);
  const auth = JSON.parse(text(ws.sent[0].body));
  assert.equal(auth.recover, true);
  assert.equal(auth.positions, undefined, "nothing to send at the first connect");
  assert.deepEqual(c.positions(), {});

  // First connect: op 8, then op 25 with the streams' current positions.
  ws.serve([
    { op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq, body: JSON.stringify({ mid: 42, key: "k1", room_id: "live://1", heartbeat: 30 }) },
    recovery([
      { stream: "u:42", epoch: "ua", offset: 10, recovered: true, replayed: 0 },
      { stream: "r:live://1", epoch: "ra", offset: 98, recovered: true, replayed: 0 },
    ]),
  ]);
  const [first] = of(events, "recovery");
  assert.equal(first.recovered, true);
  assert.equal(first.resumed, false, "a first connect resumes nothing");
  assert.equal(first.replayed, 0);
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 10 }, "r:live://1": { epoch: "ra", offset: 98 } });
  assert.equal(c.lastRecovery, first);

  // Live: an op 24 alone, then a batch mixing op 24 and a plain push.
  ws.serve([pushAt({ op: 1000, offset: 12, stream: "u:42", epoch: "ua", body: "to me" })]);
  ws.serve([
    encodeBatch([
      pushAt({ op: 1001, offset: 99, stream: "r:live://1", epoch: "ra", body: '{"n":1}' }),
      { op: 1002, body: "broadcast" },
      pushAt({ op: 1001, offset: 104, stream: "r:live://1", epoch: "ra", body: '{"n":2}' }),
    ]),
  ]);
  const msgs = of(events, "message");
  assert.deepEqual(
    msgs.map((m) => [m.op, m.stream, m.epoch, m.offset, m.replayed, m.text()]),
    [
      [1000, "u:42", "ua", 12, false, "to me"],
      [1001, "r:live://1", "ra", 99, false, '{"n":1}'],
      [1002, null, null, null, false, "broadcast"],
      [1001, "r:live://1", "ra", 104, false, '{"n":2}'],
    ],
  );
  assert.ok(msgs[0] instanceof Message);
  assert.deepEqual(msgs[3].json(), { n: 2 });
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 12 }, "r:live://1": { epoch: "ra", offset: 104 } });

  // The connection drops; the reconnect's auth carries the positions.
  ws.serverClose(1006);
  while (FakeWebSocket.instances.length < 2) await sleep(1);
  await tick();
  const ws2 = FakeWebSocket.instances[1];
  const auth2 = JSON.parse(text(ws2.sent[0].body));
  assert.equal(auth2.recover, true);
  assert.deepEqual(auth2.positions, { "u:42": { epoch: "ua", offset: 12 }, "r:live://1": { epoch: "ra", offset: 104 } });

  // The server replays what was missed, then op 25, then live pushes.
  ws2.serve([
    { op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq, body: JSON.stringify({ mid: 42, key: "k1", room_id: "live://1", heartbeat: 30 }) },
    encodeBatch([
      pushAt({ op: 1000, offset: 15, stream: "u:42", epoch: "ua", body: "missed 1" }),
      pushAt({ op: 1001, offset: 110, stream: "r:live://1", epoch: "ra", body: "missed 2" }),
    ]),
    recovery([
      { stream: "u:42", epoch: "ua", offset: 15, recovered: true, replayed: 1 },
      { stream: "r:live://1", epoch: "ra", offset: 110, recovered: true, replayed: 1 },
    ]),
    pushAt({ op: 1000, offset: 16, stream: "u:42", epoch: "ua", body: "live again" }),
  ]);
  const second = c.lastRecovery;
  assert.equal(second.resumed, true);
  assert.equal(second.recovered, true);
  assert.equal(second.replayed, 2);
  assert.deepEqual(second.streams.map((s) => [s.stream, s.resumed, s.replayed]), [["u:42", true, 1], ["r:live://1", true, 1]]);
  assert.deepEqual(
    of(events, "message").slice(4).map((m) => [m.text(), m.replayed]),
    [["missed 1", true], ["missed 2", true], ["live again", false]],
  );
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 16 }, "r:live://1": { epoch: "ra", offset: 110 } });
  assert.equal(of(events, "error").length, 0);
});

test("Client: recovered false with a reason; a new epoch replaces the position; never moves back within one", async (t) => {
  const positions = { "u:42": { epoch: "old", offset: 500 }, "r:live://1": { epoch: "ra", offset: 7 }, "r:live://9": { epoch: "x", offset: 1 } };
  const { c, ws, events } = await recoverClient(t, { positions });
  // Only the streams the client follows go out: its user's and its room's.
  assert.deepEqual(JSON.parse(text(ws.sent[0].body)).positions, { "u:42": { epoch: "old", offset: 500 }, "r:live://1": { epoch: "ra", offset: 7 } });
  ws.serve([
    { op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq },
    pushAt({ op: 1001, offset: 9, stream: "r:live://1", epoch: "ra", body: "still held" }),
    recovery([
      { stream: "u:42", epoch: "new", offset: 3, recovered: false, reason: "epoch_changed", replayed: 0 },
      { stream: "r:live://1", epoch: "ra", offset: 9, recovered: false, reason: "trimmed", replayed: 1 },
    ]),
  ]);
  const r = c.lastRecovery;
  assert.equal(r.recovered, false);
  assert.equal(r.resumed, true);
  assert.deepEqual(r.streams.map((s) => [s.stream, s.recovered, s.reason]), [["u:42", false, "epoch_changed"], ["r:live://1", false, "trimmed"]]);
  assert.deepEqual(c.positions(), { "u:42": { epoch: "new", offset: 3 }, "r:live://1": { epoch: "ra", offset: 9 } });

  // A push at or below the position (the server's buffered live pushes on a
  // first connect may be) is delivered but does not move it back.
  ws.serve([pushAt({ op: 1000, offset: 2, stream: "u:42", epoch: "new", body: "older" })]);
  assert.equal(c.positions()["u:42"].offset, 3);
  // A push of another epoch (the stream restarted) replaces the position.
  ws.serve([pushAt({ op: 1000, offset: 1, stream: "u:42", epoch: "newer", body: "restart" })]);
  assert.deepEqual(c.positions()["u:42"], { epoch: "newer", offset: 1 });
  assert.deepEqual(of(events, "message").map((m) => m.text()), ["still held", "older", "restart"]);

  // not_followed: the server will not read that stream; its position goes.
  ws.serve([recovery([{ stream: "u:42", recovered: false, reason: "not_followed" }])]);
  assert.deepEqual(Object.keys(c.positions()), ["r:live://1"]);
  assert.equal(of(events, "error").length, 0);
});

test("Client: a malformed op 24 or op 25 is an error event and skipped; the connection stays", async (t) => {
  const { c, ws, events } = await recoverClient(t);
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq }, recovery([{ stream: "u:42", epoch: "ua", offset: 1, recovered: true }])]);
  const truncated = encodePushAt({ op: 1000, offset: 50, stream: "u:42", epoch: "ua", body: "x" }).subarray(0, 16);
  ws.serve([
    encodeBatch([
      pushAt({ op: 1000, offset: 2, stream: "u:42", epoch: "ua", body: "before" }),
      { op: Op.PUSH_AT, ver: 2, body: truncated },
      pushAt({ op: 1000, offset: 3, stream: "u:42", epoch: "ua", body: "after" }),
    ]),
  ]);
  ws.serve([{ op: Op.RECOVERY, ver: 2, body: '{"streams":[{"stream":"u:42","recovered":"maybe","offset":999}]}' }]);
  ws.serve([{ op: Op.RECOVERY, ver: 2, body: "not json" }]);
  const errors = of(events, "error").map((d) => d.error);
  assert.equal(errors.length, 3);
  assert.ok(errors.every((e) => e instanceof ProtocolError), errors.map((e) => e.message).join("; "));
  assert.match(errors[0].message, /op 24/);
  assert.match(errors[1].message, /op 25/);
  assert.deepEqual(of(events, "message").map((m) => m.text()), ["before", "after"]);
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 3 } }, "the malformed frames moved no position");
  assert.equal(c.lastRecovery.streams[0].offset, 1);
  await sleep(10);
  assert.equal(c.state, State.OPEN);
  assert.equal(FakeWebSocket.instances.length, 1, "no reconnect");
  assert.equal(of(events, "close").length, 0);
});

test("Client: ChangeRoom forgets the old room's position; the new room's replay and op 25 follow the reply", async (t) => {
  const { c, ws, events } = await recoverClient(t);
  ws.serve([
    { op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq },
    recovery([
      { stream: "u:42", epoch: "ua", offset: 1, recovered: true },
      { stream: "r:live://1", epoch: "ra", offset: 5, recovered: true },
    ]),
  ]);
  const moved = c.changeRoom("live://2");
  const cr = ws.sent.at(-1);
  assert.equal(text(cr.body), "live://2", "a bare room key, as goim's");
  assert.deepEqual(Object.keys(c.positions()), ["u:42"]);
  ws.serve([
    pushAt({ op: 1000, offset: 6, stream: "r:live://1", epoch: "ra", body: "old room, in flight" }),
    { op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: cr.body },
    pushAt({ op: 1000, offset: 2, stream: "u:42", epoch: "ua", body: "user, live" }),
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 40, recovered: true, replayed: 0 }]),
  ]);
  assert.equal(await moved, "live://2");
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 2 }, "r:live://2": { epoch: "rb", offset: 40 } });
  assert.deepEqual(of(events, "message").map((m) => [m.text(), m.replayed]), [["old room, in flight", false], ["user, live", false]]);
  assert.equal(c.lastRecovery.resumed, false);
  assert.deepEqual(c.lastRecovery.streams.map((s) => s.stream), ["r:live://2"]);
});

test("Client: recover false sends no recovery fields", async (t) => {
  const { c, ws } = await recoverClient(t, { recover: false, positions: { "u:42": { epoch: "a", offset: 1 } } });
  assert.equal(c.recover, false);
  const auth = JSON.parse(text(ws.sent[0].body));
  assert.equal("recover" in auth, false);
  assert.equal("positions" in auth, false);
});

test("Client: an auth carries at most MAX_POSITIONS positions", async (t) => {
  const positions = {};
  for (let i = 1; i <= 20; i++) positions[`u:${i}`] = { epoch: "e", offset: i };
  const { ws } = await recoverClient(t, { positions });
  assert.equal(Object.keys(JSON.parse(text(ws.sent[0].body)).positions).length, MAX_POSITIONS);
});
