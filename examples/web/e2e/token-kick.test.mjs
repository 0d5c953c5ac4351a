// The demo page's token lifetime and kicks in chromium: against frames a
// test plays as the node (ScriptedServer), and against a second
// examples/server that verifies HS256 tokens (-auth token). Setup and
// skips: helpers.mjs.
import assert from "node:assert/strict";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Op, encodeFrame } from "../imcloud.js";
import { ScriptedServer, Server, artifacts, browserTest, freePort, hs256, pushAPI, shootPage } from "./helpers.mjs";

browserTest("demo page in chromium: token refresh and kicks", "server-token-page.log", async (t, { context, ports, bin }) => {
  await t.test("token and kick: the page refreshes its token before it expires and stays down when kicked (scripted frames)", async () => {
    const fakeURL = `ws://127.0.0.1:${await freePort()}/sub`;
    // Tokens from token_url live 3 s, so the page refreshes after about 2.4 s.
    const minted = [];
    const b64url = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const mint = () => {
      const now = Math.floor(Date.now() / 1000);
      const token = `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url({ mid: 95, iat: now, exp: now + 3 })}.c2ln`;
      minted.push(token);
      return token;
    };
    const onRequest = (f) =>
      f.op === Op.REFRESH ? [encodeFrame({ op: Op.REFRESH_REPLY, ver: f.ver, seq: f.seq, body: JSON.stringify({ ok: true, expires: Math.floor(Date.now() / 1000) + 3 }) })] : [];
    const scripted = new ScriptedServer([() => []], onRequest);
    const p4 = await context.newPage();
    const errors = [];
    p4.on("pageerror", (err) => errors.push(err.message));
    await p4.route((url) => url.pathname === "/demo-token", (route) => route.fulfill({ status: 200, contentType: "text/plain", body: mint() }));
    await p4.routeWebSocket(fakeURL, (ws) => scripted.route(ws));
    try {
      await p4.goto(`http://127.0.0.1:${ports.http}/?ws=${encodeURIComponent(fakeURL)}&mid=95&room=live://95&recover=0&token_url=/demo-token`);
      await p4.locator('#status[data-state="open"]').waitFor({ timeout: 10000 });
      assert.equal(scripted.auths[0].token, minted[0], "the auth carries the token from token_url");
      await p4.locator("#log li.ok").filter({ hasText: "token refreshed, valid until" }).waitFor({ timeout: 10000 });
      const refreshes = scripted.requests.filter((r) => r.op === Op.REFRESH);
      assert.ok(refreshes.length >= 1);
      assert.equal(refreshes[0].body, minted[1], "op 22 carries a new token from token_url");

      // A kick: the reason is shown, and the page does not reconnect.
      scripted.sockets[0].send(Buffer.from(encodeFrame({ op: Op.DISCONNECT, ver: 2, body: JSON.stringify({ reason: "banned by the test", reconnect_ms: 0 }) })));
      scripted.sockets[0].close({ code: 1001 });
      await p4.locator("#log li.err").filter({ hasText: "kicked: banned by the test" }).waitFor({ timeout: 10000 });
      await p4.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      assert.equal(await p4.locator("#disconnect-reason").textContent(), "kicked: banned by the test");
      await shootPage(p4, "kicked-scripted");
      await sleep(1500);
      assert.equal(scripted.auths.length, 1, "no reconnect after a kick");
      assert.equal(await p4.locator("#connect").isDisabled(), false, "Connect is there to come back");
      assert.deepEqual(errors, [], "errors in the page");
    } finally {
      await p4.close();
    }
  });

  await t.test("token lifetime and kick against a server with token auth: refreshed before expiry, token_expired and a refused refresh reconnect with a new token, a kick stops the page", async () => {
    // A second server, verifying HS256 tokens: a connection lives until its
    // token's exp unless refreshed (ops 22, 23).
    const secret = "e2e-token-secret";
    const tports = { tcp: await freePort(), ws: await freePort(), http: await freePort() };
    const tserver = new Server(bin, tports, join(artifacts, "server-token.log"), ["-auth", "token", "-token-secret", secret]);
    await tserver.start();
    // token_url hands out tokens for mid 96 that live 3 s, or fails (500),
    // or hands out another user's, as mode says.
    let mode = "ok";
    const minted = [];
    const p5 = await context.newPage();
    const errors = [];
    p5.on("pageerror", (err) => errors.push(err.message));
    await p5.route(
      (url) => url.pathname === "/demo-token",
      (route) => {
        if (mode === "fail") return route.fulfill({ status: 500, body: "token backend down" });
        const now = Math.floor(Date.now() / 1000);
        const token = hs256(secret, { mid: mode === "other" ? 97 : 96, iat: now, exp: now + 3, rooms: ["*"] });
        minted.push({ mode, token });
        return route.fulfill({ status: 200, contentType: "text/plain", body: token });
      },
    );
    const logLines = (cls, text) => p5.locator(`#log li.${cls}`).filter({ hasText: text });
    const authed = () => logLines("ok", "authenticated as mid 96").count();
    try {
      await p5.goto(`http://127.0.0.1:${tports.http}/?mid=96&room=live://96&token_url=/demo-token`);
      await p5.locator('#status[data-state="open"]').waitFor({ timeout: 15000 });
      const openedAt = Date.now();
      // Refreshed twice: the connection outlives its first token and the next.
      await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("token refreshed")).length >= 2, null, { timeout: 15000 });
      assert.ok(Date.now() - openedAt > 3000, "outlived the first token");
      assert.equal(await authed(), 1, "one connection all along");
      assert.equal(await p5.locator("#status").getAttribute("data-state"), "open");

      // getToken fails: the token runs out, the server closes with
      // token_expired, and the page reconnects once tokens come again.
      mode = "fail";
      await logLines("warn", "server disconnect: token_expired").waitFor({ timeout: 10000 });
      assert.ok((await logLines("err", "getToken failed").count()) >= 1);
      mode = "ok";
      await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("authenticated as mid 96")).length === 2, null, { timeout: 15000 });

      // A refresh with another user's token is refused, the server closes
      // with op 6 auth, and the page reconnects with a good token.
      mode = "other";
      await logLines("err", "token refresh refused: other_user").waitFor({ timeout: 10000 });
      mode = "ok";
      await logLines("warn", "server disconnect: auth").waitFor({ timeout: 5000 });
      await p5.waitForFunction(() => [...document.querySelectorAll("#log li.ok")].filter((li) => li.textContent.includes("authenticated as mid 96")).length === 3, null, { timeout: 15000 });
      assert.equal(await p5.locator("#status").getAttribute("data-state"), "open");
      assert.equal(await logLines("err", "kicked").count(), 0);
      assert.equal(await logLines("err", "refused its auth").count(), 0, "no AuthError");
      assert.ok(minted.some((m) => m.mode === "other"));

      // A kick through the HTTP API: the page says why and stays down.
      const kicked = JSON.parse(await pushAPI(tports, "/goim/kick?mids=96&reason=banned+by+the+e2e+test", ""));
      assert.equal(kicked.data.connections, 1, JSON.stringify(kicked));
      await logLines("err", "kicked: banned by the e2e test").waitFor({ timeout: 5000 });
      await p5.locator('#status[data-state="idle"]').waitFor({ timeout: 5000 });
      assert.equal(await p5.locator("#disconnect-reason").textContent(), "kicked: banned by the e2e test");
      await shootPage(p5, "token");
      await sleep(1500);
      assert.equal(await authed(), 3, "no reconnect after the kick");
      assert.deepEqual(errors, [], "errors in the page");
    } finally {
      await p5.close();
      await tserver.stop();
    }
  });
});
