// Unit tests of the JavaScript client against a scripted fake socket and a fake clock.
// Run: node --test clients/js/
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ClasswireClient, ClasswireError, tokenSubject } from "./classwire.js";

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A deterministic clock: timers fire only when the test advances time. */
class FakeClock {
  constructor() {
    this.t = 1_700_000_000_000;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => this.timers.delete(id);
    this.now = () => this.t;
  }

  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await tick();
      let due = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
      }
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
    await tick();
  }
}

/** The client's socket, driven by the test playing the server. */
class FakeSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = null;
    FakeSocket.instances.push(this);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code, reason) {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }
  // -- the server's side
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(frame) {
    this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }
  frames(action) {
    return this.sent.filter((f) => f.action === action);
  }
}

function jwt(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

function event(seq, fields = {}) {
  return {
    type: "event", classroom: "c1", seq, eid: `e${seq}`, prev: seq > 1 ? `e${seq - 1}` : "",
    id: null, from: "bob", role: "student", name: "Bob", event: "stroke", data: { n: seq }, ts: 1_700_000_000_000,
    ...fields,
  };
}

function page(events, { last, more = false, reset = false, epoch } = {}) {
  const frame = { type: "sync", events, last: last ?? (events.length ? events.at(-1).seq : 0), more, reset };
  return epoch === undefined ? frame : { ...frame, epoch };
}

/** A client with a fake clock and socket; `connected` gets it to `live` with the given history. */
function harness(options = {}) {
  FakeSocket.instances = [];
  const clock = new FakeClock();
  const seen = { events: [], volatile: [], resets: 0, statuses: [], errors: [], rosters: [] };
  const client = new ClasswireClient({
    url: "ws://127.0.0.1:9/local",
    token: jwt({ sub: "alice", role: "teacher", classrooms: ["c1"] }),
    classroom: "c1",
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    onEvent: (e, info) => seen.events.push({ ...e, replay: info.replay }),
    onVolatile: (e) => seen.volatile.push(e),
    onReset: () => {
      seen.resets += 1;
      seen.events.length = 0;
    },
    onStatus: (status, detail) => seen.statuses.push({ status, ...detail }),
    onError: (e) => seen.errors.push(e),
    onRoster: (m) => seen.rosters.push(m),
    ...options,
  });
  const socket = () => FakeSocket.instances.at(-1);
  async function connected(history = [], pageOptions = {}) {
    const done = client.connect();
    await tick();
    socket().accept();
    const sync = socket().frames("sync").at(-1);
    assert.equal(sync.since, client.lastSeq);
    socket().deliver(page(history, pageOptions));
    await done;
    return socket();
  }
  const seqs = () => seen.events.map((e) => e.seq);
  return { client, clock, seen, socket, connected, seqs };
}

describe("ordering", () => {
  it("hands out-of-order frames to the application in seq order", async () => {
    const h = harness();
    const ws = await h.connected();
    for (const seq of [3, 1, 2, 5, 4]) ws.deliver(event(seq));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4, 5]);
    assert.equal(ws.frames("sync").length, 1, "no gap sync when the gap closes in time");
    await h.clock.advance(1000);
    assert.equal(ws.frames("sync").length, 1);
  });

  it("syncs from the last applied seq when a gap persists past the buffer time", async () => {
    const h = harness();
    const ws = await h.connected();
    ws.deliver(event(1));
    ws.deliver(event(3));
    ws.deliver(event(4));
    await h.clock.advance(299);
    assert.equal(ws.frames("sync").length, 1);
    await h.clock.advance(1);
    const sync = ws.frames("sync").at(-1);
    assert.equal(ws.frames("sync").length, 2);
    assert.deepEqual([sync.since, sync.sinceEid], [1, "e1"]);
    ws.deliver(page([event(2), event(3), event(4)]));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4]);
    assert.equal(h.client.stats.duplicates, 2);
    assert.deepEqual(h.seen.events.map((e) => e.replay), [false, true, true, true]);
  });

  it("applies the events of an `events` frame as if each came in its own frame, and asks for them with batch=1", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    assert.equal(new URL(ws.url).searchParams.get("batch"), "1");
    const cursor = { type: "event", classroom: "c1", id: "k1", from: "bob", event: "cursor", data: { x: 1 }, ts: 0 };
    ws.deliver({ type: "events", events: [event(3), event(2), cursor, event(2), "junk", null] });
    assert.deepEqual(h.seqs(), [1, 2, 3]);
    assert.equal(h.client.stats.duplicates, 1);
    assert.deepEqual(h.seen.volatile.map((e) => e.id), ["k1"]);
    ws.deliver({ type: "events", events: "not a list" }); // ignored
    assert.deepEqual(h.seqs(), [1, 2, 3]);
  });

  it("a late joiner's first page keeps the live events that came before it", async () => {
    const h = harness();
    const done = h.client.connect();
    await tick();
    const ws = h.socket();
    ws.accept();
    ws.deliver(event(12)); // live, while the first sync (answered from the last clear) is in flight
    ws.deliver(page([event(10), event(11)], { reset: true }));
    await done;
    assert.deepEqual(h.seqs(), [10, 11, 12]);
    assert.equal(h.client.stats.resets, 0, "it held nothing: nothing was lost");
  });

  it("drops duplicates by seq", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    ws.deliver(event(2));
    ws.deliver(event(2));
    ws.deliver(event(1));
    ws.deliver(event(3));
    ws.deliver(event(3));
    assert.deepEqual(h.seqs(), [1, 2, 3]);
    assert.equal(h.client.stats.duplicates, 3);
  });

  it("a gap that a stale buffered copy would hide is still synced", async () => {
    const h = harness();
    const ws = await h.connected();
    ws.deliver(event(2)); // buffered
    ws.deliver(event(1)); // applies 1 and 2
    ws.deliver(event(2)); // duplicate
    ws.deliver(event(4)); // real gap at 3
    await h.clock.advance(300);
    assert.equal(ws.frames("sync").at(-1).since, 2);
  });

  it("follows sync pages while `more` is true", async () => {
    const h = harness();
    const done = h.client.connect();
    await tick();
    const ws = h.socket();
    ws.accept();
    ws.deliver(page([event(1), event(2)], { more: true }));
    assert.equal(h.client.status, "syncing");
    assert.deepEqual(ws.frames("sync").at(-1), { action: "sync", since: 2, sinceEid: "e2", limit: 200 });
    ws.deliver(page([event(3)]));
    await done;
    assert.equal(h.client.status, "live");
    assert.deepEqual(h.seqs(), [1, 2, 3]);
  });

  it("the reorder buffer holds at most maxBuffered events, the lowest seqs, and syncs for the rest", async () => {
    const h = harness({ maxBuffered: 3 });
    const ws = await h.connected();
    for (const seq of [6, 2, 5, 3, 4]) ws.deliver(event(seq)); // 3 overflows (6 goes), 4 too (5 goes)
    assert.equal(ws.frames("sync").length, 2, "an overflow syncs at once");
    assert.equal(ws.frames("sync").at(-1).since, 0);
    ws.deliver(event(1));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4], "5 and 6 were dropped, they come by sync");
    ws.deliver(page([1, 2, 3, 4, 5, 6].map((seq) => event(seq))));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4, 5, 6]);
  });

  it("a telemetry pong that says the client is behind syncs after gapMs if the events have not come", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver({ type: "pong", ts: 5, behind: 2, last: 4 });
    await h.clock.advance(299);
    assert.equal(ws.frames("sync").length, 1);
    await h.clock.advance(1);
    assert.equal(ws.frames("sync").length, 2);
    assert.deepEqual([ws.frames("sync").at(-1).since, ws.frames("sync").at(-1).sinceEid], [2, "e2"]);
    ws.deliver(page([event(3), event(4)]));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4]);
    ws.deliver({ type: "pong", ts: 6, behind: 1, last: 5 });
    ws.deliver(event(5)); // in flight when the pong was answered: no sync
    await h.clock.advance(1000);
    assert.equal(ws.frames("sync").length, 2);
  });

  it("a pong whose log ends before the client's last seq resyncs naming the event held", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2), event(3)]);
    ws.deliver({ type: "pong", ts: 5, behind: 0, last: 2 }); // a failover lost seq 3 in a quiet classroom
    await tick();
    assert.equal(ws.frames("sync").length, 2);
    assert.deepEqual([ws.frames("sync").at(-1).since, ws.frames("sync").at(-1).sinceEid], [3, "e3"]);
  });

  it("asks again when a sync reply is lost", async () => {
    const h = harness();
    const done = h.client.connect();
    await tick();
    h.socket().accept();
    await h.clock.advance(10_000);
    assert.equal(h.socket().frames("sync").length, 2);
    h.socket().deliver(page([]));
    await done;
  });

  it("a sync refused with rate_limited is asked again after retryAfterMs, after internal the back-off", async () => {
    const h = harness();
    const done = h.client.connect();
    await tick();
    const ws = h.socket();
    ws.accept();
    ws.deliver({ type: "error", code: "rate_limited", message: "slow down", id: null, retryAfterMs: 700, action: "sync" });
    await h.clock.advance(699);
    assert.equal(ws.frames("sync").length, 1, "not at once");
    await h.clock.advance(1);
    assert.equal(ws.frames("sync").length, 2);
    ws.deliver({ type: "error", code: "internal", message: "the server failed", id: null, action: "sync" });
    await h.clock.advance(499); // the second failure in a row: backoffBaseMs * 2
    assert.equal(ws.frames("sync").length, 2);
    await h.clock.advance(1);
    assert.equal(ws.frames("sync").length, 3);
    ws.deliver(page([]));
    assert.equal(h.client.status, "live");
    await done;
    assert.equal(h.seen.errors.length, 0, "handled, not reported");
  });
});

describe("divergence and reset", () => {
  it("a chain that does not link resyncs naming the eid held, and a reset rebuilds", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver(event(3, { eid: "x3", prev: "lost" }));
    assert.deepEqual(h.seqs(), [1, 2]);
    await h.clock.advance(250); // the first resync after a divergence waits backoffBaseMs
    const sync = ws.frames("sync").at(-1);
    assert.deepEqual([sync.since, sync.sinceEid], [2, "e2"]);
    const rebuilt = [
      event(1, { eid: "n1", prev: "" }),
      event(2, { eid: "n2", prev: "n1" }),
      event(3, { eid: "x3", prev: "n2" }),
    ];
    ws.deliver(page(rebuilt, { reset: true }));
    assert.equal(h.seen.resets, 1);
    assert.deepEqual(h.seen.events.map((e) => e.eid), ["n1", "n2", "x3"]);
    ws.deliver(event(4, { eid: "x4", prev: "x3" }));
    assert.deepEqual(h.seqs(), [1, 2, 3, 4]);
  });

  it("the same seq with a different eid is a divergence", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver(event(2, { eid: "other" }));
    assert.equal(h.client.stats.divergences, 1);
    await h.clock.advance(250);
    assert.deepEqual(ws.frames("sync").at(-1).sinceEid, "e2");
  });

  it("a reset starts from the oldest retained event and follows more pages", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    ws.deliver(event(3, { prev: "zz" }));
    await h.clock.advance(300); // the gap sync
    ws.deliver(page([event(50, { prev: "e49" }), event(51)], { reset: true, more: true }));
    assert.equal(h.seen.resets, 1);
    assert.deepEqual(ws.frames("sync").at(-1), { action: "sync", since: 51, sinceEid: "e51", limit: 200 });
    ws.deliver(page([event(52)]));
    assert.deepEqual(h.seqs(), [50, 51, 52]);
  });

  it("an event of a restarted log (another epoch) is no duplicate: the client resyncs naming its epoch and rebuilds", async () => {
    const [A, B] = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"];
    const h = harness();
    const ws = await h.connected([event(4999, { epoch: A }), event(5000, { epoch: A })], { reset: true, epoch: A });
    assert.equal(h.client.epoch, A);
    ws.deliver(event(1, { epoch: B })); // the log restarted: seq 1, prev ""
    assert.equal(h.client.stats.duplicates, 0, "not dropped as a duplicate");
    await h.clock.advance(250);
    assert.deepEqual(ws.frames("sync").at(-1), { action: "sync", since: 5000, sinceEid: "e5000", epoch: A, limit: 200 });
    ws.deliver(page([event(1, { epoch: B }), event(2, { epoch: B })], { reset: true, epoch: B }));
    assert.equal(h.seen.resets, 2);
    assert.equal(h.client.stats.resets, 1, "the first page's reset is not counted: the client held nothing");
    assert.equal(h.client.epoch, B);
    ws.deliver(event(3, { epoch: B }));
    assert.deepEqual(h.seqs(), [1, 2, 3]);
  });

  it("a pong of another epoch drops the buffer and resyncs naming the client's epoch", async () => {
    const [A, B] = ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"];
    const h = harness();
    const ws = await h.connected([event(1, { epoch: A })], { epoch: A });
    ws.deliver(event(3, { epoch: A })); // buffered
    ws.deliver({ type: "pong", ts: 5, behind: 0, last: 1, epoch: B });
    await h.clock.advance(250);
    assert.deepEqual(ws.frames("sync").at(-1), { action: "sync", since: 1, sinceEid: "e1", epoch: A, limit: 200 });
    ws.deliver(event(2, { epoch: A }));
    assert.deepEqual(h.seqs(), [1, 2], "the buffered 3 of the old log was dropped");
  });

  it("resyncs against a server whose pages keep not linking back off exponentially, capped", async () => {
    const h = harness({ backoffCapMs: 2000 });
    const ws = await h.connected([event(1), event(2)]);
    const times = [];
    const send = ws.send.bind(ws);
    ws.send = (text) => {
      if (JSON.parse(text).action === "sync") times.push(h.clock.t);
      send(text);
    };
    const start = h.clock.t;
    ws.deliver(event(4)); // a gap: its sync starts the exchange
    let answered = ws.frames("sync").length;
    while (h.clock.t - start < 10_000) {
      await h.clock.advance(50);
      const asked = ws.frames("sync").length;
      for (; answered < asked; answered++) ws.deliver(page([event(3, { prev: "forged" })]));
    }
    assert.deepEqual(times.slice(1).map((t, i) => t - times[i]), [250, 500, 1000, 2000, 2000, 2000]);
    assert.deepEqual(h.seqs(), [1, 2]);
    assert.equal(h.client.status, "live");
  });

  it("a page that links resets the divergence back-off", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver(event(3, { prev: "forged" }));
    assert.equal(ws.frames("sync").length, 1, "no resync at once");
    await h.clock.advance(250);
    assert.equal(ws.frames("sync").length, 2);
    ws.deliver(page([event(3, { prev: "forged" })])); // the second divergence in a row waits 500 ms
    await h.clock.advance(499);
    assert.equal(ws.frames("sync").length, 2);
    await h.clock.advance(1);
    assert.equal(ws.frames("sync").length, 3);
    ws.deliver(page([event(3)]));
    assert.deepEqual(h.seqs(), [1, 2, 3]);
    ws.deliver(event(4, { prev: "forged" }));
    await h.clock.advance(249);
    assert.equal(ws.frames("sync").length, 3);
    await h.clock.advance(1);
    assert.equal(ws.frames("sync").length, 4, "back to backoffBaseMs");
  });

  it("an empty reset continues from the server's last seq", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver(event(2, { eid: "other" }));
    await h.clock.advance(250);
    ws.deliver(page([], { reset: true, last: 7 }));
    assert.equal(h.client.lastSeq, 7);
    ws.deliver(event(8, { prev: "whatever" }));
    assert.deepEqual(h.seqs(), [8]);
  });
});

describe("sending", () => {
  it("sends one persistent event at a time, each after the previous acknowledgement", async () => {
    const h = harness();
    const ws = await h.connected();
    const results = ["a", "b", "c"].map((text) => h.client.send("chat", { text }));
    assert.equal(ws.frames("send").length, 1);
    const [first] = ws.frames("send");
    assert.deepEqual(first.data, { text: "a" });
    ws.deliver(event(1, { id: first.id, from: "alice", event: "chat", data: first.data }));
    const second = ws.frames("send")[1];
    assert.deepEqual(second.data, { text: "b" });
    assert.equal(ws.frames("send").length, 2);
    ws.deliver(event(2, { id: second.id, from: "alice", event: "chat", data: second.data }));
    const third = ws.frames("send")[2];
    ws.deliver(event(3, { id: third.id, from: "alice", event: "chat", data: third.data }));
    const acked = await Promise.all(results);
    assert.deepEqual(acked.map((e) => e.seq), [1, 2, 3]);
    assert.equal(new Set([first.id, second.id, third.id]).size, 3);
    for (const id of [first.id, second.id, third.id]) assert.ok(id.length >= 1 && id.length <= 64);
    assert.equal(h.client.pending, 0);
  });

  it("another user's event with the same id is not an acknowledgement", async () => {
    const h = harness();
    const ws = await h.connected();
    h.client.send("chat", { text: "a" });
    const { id } = ws.frames("send")[0];
    ws.deliver(event(1, { id, from: "mallory", event: "chat" }));
    assert.equal(h.client.pending, 1);
  });

  it("keeps unacknowledged sends and resends them with the same id after a reconnect", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    const first = h.client.send("stroke", { points: [[0, 0]] });
    const second = h.client.send("stroke", { points: [[1, 1]] });
    const { id } = ws.frames("send")[0];
    ws.drop();
    assert.equal(h.client.status, "reconnecting");
    await h.clock.advance(10_000);
    const again = h.socket();
    assert.notEqual(again, ws);
    again.accept();
    assert.deepEqual(again.sent.map((f) => f.action), ["sync"], "the outbox waits for the catch-up sync");
    assert.deepEqual([again.sent[0].since, again.sent[0].sinceEid], [1, "e1"]);
    again.deliver(page([event(2)]));
    assert.equal(again.frames("send").length, 1);
    assert.equal(again.frames("send")[0].id, id);
    again.deliver(event(3, { id, from: "alice" }));
    assert.equal((await first).seq, 3);
    const next = again.frames("send")[1];
    again.deliver(event(4, { id: next.id, from: "alice" }));
    assert.equal((await second).seq, 4);
    assert.deepEqual(h.seqs(), [1, 2, 3, 4]);
  });

  it("an acknowledgement found in the catch-up sync needs no resend", async () => {
    const h = harness();
    const ws = await h.connected();
    const sent = h.client.send("chat", { text: "hi" });
    const { id } = ws.frames("send")[0];
    ws.drop();
    await h.clock.advance(10_000);
    h.socket().accept();
    h.socket().deliver(page([event(1, { id, from: "alice", event: "chat" })]));
    assert.equal((await sent).seq, 1);
    assert.equal(h.socket().frames("send").length, 0);
  });

  it("resends with the same id when neither acknowledgement nor error comes", async () => {
    const h = harness();
    const ws = await h.connected();
    h.client.send("chat", { text: "hi" });
    await h.clock.advance(10_000);
    const sends = ws.frames("send");
    assert.equal(sends.length, 2);
    assert.equal(sends[0].id, sends[1].id);
  });

  it("retries a rate_limited send after retryAfterMs, same id", async () => {
    const h = harness();
    const ws = await h.connected();
    const sent = h.client.send("chat", { text: "hi" });
    const { id } = ws.frames("send")[0];
    ws.deliver({ type: "error", code: "rate_limited", message: "slow down", id, retryAfterMs: 500 });
    await h.clock.advance(499);
    assert.equal(ws.frames("send").length, 1);
    await h.clock.advance(1);
    assert.equal(ws.frames("send").length, 2);
    assert.equal(ws.frames("send")[1].id, id);
    ws.deliver(event(1, { id, from: "alice", event: "chat" }));
    assert.equal((await sent).seq, 1);
    assert.equal(h.seen.errors.length, 0);
  });

  it("other error frames reject that send, drop it from the outbox and go on with the next", async () => {
    const h = harness();
    const ws = await h.connected();
    const refused = h.client.send("clear", {});
    const next = h.client.send("chat", { text: "after" });
    const { id } = ws.frames("send")[0];
    ws.deliver({ type: "error", code: "forbidden", message: "a student may not send 'clear' events", id });
    await assert.rejects(refused, (error) => error instanceof ClasswireError && error.code === "forbidden");
    assert.equal(h.seen.errors[0].code, "forbidden");
    const second = ws.frames("send")[1];
    assert.equal(second.event, "chat");
    ws.deliver(event(1, { id: second.id, from: "alice", event: "chat" }));
    assert.equal((await next).seq, 1);
  });

  it("an `ack` frame resolves the pending send, which is not resent", async () => {
    const h = harness();
    const ws = await h.connected();
    const sent = h.client.send("chat", { text: "long ago" });
    const { id } = ws.frames("send")[0];
    ws.drop();
    await h.clock.advance(10_000);
    const again = h.socket();
    again.accept();
    again.deliver(page([]));
    assert.equal(again.frames("send")[0].id, id);
    again.deliver({ type: "ack", id, seq: 42, epoch: "3fa9c01d22b7e810" });
    assert.equal(h.client.pending, 0);
    assert.deepEqual(await sent, { type: "ack", id, seq: 42, epoch: "3fa9c01d22b7e810" });
    await h.clock.advance(60_000);
    assert.equal(again.frames("send").length, 1, "never resent");
  });

  it("a send whose first attempt is older than resendWindowMs is rejected `expired`, not resent", async () => {
    const h = harness();
    const ws = await h.connected();
    const stale = h.client.send("chat", { text: "stale" });
    const queued = h.client.send("chat", { text: "queued" }); // never attempted: its window has not started
    assert.equal(ws.frames("send").length, 1);
    h.client.drop({ offlineMs: 600_001 });
    await h.clock.advance(600_001);
    const again = h.socket();
    assert.notEqual(again, ws);
    again.accept();
    again.deliver(page([]));
    assert.deepEqual(again.frames("send").map((f) => f.data.text), ["queued"]);
    await assert.rejects(stale, (e) => e instanceof ClasswireError && e.code === "expired");
    const { id } = again.frames("send")[0];
    again.deliver(event(1, { id, from: "alice", event: "chat" }));
    assert.equal((await queued).seq, 1);
  });

  it("volatile events go out at once, resolve with null and are not queued", async () => {
    const h = harness();
    const ws = await h.connected();
    h.client.send("chat", { text: "in flight" });
    assert.equal(await h.client.send("cursor", { x: 0.5, y: 0.5 }), null);
    assert.deepEqual(ws.frames("send").map((f) => f.event), ["chat", "cursor"]);
    ws.deliver({ type: "event", classroom: "c1", id: "z", from: "bob", event: "cursor", data: { x: 1 }, ts: 1 });
    assert.equal(h.seen.volatile.length, 1);
    assert.equal(h.seen.events.length, 0);
    ws.drop();
    assert.equal(await h.client.send("cursor", { x: 0 }), null);
  });

  it("ids are unique per client, 1..64 characters", () => {
    const a = harness().client;
    const b = harness().client;
    const ids = new Set([a.nextId(), a.nextId(), b.nextId(), b.nextId()]);
    assert.equal(ids.size, 4);
    for (const id of ids) assert.match(id, /^.{1,64}$/);
  });
});

describe("connection", () => {
  it("reconnects with exponential backoff and full jitter, capped", async () => {
    const draws = [];
    let draw = 0;
    const randoms = [1, 0, 0.999, 0.5, 1, 1, 1, 1, 1];
    const h = harness({
      random: () => {
        const r = randoms[draw++ % randoms.length];
        draws.push(r);
        return r;
      },
    });
    const ws = await h.connected();
    draws.length = 0;
    ws.drop();
    for (let i = 0; i < 5; i++) {
      const { delayMs } = h.seen.statuses.at(-1);
      const ceiling = Math.min(10_000, 250 * 2 ** i);
      assert.ok(delayMs >= 0 && delayMs <= ceiling, `attempt ${i}: ${delayMs} within [0, ${ceiling}]`);
      assert.equal(delayMs, Math.round(draws[i] * ceiling));
      await h.clock.advance(delayMs);
      h.socket().drop(); // still down
    }
    // Refused again and again (a browser cannot tell an ended class from an outage): once a minute.
    assert.equal(h.seen.statuses.at(-1).delayMs, 60_000, "suspended after maxConnectAttempts");
  });

  it("a stray sync page (a duplicate, or one no request awaits) is ignored", async () => {
    const h = harness();
    const ws = await h.connected([event(1), event(2)]);
    ws.deliver(page([event(1)], { reset: true }));
    assert.deepEqual(h.seqs(), [1, 2]);
    assert.equal(h.seen.resets, 0);
    assert.equal(h.client.stats.strayPages, 1);
  });

  it("after a reconnect that catches up, the backoff starts over", async () => {
    const h = harness({ random: () => 1 });
    const ws = await h.connected();
    ws.drop();
    await h.clock.advance(250);
    h.socket().drop();
    assert.equal(h.seen.statuses.at(-1).delayMs, 500);
    await h.clock.advance(500);
    h.socket().accept();
    h.socket().deliver(page([]));
    h.socket().drop();
    assert.equal(h.seen.statuses.at(-1).delayMs, 250);
  });

  it("a client that never gets in gives up and rejects connect()", async () => {
    const h = harness({ maxConnectAttempts: 3 });
    const done = h.client.connect();
    await tick();
    h.socket().drop();
    await h.clock.advance(10_000);
    h.socket().drop();
    await h.clock.advance(10_000);
    h.socket().drop();
    await assert.rejects(done, (e) => e.code === "connect_failed");
    assert.equal(h.client.status, "failed");
    assert.equal(FakeSocket.instances.length, 3);
  });

  it("drop({offlineMs}) stays away at least that long", async () => {
    const h = harness({ random: () => 0 });
    const ws = await h.connected();
    h.client.drop({ offlineMs: 2000 });
    assert.ok(ws.closedByClient);
    await h.clock.advance(1999);
    assert.equal(FakeSocket.instances.length, 1);
    await h.clock.advance(1);
    assert.equal(FakeSocket.instances.length, 2);
  });

  it("a malformed url fails connect() at once with connect_failed (no retry can mend it)", async () => {
    const h = harness({ url: "not a url" });
    await assert.rejects(h.client.connect(), (error) => error.code === "connect_failed" && /invalid url/.test(error.message));
    assert.equal(h.client.status, "failed");
    assert.equal(FakeSocket.instances.length, 0);
  });

  it("close() then connect() while the token is still being fetched goes on and connects", async () => {
    let release;
    const h = harness({ token: () => new Promise((resolve) => (release = resolve)) });
    const first = h.client.connect();
    await tick();
    h.client.close();
    await assert.rejects(first, (error) => error.code === "closed");
    const second = h.client.connect();
    release(jwt({ sub: "alice" }));
    await tick();
    h.socket().accept();
    h.socket().deliver(page([]));
    await second;
    assert.equal(h.client.status, "live");
  });

  it("connects with token and classroom in the query string; a token function is called per connection", async () => {
    let calls = 0;
    const h = harness({
      token: async () => {
        calls += 1;
        return jwt({ sub: "alice", n: calls });
      },
    });
    const ws = await h.connected();
    const url = new URL(ws.url);
    assert.equal(url.searchParams.get("classroom"), "c1");
    assert.equal(tokenSubject(url.searchParams.get("token")), "alice");
    assert.equal(h.client.user, "alice");
    ws.drop();
    await h.clock.advance(10_000);
    assert.equal(calls, 2);
  });

  it("pings every telemetryIntervalMs with the last applied seq and the smoothed lag", async () => {
    const h = harness({ telemetryIntervalMs: 30_000 });
    const ws = await h.connected();
    ws.deliver(event(1, { ts: h.clock.t - 100 }));
    ws.deliver(event(2, { ts: h.clock.t - 200 }));
    await h.clock.advance(29_999);
    assert.equal(ws.frames("ping").length, 0);
    await h.clock.advance(1);
    assert.deepEqual(ws.frames("ping"), [{ action: "ping", seq: 2, lagMs: 120 }]);
    assert.equal(h.client.behind, null);
    ws.deliver({ type: "pong", ts: 5, behind: 3 });
    assert.equal(h.client.behind, 3);
    await h.clock.advance(30_000);
    assert.equal(ws.frames("ping").length, 2);
  });

  it("keeps the keep-alive interval when it is shorter than the telemetry interval", async () => {
    const h = harness({ pingIntervalMs: 20_000, telemetryIntervalMs: 30_000 });
    const ws = await h.connected();
    await h.clock.advance(20_000);
    // No live event measured yet: the ping carries seq but no lagMs.
    assert.deepEqual(ws.frames("ping"), [{ action: "ping", seq: 0 }]);
  });

  it("sends bare keep-alive pings, which cost the server no Redis call, when telemetry is off", async () => {
    const h = harness({ pingIntervalMs: 60_000, telemetryIntervalMs: 0 });
    const ws = await h.connected();
    ws.deliver(event(1, { ts: h.clock.t - 100 }));
    await h.clock.advance(59_999);
    assert.equal(ws.frames("ping").length, 0);
    await h.clock.advance(1);
    assert.deepEqual(ws.frames("ping"), [{ action: "ping" }]);
    ws.deliver({ type: "pong", ts: 5 });
    assert.equal(h.client.behind, null);
  });

  it("caps a lag from a broken clock at what the server accepts", async () => {
    const h = harness();
    const ws = await h.connected();
    ws.deliver(event(1, { ts: h.clock.t - 10 * 24 * 3600 * 1000 }));
    await h.clock.advance(30_000);
    assert.deepEqual(ws.frames("ping"), [{ action: "ping", seq: 1, lagMs: 24 * 3600 * 1000 }]);
  });

  it("ignores empty, non-JSON and non-object frames", async () => {
    const h = harness();
    const ws = await h.connected();
    for (const raw of ["", "not json", "[1,2]", "null", "42", '"text"', '{"type":"mystery"}']) ws.deliver(raw);
    ws.onmessage({ data: new Uint8Array([1, 2]) });
    ws.deliver(event(1));
    assert.deepEqual(h.seqs(), [1]);
    assert.equal(h.seen.errors.length, 0);
  });

  it("an `end` stops reconnects; the server's close is final", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    const pending = h.client.send("chat", { text: "too late" });
    ws.deliver(event(2, { event: "end", from: "alice", role: "teacher", data: {} }));
    assert.equal(h.client.ended, true);
    assert.equal(h.client.status, "ended");
    await assert.rejects(pending, (e) => e.code === "ended");
    ws.drop(1000);
    await h.clock.advance(60_000);
    assert.equal(FakeSocket.instances.length, 1);
    await assert.rejects(h.client.send("chat", {}), (e) => e.code === "ended");
  });

  it("an `end` in the history that a reopening `join` follows is not this session's end", async () => {
    const h = harness();
    const ws = await h.connected([
      event(1, { event: "end", from: "alice", role: "teacher" }),
      event(2, { event: "join", from: "alice", role: "teacher", data: { connections: 1, reopened: true } }),
    ]);
    assert.equal(h.client.ended, false);
    assert.equal(h.client.status, "live");
    ws.drop();
    await h.clock.advance(10_000);
    assert.equal(FakeSocket.instances.length, 2);
  });

  it("an `end` that only leaves and students' joins follow is ended once caught up", async () => {
    const h = harness({ token: jwt({ sub: "bob", role: "student", classrooms: ["c1"] }) });
    const done = h.client.connect();
    await tick();
    const ws = h.socket();
    ws.accept();
    ws.deliver(page([
      event(1, { event: "join", from: "alice", role: "teacher", data: { connections: 1 } }),
      event(2, { event: "end", from: "alice", role: "teacher", data: {} }),
      event(3, { event: "leave", from: "alice", role: "teacher", data: { connections: 0 } }),
      event(4, { event: "join", from: "bob", role: "student", data: { connections: 1 } }),
    ]));
    assert.equal(h.client.ended, true);
    assert.equal(h.client.status, "ended");
    await assert.rejects(done, (e) => e.code === "ended");
    ws.drop(1000);
    await h.clock.advance(60_000);
    assert.equal(FakeSocket.instances.length, 1, "no reconnect");
  });

  it("an `end` that a reopening `join` follows in a catch-up is not ended; a live `end` ends at once", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    ws.drop();
    await h.clock.advance(10_000);
    const again = h.socket();
    again.accept();
    again.deliver(page([
      event(2, { event: "end", from: "alice", role: "teacher", data: {} }),
      event(3, { event: "join", from: "alice", role: "teacher", data: { connections: 1, reopened: true } }),
    ]));
    assert.equal(h.client.ended, false, "the teacher reopened the class");
    assert.equal(h.client.status, "live");
    again.deliver(event(4, { event: "end", from: "alice", role: "teacher", data: {} }));
    assert.equal(h.client.ended, true);
    assert.equal(h.client.status, "ended");
  });

  it("a teacher's own reconnect after its unapplied `end` does not reopen: the catch-up ends it", async () => {
    const h = harness({ reopen: true });
    const ws = await h.connected([event(1)]);
    assert.ok(ws.url.includes("reopen=1"), "the first connection asks to reopen");
    ws.drop();
    await h.clock.advance(10_000);
    const again = h.socket();
    assert.ok(!again.url.includes("reopen"), "its reconnects never do");
    again.accept();
    again.deliver(page([
      event(2, { event: "end", from: "alice", role: "teacher", data: {} }),
      event(3, { event: "join", from: "alice", role: "teacher", data: { connections: 1 } }),
    ]));
    assert.equal(h.client.ended, true);
  });

  it("a send refused with `ended` ends the client", async () => {
    const h = harness();
    const ws = await h.connected([event(1)]);
    const sending = h.client.send("chat", { text: "late" });
    await tick();
    const { id } = ws.frames("send").at(-1);
    ws.deliver({ type: "error", code: "ended", message: "the class has ended", id, action: "send" });
    await assert.rejects(sending, (e) => e.code === "ended");
    assert.equal(h.client.status, "ended");
  });

  it("close() stops reconnecting and rejects pending sends", async () => {
    const h = harness();
    const ws = await h.connected();
    const pending = h.client.send("chat", { text: "x" });
    h.client.close();
    assert.deepEqual(ws.closedByClient, { code: 1000, reason: "client closed" });
    await assert.rejects(pending, (e) => e.code === "closed");
    await h.clock.advance(60_000);
    assert.equal(FakeSocket.instances.length, 1);
    assert.equal(h.client.status, "closed");
  });

  it("who() follows roster pages", async () => {
    const h = harness();
    const ws = await h.connected();
    const members = h.client.who();
    assert.deepEqual(ws.frames("who").at(-1), { action: "who", after: "" });
    ws.deliver({ type: "roster", members: [{ userId: "alice", connections: 1 }], more: true, next: "alice" });
    assert.deepEqual(ws.frames("who").at(-1), { action: "who", after: "alice" });
    ws.deliver({ type: "roster", members: [{ userId: "bob", connections: 2 }], more: false });
    assert.deepEqual((await members).map((m) => m.userId), ["alice", "bob"]);
    assert.equal(h.seen.rosters.length, 1);
  });

  it("a roster page that does not come is asked again after whoTimeoutMs, 3 times, then who() rejects", async () => {
    const h = harness();
    const ws = await h.connected();
    let failure = null;
    const members = h.client.who();
    members.catch((e) => (failure = e));
    await h.clock.advance(9_999);
    assert.equal(ws.frames("who").length, 1);
    await h.clock.advance(1);
    assert.equal(ws.frames("who").length, 2);
    await h.clock.advance(20_000);
    assert.deepEqual(ws.frames("who"), Array(4).fill({ action: "who", after: "" }));
    assert.equal(failure, null);
    await h.clock.advance(10_000);
    assert.equal(failure?.code, "timeout");
    assert.equal(ws.frames("who").length, 4);
  });

  it("a who refused with rate_limited is asked again after retryAfterMs", async () => {
    const h = harness();
    const ws = await h.connected();
    const members = h.client.who();
    ws.deliver({ type: "error", code: "rate_limited", message: "slow down", id: null, retryAfterMs: 1500, action: "who" });
    await h.clock.advance(1499);
    assert.equal(ws.frames("who").length, 1, "not at once");
    await h.clock.advance(1);
    assert.equal(ws.frames("who").length, 2);
    ws.deliver({ type: "roster", members: [{ userId: "alice", connections: 1 }], more: false });
    assert.deepEqual((await members).map((m) => m.userId), ["alice"]);
    assert.equal(h.seen.errors.length, 0);
  });

  it("an error frame without an id reaches onError", async () => {
    const h = harness();
    const ws = await h.connected();
    ws.deliver({ type: "error", code: "bad_request", message: "x", id: null });
    assert.equal(h.seen.errors.length, 1);
  });
});

describe("presence", () => {
  it("tracks occupancy and crowding from joins, pongs, rosters and presence frames, and hands presence frames on", async () => {
    const presence = [];
    const h = harness({ onPresence: (p) => presence.push(p) });
    const ws = await h.connected([event(1, { event: "join", data: { connections: 1, users: 3, crowded: false } })]);
    assert.equal(h.client.users, 3);
    assert.equal(h.client.crowded, false);
    ws.deliver(event(2, { event: "join", data: { connections: 1, users: 5, crowded: true } }));
    assert.equal(h.client.crowded, true);
    const changes = [{ userId: "s6", role: "student", name: "S6", present: true }];
    ws.deliver({ type: "presence", classroom: "c1", users: 6, crowded: true, changes });
    assert.deepEqual(presence.map((p) => p.changes), [changes]);
    assert.equal(h.client.users, 6);
    ws.deliver({ type: "presence", classroom: "c1", users: "junk", changes: "not a list" }); // ignored
    ws.deliver({ type: "pong", ts: 1, behind: 0, last: 2, users: -2 }); // not a count: kept
    assert.equal(h.client.users, 6);
    ws.deliver({ type: "pong", ts: 1, behind: 0, last: 2, users: 7, crowded: false });
    assert.equal(h.client.users, 7);
    assert.equal(h.client.crowded, false);
    ws.deliver({ type: "pong", ts: 2, behind: 0, last: 2, users: "many" }); // not a count: kept
    assert.equal(h.client.users, 7);
    assert.equal(presence.length, 1);
    const members = h.client.who();
    await tick();
    ws.deliver({ type: "roster", members: [], more: false, users: 4, crowded: false });
    await members;
    assert.deepEqual([h.client.users, h.client.crowded], [4, false]);
  });
});
