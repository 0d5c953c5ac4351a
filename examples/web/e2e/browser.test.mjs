// End-to-end test of the demo page in a real browser: Debian's chromium,
// headless, driven by playwright-core, against a running examples/server:
// one page through connect, pushes, ChangeRoom, recovery, rooms, a drain
// and the reconnect. The other browser tests are e2e/*.test.mjs; setup,
// skips and artifacts: helpers.mjs. All of them:
//
//	cd examples/web && npm ci && npm run test:browser
//
// A screenshot of the page (wide and phone-sized) and the server's log are
// left in e2e/artifacts/.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { browserTest, inHistory, pushAPI, shootPage, stamp } from "./helpers.mjs";

browserTest("demo page in chromium: connect, push, ChangeRoom, drain and reconnect", "server.log", async (t, { context, server, ports }) => {
  const page = context.pages()[0] ?? (await context.newPage());
  const pageErrors = [];
  page.on("crash", () => pageErrors.push("the page crashed"));
  page.on("close", () => pageErrors.push("the page closed"));
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    // A reconnect attempt while the server is down logs a failed WebSocket
    // connection; that is expected here.
    if (msg.type() === "error" && !/WebSocket connection to .* failed/.test(msg.text())) pageErrors.push(`console: ${msg.text()}`);
  });

  const shoot = (name) => shootPage(page, name);
  const wsURL = `ws://127.0.0.1:${ports.ws}/sub`;
  const pushes = page.locator("#pushes li.push");
  const pushWith = (text) => pushes.filter({ hasText: text });

  try {
    await t.test("the page at the startup log's address connects to the server's WebSocket port", async () => {
      // Every port is a free one, none the default: the page must learn the
      // WebSocket address from the server, not assume :3102.
      const [, hint] = await server.waitForLog(/demo page (http:\/\/[^\s"]+)/);
      assert.equal(hint, `http://127.0.0.1:${ports.http}/`);
      await page.goto(`${hint}?mid=4242&room=live://1000`);
      assert.equal(await page.locator("#ws-url").inputValue(), wsURL);
      await page.locator('#status[data-state="open"]').waitFor({ timeout: 15000 });
      assert.notEqual(await page.locator("#key").textContent(), "–");
      await page.waitForFunction(() => document.querySelector("#online").textContent === "1", null, { timeout: 10000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://1000");
      // The server keeps a history: the page follows its user's stream and its room's.
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "on, following u:4242, r:live://1000", null, { timeout: 10000 });
    });

    await t.test("imcloud.js gives up with an AuthError when the server keeps refusing its auth", async () => {
      // The server refuses a key over 128 bytes, whatever the authenticator.
      const result = await page.evaluate(async (url) => {
        const { Client } = await import("/imcloud.js");
        const c = new Client(url, { key: "k".repeat(200), backoff: { minMs: 20, maxMs: 50 } });
        const closes = [];
        c.on("close", ({ reconnect }) => closes.push(reconnect));
        const error = await new Promise((resolve) => {
          c.on("error", ({ error }) => resolve(error));
          c.connect();
        });
        await new Promise((r) => setTimeout(r, 300)); // a retry, if any, would have begun
        return { name: error.name, refusals: error.refusals, message: error.message, closes, state: c.state };
      }, wsURL);
      assert.equal(result.name, "AuthError", result.message);
      assert.equal(result.refusals, 3);
      assert.deepEqual(result.closes, [true, true, false]);
      assert.equal(result.state, "idle");
    });

    await t.test("a push through the HTTP API appears with its latency", async () => {
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=1000", stamp("hello room 1000"));
      const item = pushWith("hello room 1000");
      await item.waitFor({ timeout: 10000 });
      assert.equal(await item.getAttribute("data-op"), "1000");
      const latency = Number(await item.getAttribute("data-latency"));
      assert.ok(latency >= 0 && latency < 10000, `latency ${latency}`);
      assert.match(await item.locator(".latency").textContent(), /^\d+ ms$/);

      // A body without sent_ms shows its arrival time instead.
      await pushAPI(ports, "/goim/push/room?operation=1001&type=live&room=1000", "plain text push");
      const plain = pushWith("plain text push");
      await plain.waitFor({ timeout: 10000 });
      assert.equal(await plain.getAttribute("data-latency"), null);
      assert.equal(await plain.locator(".latency").textContent(), "no sent_ms");
    });

    await t.test("the page's push form reaches a user and everyone", async () => {
      await page.locator('input[name="target"][value="mids"]').check();
      await page.locator("#push-mids").fill("4242");
      await page.locator("#push-body").fill("to user 4242 from the form");
      await page.locator("#push").click();
      await pushWith("to user 4242 from the form").waitFor({ timeout: 10000 });
      await page.waitForFunction(() => document.querySelector("#push-result").textContent.startsWith("200"));

      await page.locator('input[name="target"][value="all"]').check();
      await page.locator("#push-op").fill("1002");
      await page.locator("#push-body").fill("broadcast from the form");
      await page.locator("#push").click();
      const item = pushWith("broadcast from the form");
      await item.waitFor({ timeout: 10000 });
      assert.equal(await item.getAttribute("data-op"), "1002");
    });

    await t.test("ChangeRoom moves the page to another room's pushes", async () => {
      await page.locator("#new-room").fill("live://2000");
      await page.locator("#change-room").click();
      await page.waitForFunction(() => document.querySelector("#room-current").textContent === "live://2000", null, { timeout: 10000 });
      await page.waitForFunction(() => document.querySelector("#online").textContent === "1", null, { timeout: 10000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=1000", stamp("left behind in 1000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("hello room 2000"));
      await pushWith("hello room 2000").waitFor({ timeout: 10000 });
      await sleep(300); // room 1000's push, if wrongly delivered, would be here by now
      assert.equal(await pushWith("left behind in 1000").count(), 0, "a push to the old room reached the page");
    });

    await t.test("pushes sent while the page was disconnected come back when it connects again", async () => {
      await page.locator("#disconnect").click();
      await page.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      const missed = ["missed in room 2000", "missed by user 4242"];
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp(missed[0]));
      await pushAPI(ports, "/goim/push/mids?operation=1000&mids=4242", stamp(missed[1]));
      await inHistory(ports, "type=live&room=2000", missed[0]);
      await inHistory(ports, "mid=4242", missed[1]);
      assert.equal(await pushWith(missed[0]).count(), 0);

      await page.locator("#connect").click(); // from the positions the page kept
      await page.locator('#recovery[data-state="recovered"]').waitFor({ timeout: 10000 });
      assert.equal(await page.locator("#recovery").textContent(), "recovered 2 missed pushes");
      for (const text of missed) {
        assert.equal(await pushWith(text).count(), 1, text);
        assert.equal(await pushWith(text).getAttribute("data-replayed"), "true", text);
      }
      await shoot("recovered");

      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("live after the recovery"));
      await pushWith("live after the recovery").waitFor({ timeout: 10000 });
      assert.equal(await pushWith("live after the recovery").getAttribute("data-replayed"), null);

      // Back to room 1000: the ChangeRoom carries the room's position, and the
      // push it got while the page was in room 2000 is replayed.
      const move = async (room) => {
        await page.locator("#new-room").fill(room);
        await page.locator("#change-room").click();
        await page.waitForFunction((r) => document.querySelector("#room-current").textContent === r, room, { timeout: 10000 });
      };
      await move("live://1000");
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "recovered 1 missed push", null, { timeout: 10000 });
      assert.equal(await pushWith("left behind in 1000").count(), 1);
      assert.equal(await pushWith("left behind in 1000").getAttribute("data-replayed"), "true");
      await move("live://2000");
      await page.waitForFunction(() => document.querySelector("#recovery").textContent === "recovered 0 missed pushes", null, { timeout: 10000 });
    });

    await t.test("rooms: the page joins a room, its pushes say their room, it is joined again after a reconnect, a refusal is said, and Leave stops them", async () => {
      const joinWithForm = async (room) => {
        await page.locator("#join-room").fill(room);
        await page.locator("#join").click();
      };
      await joinWithForm("live://3000");
      await page.locator('#rooms li[data-room="live://3000"][data-state="joined"]').waitFor({ timeout: 10000 });
      assert.deepEqual(
        await page.$$eval("#rooms li[data-room]", (lis) => lis.map((li) => [li.dataset.room, li.dataset.state])),
        [["live://2000", "primary"], ["live://3000", "joined"]],
      );
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("hello joined room 3000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("hello primary room 2000"));
      for (const [text, room] of [["hello joined room 3000", "live://3000"], ["hello primary room 2000", "live://2000"]]) {
        await pushWith(text).waitFor({ timeout: 10000 });
        assert.equal(await pushWith(text).locator(".in-room").textContent(), room, text);
      }

      // Disconnect, a push to the joined room, Connect: the page joins the
      // room again from its position, and the push comes back.
      await page.locator("#disconnect").click();
      await page.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("missed in joined room 3000"));
      await inHistory(ports, "type=live&room=3000", "missed in joined room 3000");
      await page.locator("#connect").click();
      const missed = pushWith("missed in joined room 3000");
      await missed.waitFor({ timeout: 10000 });
      assert.equal(await missed.getAttribute("data-replayed"), "true");
      assert.equal(await missed.locator(".in-room").textContent(), "live://3000");
      await page.locator('#rooms li[data-room="live://3000"][data-state="joined"]').waitFor({ timeout: 10000 });
      await page.locator("#log li.ok").filter({ hasText: "joined room live://3000 after the auth" }).waitFor({ timeout: 10000 });

      await joinWithForm("nope");
      await page.locator("#log li.err").filter({ hasText: "the server refused room nope: invalid_room" }).waitFor({ timeout: 10000 });
      // A refused ChangeRoom leaves the page in its room.
      await page.locator("#new-room").fill("bad-room");
      await page.locator("#change-room").click();
      await page.locator("#log li.err").filter({ hasText: "the server refused room bad-room: invalid_room" }).waitFor({ timeout: 10000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://2000");
      assert.equal(await page.evaluate(() => window.imcloudDemo.client.roomId), "live://2000");

      await page.locator('#rooms li[data-room="live://3000"] button.leave').click();
      await page.locator('#rooms li[data-room="live://3000"]').waitFor({ state: "detached", timeout: 10000 });
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=3000", stamp("after leaving 3000"));
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("still in 2000"));
      await pushWith("still in 2000").waitFor({ timeout: 10000 });
      await sleep(300); // room 3000's push, if wrongly delivered, would be here by now
      assert.equal(await pushWith("after leaving 3000").count(), 0, "a push to the room left reached the page");
    });

    await t.test("a server drain shows the disconnect reason, then the page reconnects", async () => {
      assert.equal(await page.locator("#disconnect-reason").textContent(), "–");
      await server.drain();
      await page.waitForFunction(() => document.querySelector("#disconnect-reason").textContent !== "–", null, { timeout: 10000 });
      const reason = await page.locator("#disconnect-reason").textContent();
      assert.ok(reason.trim().length > 0, "empty disconnect reason");
      await page.locator('#status[data-state="waiting"]').waitFor({ timeout: 5000 });
      await shoot("drained");

      await server.start(); // same ports
      await page.locator('#status[data-state="open"]').waitFor({ timeout: 45000 });
      assert.equal(await page.locator("#room-current").textContent(), "live://2000");
      // The restarted server's history (in memory) starts over: the page says
      // its streams could not be recovered, rather than "nothing missed".
      await page.locator('#recovery[data-state="incomplete"]').waitFor({ timeout: 10000 });
      assert.equal(
        await page.locator("#recovery").textContent(),
        "not recovered (u:4242: epoch_changed; r:live://2000: epoch_changed); 0 missed pushes replayed, some may be lost",
      );
      await pushAPI(ports, "/goim/push/room?operation=1000&type=live&room=2000", stamp("after the restart"));
      await pushWith("after the restart").waitFor({ timeout: 10000 });
    });

    assert.deepEqual(pageErrors, [], "errors in the page");
    page.removeAllListeners("close");
  } finally {
    await shoot("browser");
    await page.setViewportSize({ width: 390, height: 844 }).catch(() => {});
    await shoot("browser-phone");
  }
});
