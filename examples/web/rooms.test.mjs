// Unit tests of rooms in imcloud.js (Join and Leave, ops 18 to 21, and a
// refused ChangeRoom; rooms.js), run with Node's built-in runner: node --test
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeWebSocket, sleep, tick } from "./fake-websocket.mjs";
import { Client, Op, ProtocolError, RoomError, State, changeRoomRefusal, encodePushAt, parseRoomReply, roomBody, text } from "./imcloud.js";

const pushAt = (push) => ({ op: Op.PUSH_AT, ver: 2, body: encodePushAt(push) });
const recovery = (streams) => ({ op: Op.RECOVERY, ver: 2, body: JSON.stringify({ streams }) });
const ok = (room) => JSON.stringify({ room_id: room, ok: true });
const refused = (room, error) => JSON.stringify({ room_id: room, ok: false, error });

// connected returns a Client in room live://1 that a FakeWebSocket accepted,
// the socket, and the client's events as [type, detail].
async function connected(t, options = {}) {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { mid: 42, roomId: "live://1", WebSocket: FakeWebSocket, backoff: { minMs: 1, maxMs: 2 }, ...options });
  t.after(() => c.close());
  const events = [];
  for (const type of ["message", "room", "join", "leave", "refused", "recovery", "error"]) c.on(type, (d) => events.push([type, d]));
  c.connect();
  await tick();
  const ws = FakeWebSocket.instances[0];
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq }]);
  assert.equal(c.state, State.OPEN);
  return { c, ws, events };
}
const of = (events, type) => events.filter(([t]) => t === type).map(([, d]) => d);
const last = (ws, op) => ws.sent.filter((f) => f.op === op).at(-1);

// reconnect drops ws and returns the next socket once its auth went out.
async function reconnect(ws) {
  const n = FakeWebSocket.instances.length;
  ws.serverClose(1006);
  while (FakeWebSocket.instances.length === n) await sleep(1);
  await tick();
  return FakeWebSocket.instances[n];
}

test("room bodies and replies: roomBody, parseRoomReply, changeRoomRefusal", () => {
  assert.equal(roomBody("live://7"), "live://7");
  assert.equal(roomBody("live://7", { epoch: "c3", offset: 98 }), '{"room_id":"live://7","position":{"epoch":"c3","offset":98}}');
  assert.deepEqual(parseRoomReply('{"room_id":"live://7","ok":true}'), { room: "live://7", ok: true, error: "" });
  assert.deepEqual(parseRoomReply('{"room_id":"live://7","ok":false,"error":"forbidden"}'), { room: "live://7", ok: false, error: "forbidden" });
  for (const [name, body, re] of [
    ["not JSON", "live://7", /not JSON/],
    ["no ok", '{"room_id":"live://7"}', /no boolean ok/],
    ["ok a string", '{"room_id":"live://7","ok":"true"}', /no boolean ok/],
    ["room_id a number", '{"room_id":7,"ok":true}', /room_id is not a string/],
    ["refused without a code", '{"room_id":"live://7","ok":false}', /no error code/],
  ]) {
    assert.throws(() => parseRoomReply(body), (err) => err instanceof ProtocolError && re.test(err.message), name);
  }
  // An op 13 echoes a ChangeRoom the server carried out: a room key, or the
  // JSON with a position; a refusal says "ok": false.
  assert.equal(changeRoomRefusal("live://7"), "");
  assert.equal(changeRoomRefusal(""), "");
  assert.equal(changeRoomRefusal('{"room_id":"live://7","position":{"epoch":"e","offset":1}}'), "");
  assert.equal(changeRoomRefusal('{"room_id":"live://7","ok":false,"error":"too_many_rooms"}'), "too_many_rooms");
  assert.equal(changeRoomRefusal('{"room_id":"live://7","ok":false}'), "refused");
  assert.equal(changeRoomRefusal("{not json"), "");
});

test("Client: join and leave resolve on their replies; rooms() lists the rooms", async (t) => {
  const { c, ws, events } = await connected(t, { recover: false });
  assert.deepEqual(c.rooms(), ["live://1"]);

  const joined = c.join("live://2");
  const j = last(ws, Op.JOIN);
  assert.equal(text(j.body), "live://2", "no position: the bare room key");
  assert.deepEqual(c.rooms(), ["live://1", "live://2"], "listed from the call on");
  // A reply to another request (another seq) settles nothing.
  ws.serve([{ op: Op.JOIN_REPLY, seq: j.seq + 100, body: ok("live://2") }]);
  assert.equal(of(events, "join").length, 0);
  ws.serve([{ op: Op.JOIN_REPLY, seq: j.seq, body: ok("live://2") }]);
  assert.equal(await joined, "live://2");
  assert.deepEqual(of(events, "join"), [{ room: "live://2", rejoin: false }]);

  // Pushes of every room arrive as before; a plain push does not say its room.
  ws.serve([{ op: 1000, body: "to some room" }]);
  assert.equal(of(events, "message")[0].room, null);

  const left = c.leave("live://2");
  const l = last(ws, Op.LEAVE);
  assert.equal(text(l.body), "live://2");
  assert.deepEqual(c.rooms(), ["live://1"]);
  ws.serve([{ op: Op.LEAVE_REPLY, seq: l.seq, body: ok("live://2") }]);
  assert.equal(await left, "live://2");
  assert.deepEqual(of(events, "leave"), [{ room: "live://2" }]);
  assert.equal(of(events, "room").length, 0, "the primary room did not change");

  // Leaving the primary room leaves the connection without one.
  const leftPrimary = c.leave("live://1");
  const l2 = last(ws, Op.LEAVE);
  assert.equal(c.roomId, "");
  ws.serve([{ op: Op.LEAVE_REPLY, seq: l2.seq, body: ok("live://1") }]);
  await leftPrimary;
  assert.deepEqual(of(events, "room"), [{ room: "" }]);
  assert.equal(ws.sent.at(-1).op, Op.HEARTBEAT, "a heartbeat refreshes the online count");
  assert.deepEqual(c.rooms(), []);
  const ws2 = await reconnect(ws);
  assert.equal(JSON.parse(text(ws2.sent[0].body)).room_id, "", "the reconnect enters no room");
  assert.equal(of(events, "error").length, 0);
});

test("Client: a refused Join rejects with a RoomError; the room is not kept", async (t) => {
  const { c, ws, events } = await connected(t);
  for (const [room, code] of [
    ["secret://1", "forbidden"],
    ["live://33", "too_many_rooms"],
    ["nope", "invalid_room"],
  ]) {
    const p = c.join(room);
    ws.serve([{ op: Op.JOIN_REPLY, seq: last(ws, Op.JOIN).seq, body: refused(room, code) }]);
    await assert.rejects(p, (err) => err instanceof RoomError && err.op === "join" && err.room === room && err.code === code && err.message.includes(code));
  }
  assert.deepEqual(c.rooms(), ["live://1"]);
  assert.equal(of(events, "join").length, 0);
  assert.equal(of(events, "refused").length, 0, "the promise reported them");

  // A Leave with an invalid room key is refused too.
  const p = c.leave("x".repeat(300));
  ws.serve([{ op: Op.LEAVE_REPLY, seq: last(ws, Op.LEAVE).seq, body: refused("", "invalid_room") }]);
  await assert.rejects(p, (err) => err instanceof RoomError && err.op === "leave" && err.code === "invalid_room");

  // A malformed reply rejects with a ProtocolError.
  const m = c.join("live://5");
  ws.serve([{ op: Op.JOIN_REPLY, seq: last(ws, Op.JOIN).seq, body: "ok" }]);
  await assert.rejects(m, ProtocolError);

  // No re-join of the refused rooms after a reconnect.
  const ws2 = await reconnect(ws);
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  assert.deepEqual(
    ws2.sent.filter((f) => f.op === Op.JOIN).map((f) => text(f.body)),
    ["live://5"],
    "only the room whose reply was malformed (no refusal) is joined again",
  );
});

test("Client: a refused ChangeRoom rejects and leaves the primary room where it was", async (t) => {
  const { c, ws, events } = await connected(t);
  const moved = c.changeRoom("secret://9");
  const cr = last(ws, Op.CHANGE_ROOM);
  assert.equal(text(cr.body), "secret://9");
  ws.serve([{ op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: refused("secret://9", "forbidden") }]);
  await assert.rejects(moved, (err) => err instanceof RoomError && err.op === "changeRoom" && err.room === "secret://9" && err.code === "forbidden");
  assert.equal(c.roomId, "live://1");
  assert.deepEqual(c.rooms(), ["live://1"]);
  assert.equal(of(events, "room").length, 0);
  // The reconnect goes back to the room it was in, not the refused one.
  const ws2 = await reconnect(ws);
  assert.equal(JSON.parse(text(ws2.sent[0].body)).room_id, "live://1");

  // A success echoes the request's body, as goim's.
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  const ok2 = c.changeRoom("live://2");
  const cr2 = last(ws2, Op.CHANGE_ROOM);
  ws2.serve([{ op: Op.CHANGE_ROOM_REPLY, seq: cr2.seq, body: cr2.body }]);
  assert.equal(await ok2, "live://2");
  assert.deepEqual(of(events, "room"), [{ room: "live://2" }]);
});

test("Client: joined rooms are joined again after a reconnect, with their positions; their replay is marked", async (t) => {
  const { c, ws, events } = await connected(t);
  ws.serve([
    recovery([
      { stream: "u:42", epoch: "ua", offset: 1, recovered: true },
      { stream: "r:live://1", epoch: "ra", offset: 5, recovered: true },
    ]),
  ]);
  const joined = c.join("live://2");
  const j = last(ws, Op.JOIN);
  assert.equal(text(j.body), "live://2", "no position held yet: the bare key");
  ws.serve([
    { op: Op.JOIN_REPLY, seq: j.seq, body: ok("live://2") },
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 40, recovered: true, replayed: 0 }]),
    pushAt({ op: 1000, offset: 41, stream: "r:live://2", epoch: "rb", body: "room 2, live" }),
    pushAt({ op: 1000, offset: 6, stream: "r:live://1", epoch: "ra", body: "room 1, live" }),
  ]);
  await joined;
  const live = of(events, "message");
  assert.deepEqual(live.map((m) => [m.text(), m.room, m.replayed]), [["room 2, live", "live://2", false], ["room 1, live", "live://1", false]]);
  assert.deepEqual(c.positions(), { "u:42": { epoch: "ua", offset: 1 }, "r:live://1": { epoch: "ra", offset: 6 }, "r:live://2": { epoch: "rb", offset: 41 } });

  // The reconnect's auth carries the user's and the primary room's
  // positions; the joined room's goes with its Join, sent on the AuthReply.
  const ws2 = await reconnect(ws);
  assert.deepEqual(JSON.parse(text(ws2.sent[0].body)).positions, { "u:42": { epoch: "ua", offset: 1 }, "r:live://1": { epoch: "ra", offset: 6 } });
  assert.equal(ws2.sent.filter((f) => f.op === Op.JOIN).length, 0, "no Join before the AuthReply");
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  const rj = last(ws2, Op.JOIN);
  assert.deepEqual(JSON.parse(text(rj.body)), { room_id: "live://2", position: { epoch: "rb", offset: 41 } });
  ws2.serve([
    recovery([
      { stream: "u:42", epoch: "ua", offset: 1, recovered: true },
      { stream: "r:live://1", epoch: "ra", offset: 6, recovered: true },
    ]),
    { op: Op.JOIN_REPLY, seq: rj.seq, body: ok("live://2") },
    pushAt({ op: 1000, offset: 43, stream: "r:live://2", epoch: "rb", body: "room 2, missed" }),
    pushAt({ op: 1000, offset: 7, stream: "r:live://1", epoch: "ra", body: "room 1, live again" }),
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 43, recovered: true, replayed: 1 }]),
    pushAt({ op: 1000, offset: 44, stream: "r:live://2", epoch: "rb", body: "room 2, live again" }),
  ]);
  assert.deepEqual(of(events, "join").at(-1), { room: "live://2", rejoin: true });
  assert.deepEqual(
    of(events, "message").slice(2).map((m) => [m.text(), m.room, m.replayed]),
    [
      ["room 2, missed", "live://2", true],
      ["room 1, live again", "live://1", false],
      ["room 2, live again", "live://2", false],
    ],
  );
  assert.equal(c.lastRecovery.resumed, true, "the re-join carried the room's position");
  assert.deepEqual(c.lastRecovery.streams.map((s) => [s.stream, s.resumed, s.replayed]), [["r:live://2", true, 1]]);
  assert.deepEqual(c.positions()["r:live://2"], { epoch: "rb", offset: 44 });
  assert.equal(of(events, "error").length, 0);
});

test("Client: leave forgets the room's position and the room is not joined again", async (t) => {
  const { c, ws, events } = await connected(t, { positions: { "r:live://2": { epoch: "rb", offset: 10 }, "r:live://3": { epoch: "rc", offset: 20 } } });
  ws.serve([recovery([{ stream: "r:live://1", epoch: "ra", offset: 5, recovered: true }])]);
  // A Join of a room the client holds a position in carries it.
  const joined = c.join("live://2");
  const j = last(ws, Op.JOIN);
  assert.deepEqual(JSON.parse(text(j.body)), { room_id: "live://2", position: { epoch: "rb", offset: 10 } });
  ws.serve([
    { op: Op.JOIN_REPLY, seq: j.seq, body: ok("live://2") },
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 12, recovered: true, replayed: 2 }]),
  ]);
  await joined;
  assert.equal(c.lastRecovery.resumed, true);

  const left = c.leave("live://2");
  const l = last(ws, Op.LEAVE);
  assert.equal(text(l.body), "live://2", "a Leave never carries a position");
  // A push of the room in flight before the reply moves the position...
  ws.serve([pushAt({ op: 1000, offset: 13, stream: "r:live://2", epoch: "rb", body: "in flight" })]);
  assert.deepEqual(c.positions()["r:live://2"], { epoch: "rb", offset: 13 });
  // ...and the reply forgets it.
  ws.serve([{ op: Op.LEAVE_REPLY, seq: l.seq, body: ok("live://2") }]);
  await left;
  assert.deepEqual(c.positions(), { "r:live://3": { epoch: "rc", offset: 20 }, "r:live://1": { epoch: "ra", offset: 5 } });

  // Not connected: leave forgets at once.
  const ws2 = await reconnect(ws);
  await c.leave("live://3");
  assert.equal(c.positions()["r:live://3"], undefined);
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  assert.equal(ws2.sent.filter((f) => f.op === Op.JOIN || f.op === Op.LEAVE).length, 0, "nothing to join again, nothing to leave");
  assert.deepEqual(of(events, "leave"), [{ room: "live://2" }]);
});

test("Client: join while not connected resolves at once; the room is joined after the auth; a refusal then is a refused event", async (t) => {
  FakeWebSocket.instances = [];
  const c = new Client("ws://example/sub", { mid: 42, roomId: "live://1", WebSocket: FakeWebSocket });
  t.after(() => c.close());
  const events = [];
  for (const type of ["join", "refused", "error"]) c.on(type, (d) => events.push([type, d]));
  assert.equal(await c.join("live://2"), "live://2");
  assert.equal(await c.join("secret://3"), "secret://3");
  assert.deepEqual(c.rooms(), ["live://1", "live://2", "secret://3"]);
  c.connect();
  await tick();
  const ws = FakeWebSocket.instances[0];
  // A join() in the auth event waits for the re-join's reply: no second Join.
  let again = null;
  c.on("auth", () => (again = c.join("live://2")));
  ws.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws.sent[0].seq }]);
  const joins = ws.sent.filter((f) => f.op === Op.JOIN);
  assert.deepEqual(joins.map((f) => text(f.body)), ["live://2", "secret://3"]);
  ws.serve([
    { op: Op.JOIN_REPLY, seq: joins[0].seq, body: ok("live://2") },
    { op: Op.JOIN_REPLY, seq: joins[1].seq, body: refused("secret://3", "forbidden") },
  ]);
  assert.equal(await again, "live://2");
  assert.deepEqual(
    events.map(([type, d]) => [type, d.room, d.rejoin ?? d.code]),
    [
      ["join", "live://2", true],
      ["refused", "secret://3", "forbidden"],
    ],
  );
  const [{ error }] = events.filter(([type]) => type === "refused").map(([, d]) => d);
  assert.ok(error instanceof RoomError);
  assert.deepEqual(c.rooms(), ["live://1", "live://2"]);
});

test("Client: a Join of a room the connection is in changes nothing; ChangeRoom to a joined room makes it primary", async (t) => {
  const { c, ws, events } = await connected(t);
  ws.serve([recovery([{ stream: "r:live://1", epoch: "ra", offset: 5, recovered: true }])]);
  const same = c.join("live://1");
  ws.serve([{ op: Op.JOIN_REPLY, seq: last(ws, Op.JOIN).seq, body: ok("live://1") }]);
  await same;
  assert.deepEqual(c.rooms(), ["live://1"]);
  // No replay follows such a Join: the room's pushes are live ones.
  ws.serve([pushAt({ op: 1000, offset: 6, stream: "r:live://1", epoch: "ra", body: "live" })]);
  assert.equal(of(events, "message").at(-1).replayed, false);

  const joined = c.join("live://2");
  ws.serve([{ op: Op.JOIN_REPLY, seq: last(ws, Op.JOIN).seq, body: ok("live://2") }, recovery([{ stream: "r:live://2", epoch: "rb", offset: 1, recovered: true }])]);
  await joined;
  const moved = c.changeRoom("live://2");
  const cr = last(ws, Op.CHANGE_ROOM);
  assert.deepEqual(JSON.parse(text(cr.body)), { room_id: "live://2", position: { epoch: "rb", offset: 1 } });
  // The node answers, replays nothing (the connection was in the room) and
  // reports the room's stream, as after any ChangeRoom on a recover connection.
  ws.serve([
    { op: Op.CHANGE_ROOM_REPLY, seq: cr.seq, body: cr.body },
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 1, recovered: true, replayed: 0 }]),
    pushAt({ op: 1000, offset: 2, stream: "r:live://2", epoch: "rb", body: "room 2 live" }),
  ]);
  await moved;
  assert.equal(c.roomId, "live://2");
  assert.deepEqual(c.rooms(), ["live://2"], "the old primary room is left, the joined one is primary now");
  assert.equal(of(events, "message").at(-1).replayed, false);
  const ws2 = await reconnect(ws);
  assert.equal(JSON.parse(text(ws2.sent[0].body)).room_id, "live://2");
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  assert.equal(ws2.sent.filter((f) => f.op === Op.JOIN).length, 0);
});

test("Client: leave and join again while replies are in flight: the last word is the client's", async (t) => {
  const { c, ws, events } = await connected(t);
  ws.serve([recovery([{ stream: "r:live://1", epoch: "ra", offset: 5, recovered: true }])]);
  const first = c.join("live://2");
  const again = c.join("live://2");
  assert.equal(ws.sent.filter((f) => f.op === Op.JOIN).length, 1, "a join of a room whose Join waits sends none");
  const left = c.leave("live://2");
  const third = c.join("live://2");
  const [j1, j2] = ws.sent.filter((f) => f.op === Op.JOIN);
  assert.ok(j2, "a join after a leave sends a Join after the Leave");
  assert.deepEqual(c.rooms(), ["live://1", "live://2"]);
  ws.serve([
    { op: Op.JOIN_REPLY, seq: j1.seq, body: ok("live://2") },
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 3, recovered: true }]),
    { op: Op.LEAVE_REPLY, seq: last(ws, Op.LEAVE).seq, body: ok("live://2") },
    { op: Op.JOIN_REPLY, seq: j2.seq, body: ok("live://2") },
    pushAt({ op: 1000, offset: 4, stream: "r:live://2", epoch: "rb", body: "replayed after the second Join" }),
    recovery([{ stream: "r:live://2", epoch: "rb", offset: 4, recovered: true, replayed: 1 }]),
    pushAt({ op: 1000, offset: 5, stream: "r:live://2", epoch: "rb", body: "live" }),
  ]);
  await Promise.all([first, again, left, third]);
  assert.deepEqual(c.rooms(), ["live://1", "live://2"]);
  assert.deepEqual(c.positions()["r:live://2"], { epoch: "rb", offset: 5 }, "the position stays: the room is joined");
  assert.deepEqual(of(events, "message").map((m) => [m.text(), m.replayed]), [["replayed after the second Join", true], ["live", false]]);
  assert.deepEqual(of(events, "join").length, 2);
});

test("Client: a server that does not know Join echoes it: join rejects, saying so", async (t) => {
  const { c, ws } = await connected(t, { recover: false });
  const p = c.join("live://2");
  const j = last(ws, Op.JOIN);
  ws.serve([{ op: Op.JOIN, seq: j.seq }]); // an older server's upstream echo
  await assert.rejects(p, /does not know op 18/);
});

test("Client: a Join without a reply in time rejects; the room is joined again at the next auth", async (t) => {
  const { c, ws, events } = await connected(t, { recover: false, requestTimeoutMs: 20 });
  await assert.rejects(c.join("live://2"), /no reply to op 18 within 20 ms/);
  assert.deepEqual(c.rooms(), ["live://1", "live://2"]);
  // A reply that comes too late is dropped, not taken for a push.
  ws.serve([{ op: Op.JOIN_REPLY, seq: last(ws, Op.JOIN).seq, body: ok("live://2") }]);
  assert.equal(of(events, "message").length, 0);
  // The connection is lost while a re-join waits: no error, the next auth joins again.
  const ws2 = await reconnect(ws);
  ws2.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws2.sent[0].seq }]);
  assert.equal(text(last(ws2, Op.JOIN).body), "live://2");
  const ws3 = await reconnect(ws2);
  ws3.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws3.sent[0].seq }]);
  ws3.serve([{ op: Op.JOIN_REPLY, seq: last(ws3, Op.JOIN).seq, body: ok("live://2") }]);
  assert.deepEqual(of(events, "join"), [{ room: "live://2", rejoin: true }]);
  assert.equal(of(events, "error").length, 0);
  // A re-join with no reply in time is an error event.
  const ws4 = await reconnect(ws3);
  ws4.serve([{ op: Op.AUTH_REPLY, ver: 2, seq: ws4.sent[0].seq }]);
  while (of(events, "error").length === 0) await sleep(5);
  assert.match(of(events, "error")[0].error.message, /no reply to op 18/);
});
