// The demo page's recovery and rooms views in chromium, against frames a
// test plays as the node (ScriptedServer, through playwright's WebSocket
// routing): what a real server seldom shows on cue, missed pushes replayed,
// lost histories, refused and rejoined rooms. The page itself comes from a
// real examples/server. Setup and skips: helpers.mjs.
import assert from "node:assert/strict";
import { Op, encodeBatch, encodeFrame, text } from "../imcloud.js";
import { ScriptedServer, browserTest, freePort, scriptedPush, scriptedRecovery, shootPage } from "./helpers.mjs";

browserTest("demo page in chromium with scripted frames: recovery and rooms", "server-scripted.log", async (t, { context, ports }) => {
  await t.test("recovery: the page shows the missed pushes that came back, and says so when they could not (scripted frames)", async () => {
    const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
    const u = "u:77";
    const r = "r:live://77";
    const scripted = new ScriptedServer([
      // First connect: nothing to recover; then a live push.
      () => [
        scriptedRecovery([
          { stream: u, epoch: "E1", offset: 10, recovered: true, replayed: 0 },
          { stream: r, epoch: "R1", offset: 5, recovered: true, replayed: 0 },
        ]),
        encodeBatch([scriptedPush({ op: 1000, offset: 11, stream: u, epoch: "E1", body: "live before the drop" })]),
      ],
      // Reconnect: three missed pushes, then op 25.
      () => [
        encodeBatch([
          scriptedPush({ op: 1000, offset: 12, stream: u, epoch: "E1", body: "missed one" }),
          scriptedPush({ op: 1000, offset: 6, stream: r, epoch: "R1", body: "missed two" }),
          scriptedPush({ op: 1001, offset: 13, stream: u, epoch: "E1", body: "missed three" }),
        ]),
        scriptedRecovery([
          { stream: u, epoch: "E1", offset: 13, recovered: true, replayed: 2 },
          { stream: r, epoch: "R1", offset: 6, recovered: true, replayed: 1 },
        ]),
      ],
      // After a reload: the user stream's history was lost.
      () => [
        scriptedRecovery([
          { stream: u, epoch: "E2", offset: 0, recovered: false, reason: "epoch_changed", replayed: 0 },
          { stream: r, epoch: "R1", offset: 6, recovered: true, replayed: 0 },
        ]),
      ],
      // Another user, a server that keeps no history: "unavailable" at once.
      (auth) => [
        scriptedRecovery([
          { stream: `u:${auth.mid}`, epoch: "", offset: 0, recovered: false, reason: "unavailable", replayed: 0 },
          { stream: `r:${auth.room_id}`, epoch: "", offset: 0, recovered: false, reason: "unavailable", replayed: 0 },
        ]),
      ],
    ]);
    const p2 = await context.newPage();
    const errors = [];
    p2.on("pageerror", (err) => errors.push(err.message));
    await p2.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
    const feed = (text) => p2.locator("#pushes li.push").filter({ hasText: text });
    try {
      await p2.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=77&room=live://77`);
      await feed("live before the drop").waitFor({ timeout: 10000 });
      assert.equal(scripted.auths[0].recover, true, "the demo asks for recovery");
      assert.equal(scripted.auths[0].positions, undefined);
      assert.equal(await p2.locator("#recovery").textContent(), `on, following ${u}, ${r}`);
      assert.equal(await feed("live before the drop").getAttribute("data-replayed"), null);
      assert.match(await feed("live before the drop").locator(".stream").textContent(), /^u:77 #11$/);

      scripted.sockets[0].close({ code: 1001 });
      await p2.locator('#recovery[data-state="recovered"]').waitFor({ timeout: 10000 });
      assert.deepEqual(scripted.auths[1].positions, { [u]: { epoch: "E1", offset: 11 }, [r]: { epoch: "R1", offset: 5 } });
      assert.equal(await p2.locator("#recovery").textContent(), "recovered 3 missed pushes");
      for (const missed of ["missed one", "missed two", "missed three"]) {
        assert.equal(await feed(missed).getAttribute("data-replayed"), "true", missed);
        assert.equal(await feed(missed).locator(".replayed").textContent(), "replayed");
      }
      await shootPage(p2, "recovered-scripted");

      // A reload continues from the positions the page kept in sessionStorage.
      await p2.reload();
      await p2.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
      assert.deepEqual(scripted.auths[2].positions, { [u]: { epoch: "E1", offset: 13 }, [r]: { epoch: "R1", offset: 6 } });
      assert.match(await p2.locator("#recovery").textContent(), /^not recovered \(u:77: epoch_changed\); 0 missed pushes replayed/);

      await p2.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=78&room=live://78`);
      await p2.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
      assert.equal(scripted.auths[3].positions, undefined, "the positions kept were another user's");
      assert.equal(
        await p2.locator("#recovery").textContent(),
        "unavailable (u:78: unavailable; r:live://78: unavailable): pushes missed while disconnected will not come back",
      );
      assert.deepEqual(errors, [], "errors in the page");
    } finally {
      await p2.close();
    }
  });

  await t.test("rooms: the page joins and leaves rooms, lists them, names each push's room, and joins them again after a reconnect (scripted frames)", async () => {
    const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
    const epochs = { "u:90": "U", "r:live://90": "P", "r:live://91": "R1", "r:live://92": "R2" };
    const current = (stream, offset) => ({ stream, epoch: epochs[stream], offset, recovered: true, replayed: 0 });
    // The node: a room under secret:// is forbidden; a Join of another
    // room is answered ok, with what the room got after the Join's
    // position (live://91 got one push meanwhile), its op 25, then a live
    // push.
    let missed = false;
    const onRequest = (f) => {
      if (f.op === Op.LEAVE) return [encodeFrame({ op: Op.LEAVE_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: text(f.body), ok: true }) })];
      if (f.op !== Op.JOIN) return [];
      const body = text(f.body);
      const { room_id: room, position } = body.startsWith("{") ? JSON.parse(body) : { room_id: body, position: null };
      if (room.startsWith("secret://")) {
        return [encodeFrame({ op: Op.JOIN_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: room, ok: false, error: "forbidden" }) })];
      }
      const stream = `r:${room}`;
      const replay = position && room === "live://91" ? [scriptedPush({ op: 1000, offset: position.offset + 1, stream, epoch: epochs[stream], body: "missed in 91" })] : [];
      const top = (position?.offset ?? 3) + replay.length;
      if (replay.length) missed = true;
      return [
        encodeFrame({ op: Op.JOIN_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ room_id: room, ok: true }) }),
        encodeBatch([...replay]),
        scriptedRecovery([{ ...current(stream, top), replayed: replay.length }]),
        encodeBatch([scriptedPush({ op: 1000, offset: top + 1, stream, epoch: epochs[stream], body: `live in ${room.slice(7)}${replay.length ? " again" : ""}` })]),
      ];
    };
    const scripted = new ScriptedServer(
      [
        () => [scriptedRecovery([current("u:90", 1), current("r:live://90", 1)])],
        () => [scriptedRecovery([current("u:90", 1), current("r:live://90", 1)])],
      ],
      onRequest,
    );
    const p3 = await context.newPage();
    const errors = [];
    p3.on("pageerror", (err) => errors.push(err.message));
    await p3.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
    const feed = (text) => p3.locator("#pushes li.push").filter({ hasText: text });
    const room = (r) => p3.locator(`#rooms li[data-room="${r}"]`);
    const roomsShown = () => p3.$$eval("#rooms li[data-room]", (lis) => lis.map((li) => [li.dataset.room, li.dataset.state]));
    const joinWithForm = async (r) => {
      await p3.locator("#join-room").fill(r);
      await p3.locator("#join").click();
    };
    try {
      await p3.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=90&room=live://90&join=live://91`);
      // The join in the address goes out right after the auth.
      await room("live://91").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
      assert.deepEqual(scripted.requests.filter((r) => r.op === Op.JOIN), [{ op: Op.JOIN, body: "live://91" }]);
      await feed("live in 91").waitFor({ timeout: 10000 });
      assert.equal(await feed("live in 91").locator(".in-room").textContent(), "live://91");

      // A refused room is said and not listed.
      await joinWithForm("secret://1");
      await p3.locator("#log li.err").filter({ hasText: "the server refused room secret://1: forbidden" }).waitFor({ timeout: 10000 });
      await joinWithForm("live://92");
      await room("live://92").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
      assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://91", "joined"], ["live://92", "joined"]]);
      await feed("live in 92").waitFor({ timeout: 10000 });
      assert.equal(await p3.locator("#recovery").textContent(), "on, following u:90, r:live://90, r:live://91, r:live://92");
      await shootPage(p3, "rooms");

      // A reconnect joins the rooms again, live://91 from its position:
      // what it got meanwhile comes back, marked replayed.
      scripted.sockets[0].close({ code: 1001 });
      await feed("missed in 91").waitFor({ timeout: 15000 });
      assert.ok(missed);
      assert.equal(await feed("missed in 91").getAttribute("data-replayed"), "true");
      assert.equal(await feed("missed in 91").locator(".in-room").textContent(), "live://91");
      assert.deepEqual(scripted.auths[1].positions, { "u:90": { epoch: "U", offset: 1 }, "r:live://90": { epoch: "P", offset: 1 } }, "the auth carries the user's and the primary room's positions");
      const rejoins = scripted.requests.filter((r) => r.op === Op.JOIN).slice(-2).map((r) => JSON.parse(r.body));
      assert.deepEqual(rejoins, [
        { room_id: "live://91", position: { epoch: "R1", offset: 4 } },
        { room_id: "live://92", position: { epoch: "R2", offset: 4 } },
      ]);
      await room("live://92").and(p3.locator('[data-state="joined"]')).waitFor({ timeout: 10000 });
      assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://91", "joined"], ["live://92", "joined"]]);

      // Leave: the room goes from the list.
      await room("live://91").locator("button.leave").click();
      await p3.locator("#log li.ok").filter({ hasText: "left room live://91" }).waitFor({ timeout: 10000 });
      assert.equal(await p3.locator("#log li.ok").filter({ hasText: "joined room live://92 after the auth" }).count(), 1);
      assert.deepEqual(await roomsShown(), [["live://90", "primary"], ["live://92", "joined"]]);
      assert.deepEqual(scripted.requests.filter((r) => r.op === Op.LEAVE), [{ op: Op.LEAVE, body: "live://91" }]);
      assert.deepEqual(errors, [], "errors in the page");
    } finally {
      await p3.close();
    }
  });
});
