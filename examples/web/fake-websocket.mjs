// A WebSocket stand-in for the Client's unit tests (imcloud.test.mjs,
// recovery.test.mjs); not part of the package.
import { decodeFrames, encodeFrame } from "./imcloud.js";

// FakeWebSocket is a WebSocket stand-in: it records what the client sends and
// lets the test play the server.
export class FakeWebSocket {
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

export const tick = () => new Promise((r) => setTimeout(r, 0));
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
