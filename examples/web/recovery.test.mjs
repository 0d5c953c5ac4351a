// Unit tests of recovery in imcloud.js (ops 24 and 25, recovery.js), run with
// Node's built-in runner: node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeWebSocket, sleep, tick } from "./fake-websocket.mjs";
import {
  Client,
  MAX_HELD,
  MAX_POSITIONS,
  Message,
  Op,
  ProtocolError,
  State,
  authBody,
  decodePushAt,
  decodeFrames,
  encodeBatch,
  encodeFrame,
  encodePushAt,
  parseRecovery,
  text,
} from "./imcloud.js";

const hex = (u8) => Buffer.from(u8).toString("hex");

test("op 24 body has the exact bytes of docs/protocol-recovery.md and round-trips", () => {
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

test("the frames of docs/protocol-recovery.md's examples, byte for byte", () => {
  // Op 24: push 1000 "hi" at offset 120 of stream u:42, epoch a1b2, 40 bytes.
  const pushAt = encodeFrame({ op: Op.PUSH_AT, ver: 2, seq: 0, body: encodePushAt({ op: 1000, offset: 120, stream: "u:42", epoch: "a1b2", body: "hi" }) });
  const wantPushAt = "00 00 00 28 00 10 00 02 00 00 00 18 00 00 00 00 00 00 03 e8 00 00 00 00 00 00 00 78 04 75 3a 34 32 04 61 31 62 32 68 69";
  assert.equal(hex(pushAt), wantPushAt.replaceAll(" ", ""));
  // Op 25 after that push was replayed.
  const recovery = Buffer.from(
    "0000006900100002000000190000000" +
      "07b2273747265616d73223a5b7b227374" +
      "7265616d223a22753a3432222c226570" +
      "6f6368223a2261316232222c226f6666" +
      "736574223a3132302c227265636f7665" +
      "726564223a747275652c227265706c61" +
      "796564223a317d5d7d",
    "hex",
  );
  const [f] = decodeFrames(new Uint8Array(recovery));
  assert.equal(f.op, Op.RECOVERY);
  assert.deepEqual(parseRecovery(f.body), [{ stream: "u:42", epoch: "a1b2", offset: 120, recovered: true, reason: "", replayed: 1 }]);
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
  assert.deepEqual(c.positions(), { "r:live://9": { epoch: "x", offset: 1 }, "u:42": { epoch: "new", offset: 3 }, "r:live://1": { epoch: "ra", offset: 9 } });

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
  assert.deepEqual(Object.keys(c.positions()), ["r:live://9", "r:live://1"]);
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

test("Client: ChangeRoom: the new room's replay and op 25 follow the reply; going back carries the room's position", async (t) => {
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
  assert.equal(text(cr.body), "live://2", "no position for that room: a bare room key, as goim's");
  ws.serve([
    pushAt({ op: 1000, offset: 6, stream: "r:live://1", epoch: "ra", body: "old room, in flight" }),
    { op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: cr.body },
    pushAt({ op: 1000, offset: 41, stream: "r:live://2", epoch: "rb", body: "new room, replayed" }),
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 41, recovered: true, replayed: 1 }]),
    pushAt({ op: 1000, offset: 2, stream: "u:42", epoch: "ua", body: "user, live" }),
  ]);
  assert.equal(await moved, "live://2");
  assert.deepEqual(c.positions(), { "r:live://1": { epoch: "ra", offset: 6 }, "r:live://2": { epoch: "rb", offset: 41 }, "u:42": { epoch: "ua", offset: 2 } });
  assert.equal(c.lastRecovery.resumed, false);
  assert.deepEqual(c.lastRecovery.streams.map((s) => s.stream), ["r:live://2"]);

  // Back to room 1: the ChangeRoom carries its position; what was pushed
  // there meanwhile is replayed.
  const back = c.changeRoom("live://1");
  const cr2 = ws.sent.at(-1);
  assert.deepEqual(JSON.parse(text(cr2.body)), { room_id: "live://1", position: { epoch: "ra", offset: 6 } });
  ws.serve([
    { op: Op.CHANGE_ROOM_REPLY, seq: cr2.seq, body: cr2.body },
    pushAt({ op: 1000, offset: 9, stream: "r:live://1", epoch: "ra", body: "room 1, missed while away" }),
    recovery([{ stream: "r:live://1", epoch: "ra", offset: 9, recovered: true, replayed: 1 }]),
    pushAt({ op: 1000, offset: 10, stream: "r:live://1", epoch: "ra", body: "room 1, live" }),
  ]);
  assert.equal(await back, "live://1");
  assert.equal(c.lastRecovery.resumed, true);
  assert.equal(c.lastRecovery.replayed, 1);
  assert.deepEqual(
    of(events, "message").map((m) => [m.text(), m.replayed]),
    [
      ["old room, in flight", false],
      ["new room, replayed", true],
      ["user, live", false],
      ["room 1, missed while away", true],
      ["room 1, live", false],
    ],
  );

  // Leaving the room: a bare empty key, and no op 25 to wait for.
  const left = c.changeRoom("");
  const cr3 = ws.sent.at(-1);
  assert.equal(text(cr3.body), "");
  ws.serve([{ op: Op.CHANGE_ROOM_REPLY, seq: cr3.seq, body: cr3.body }, pushAt({ op: 1000, offset: 3, stream: "u:42", epoch: "ua", body: "user, live again" })]);
  await left;
  assert.equal(of(events, "message").at(-1).replayed, false);
});

test("Client: before the server has shown it recovers, ChangeRoom sends the bare room key", async (t) => {
  const { c, ws } = await recoverClient(t, { positions: { "r:live://5": { epoch: "e", offset: 3 } } });
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq }]); // an older server: no op 25
  const moved = c.changeRoom("live://5");
  const cr = ws.sent.at(-1);
  assert.equal(text(cr.body), "live://5");
  ws.serve([{ op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: cr.body }]);
  await moved;
});

test("Client: at most MAX_HELD positions, the rooms left longest ago dropped first", async (t) => {
  const positions = {};
  for (let i = 1; i <= MAX_HELD + 6; i++) positions[`r:live://${i}`] = { epoch: "e", offset: i };
  const { c, ws } = await recoverClient(t, { positions }); // in room live://1
  const held = Object.keys(c.positions());
  assert.equal(held.length, MAX_HELD);
  assert.ok(held.includes("r:live://1"), "the room it is in stays");
  assert.ok(!held.includes("r:live://2") && !held.includes("r:live://7") && held.includes("r:live://8"), held.slice(0, 3).join(","));
  assert.deepEqual(JSON.parse(text(ws.sent[0].body)).positions, { "r:live://1": { epoch: "e", offset: 1 } });
});

test("Client: an op 24 carrying an op 9 batch is one push per frame, all at its offset", async (t) => {
  const { c, ws, events } = await recoverClient(t);
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq }, recovery([{ stream: "r:live://1", epoch: "ra", offset: 5, recovered: true }])]);
  const batchBody = (frames) => decodeFrames(encodeBatch(frames))[0].body;
  ws.serve([
    encodeBatch([
      pushAt({ op: Op.RAW, offset: 8, stream: "r:live://1", epoch: "ra", body: batchBody([{ op: 1000, body: "a" }, { op: 1001, body: "b" }]) }),
      // Malformed: a batch cut short, and a batch holding an op 9.
      pushAt({ op: Op.RAW, offset: 9, stream: "r:live://1", epoch: "ra", body: batchBody([{ op: 1000, body: "c" }]).subarray(0, 16) }),
      pushAt({ op: Op.RAW, offset: 10, stream: "r:live://1", epoch: "ra", body: batchBody([{ op: Op.RAW, body: encodeFrame({ op: 1000, body: "d" }) }]) }),
    ]),
  ]);
  assert.deepEqual(
    of(events, "message").map((m) => [m.op, m.text(), m.stream, m.offset]),
    [
      [1000, "a", "r:live://1", 8],
      [1001, "b", "r:live://1", 8],
    ],
  );
  assert.deepEqual(
    of(events, "error").map((d) => d.error.message),
    ["imcloud: truncated frame at offset 0: pack length 17, 16 bytes left", "imcloud: op 9 nested in a batch"],
  );
  assert.deepEqual(c.positions(), { "r:live://1": { epoch: "ra", offset: 8 } }, "the malformed batches moved no position");
  assert.equal(c.state, State.OPEN);
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

test("Client: offset -1, an empty stream's top, is a position like any other", async (t) => {
  const { c, ws } = await recoverClient(t, { positions: { "u:42": { epoch: "ua", offset: -1 } } });
  assert.deepEqual(JSON.parse(text(ws.sent[0].body)).positions, { "u:42": { epoch: "ua", offset: -1 } });
  ws.serve([
    { op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq },
    recovery([
      { stream: "u:42", epoch: "ua", offset: -1, recovered: true, replayed: 0 },
      { stream: "r:live://1", epoch: "ra", offset: -1, recovered: true, replayed: 0 },
    ]),
  ]);
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: -1 }, "r:live://1": { epoch: "ra", offset: -1 } });
  ws.serve([pushAt({ op: 1000, offset: 0, stream: "r:live://1", epoch: "ra", body: "first push of the room" })]);
  assert.deepEqual(c.positions()["r:live://1"], { epoch: "ra", offset: 0 });
});
