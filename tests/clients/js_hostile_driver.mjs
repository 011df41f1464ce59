// Plays hostile-server scripts (tests/clients/hostile_server.py: compile_script) against the JS client,
// deterministically: one fake clock runs the client's timers and the script's moments in time order, a
// fake socket delivers the script's frames and answers the client's with the rules of
// hostile_server.Responder (kept the same here). One script (JSON) per stdin line, one outcome per stdout
// line: {segments, snapshot, syncTimes, pongTimes, deliveryTimes, connectionTimes} or {error}.
import { createInterface } from "node:readline";

import { ClasswireClient } from "../../clients/js/classwire.js";

const MAX_STEPS = 200_000; // a client that keeps scheduling timers at one moment is looping

/** Timers in (time, creation) order; time moves only when the driver runs the next one. */
class FakeClock {
  constructor() {
    this.t = 0;
    this.heap = [];
    this.live = new Map();
    this.count = 0;
    this.setTimeout = (fn, ms) => this.at(this.t + Math.max(0, Number(ms) || 0), fn);
    this.clearTimeout = (id) => this.live.delete(id);
    this.now = () => this.t;
  }

  at(time, fn) {
    const id = ++this.count;
    this.live.set(id, fn);
    const heap = this.heap;
    heap.push([time, id]);
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
    return id;
  }

  pop() {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l], heap[m])) m = l;
        if (r < heap.length && before(heap[r], heap[m])) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    }
    return top;
  }

  async runUntil(end) {
    let steps = 0;
    while (this.heap.length && this.heap[0][0] <= end) {
      const [time, id] = this.pop();
      const fn = this.live.get(id);
      if (!fn) continue;
      this.live.delete(id);
      this.t = time;
      fn();
      await new Promise((resolve) => setImmediate(resolve)); // the client's promise callbacks run
      if (++steps > MAX_STEPS) throw new Error(`more than ${MAX_STEPS} timers by ${time} ms: a loop`);
    }
    this.t = end;
  }
}

function before(a, b) {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function jwt(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

// -- the server's side: hostile_server.honest_page, divergent_page and Responder -----------------------

function honestPage(chain, version, request, pageSize) {
  const { first, last } = version;
  const retained = chain.events.slice(first - 1, last);
  const epoch = retained.length ? chain.epoch : "";
  const since = request.since ?? 0;
  const sinceEid = request.sinceEid ?? "";
  const reset =
    (Boolean(request.epoch) && request.epoch !== epoch) ||
    since > last ||
    since < first - 1 ||
    (since === first - 1 && retained.length > 0 && (sinceEid || since === 0) && sinceEid !== retained[0].prev) ||
    (since >= first && Boolean(sinceEid) && retained[since - first].eid !== sinceEid);
  const start = reset ? first : since + 1;
  const size = Math.min(request.limit || 200, pageSize);
  const events = retained.slice(start - first, start - first + size);
  return {
    type: "sync",
    events,
    last: events.length ? events.at(-1).seq : last,
    more: start - first + events.length < retained.length,
    reset,
    epoch,
  };
}

function divergentPage(seed, epoch, since) {
  const eid = (seq) => `d${seed.toString(16).padStart(6, "0")}${seq.toString(16).padStart(9, "0")}`;
  const events = [];
  for (let seq = since + 1; seq < since + 4; seq++) {
    events.push({
      type: "event", classroom: "c1", seq, eid: eid(seq), prev: eid(seq - 1), epoch, id: null, from: "ghost",
      role: "student", name: "Ghost", event: "stroke", data: { ghost: seq }, ts: 0,
    });
  }
  return { type: "sync", events, last: since + 3, more: false, reset: false, epoch };
}

class Responder {
  constructor(script) {
    this.script = script;
    this.version = { chain: 0, first: 1, last: 0 };
    this.syncs = { mode: "honest" };
    this.pongs = "honest";
    this.syncTimes = [];
    this.moreFrom = null;
  }

  apply(kind, arg) {
    if (kind === "log") this.version = arg;
    else if (kind === "syncs") this.syncs = arg;
    else if (kind === "pongs") this.pongs = arg;
  }

  answer(frame, now) {
    const chain = this.script.chains[this.version.chain];
    if (frame.action === "sync") {
      this.syncTimes.push([now, frame.since === this.moreFrom]);
      this.moreFrom = null;
      const { mode } = this.syncs;
      if (mode === "honest") {
        const page = honestPage(chain, this.version, frame, this.script.options.pageSize);
        this.moreFrom = page.more ? page.last : null;
        return [page];
      }
      if (mode === "diverge") {
        if (!frame.sinceEid) return [];
        return [divergentPage(this.script.seed, chain.epoch, frame.since ?? 0)];
      }
      if (mode === "internal" || mode === "rate_limited") {
        const error = { type: "error", code: mode, message: "refused", id: null, action: "sync" };
        if (mode === "rate_limited") error.retryAfterMs = this.syncs.retryAfterMs;
        return [error];
      }
      return [];
    }
    if (frame.action === "ping") {
      if (this.pongs === "drop") return [];
      if (!Number.isInteger(frame.seq)) return [{ type: "pong", ts: now }];
      const { first, last } = this.version;
      const epoch = last >= first ? chain.epoch : "";
      return [{ type: "pong", ts: now, behind: Math.max(0, last - frame.seq), last, epoch }];
    }
    return [];
  }
}

// -- one script ----------------------------------------------------------------------------------

async function play(script) {
  const options = script.options;
  const clock = new FakeClock();
  const responder = new Responder(script);
  const segments = [[]];
  const outcome = { segments, deliveryTimes: [], pongTimes: [], connectionTimes: [] };
  const sockets = [];

  class HostileSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      sockets.push(this);
      outcome.connectionTimes.push(clock.t);
      clock.setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.({});
      }, options.connectMs);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error("not open");
      for (const reply of responder.answer(JSON.parse(text), clock.t)) {
        if (reply.type === "pong") outcome.pongTimes.push(clock.t);
        clock.setTimeout(() => this.deliver(reply), options.rttMs);
      }
    }

    close(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      clock.setTimeout(() => this.onclose?.({ code, reason }), 0);
    }

    deliver(frame) {
      if (this.readyState === 1) this.onmessage?.({ data: JSON.stringify(frame) });
    }

    cut() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: "" });
    }
  }

  const client = new ClasswireClient({
    url: "ws://hostile/local",
    token: jwt({ sub: "me", role: "student", classrooms: ["c1"] }),
    classroom: "c1",
    user: "me",
    WebSocket: HostileSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: mulberry32(script.seed),
    gapMs: options.gapMs,
    syncTimeoutMs: options.syncTimeoutMs,
    backoffBaseMs: options.backoffBaseMs,
    backoffCapMs: options.backoffCapMs,
    telemetryIntervalMs: options.telemetryIntervalMs,
    maxBuffered: options.maxBuffered,
    maxConnectAttempts: Number.MAX_SAFE_INTEGER,
    onEvent: (event) => segments.at(-1).push(event),
    onReset: () => segments.push([]),
    onError: () => {},
  });

  const current = () => {
    const socket = sockets.at(-1);
    return socket && socket.readyState === 1 ? socket : null;
  };
  // One timer per moment, its entries in script order.
  const moments = new Map();
  for (const entry of script.timeline) {
    if (!moments.has(entry[0])) moments.set(entry[0], []);
    moments.get(entry[0]).push(entry);
  }
  for (const [time, entries] of moments) {
    clock.at(time, () => {
      for (const [, kind, arg] of entries) {
        if (kind === "deliver") {
          const socket = current();
          if (socket) {
            outcome.deliveryTimes.push(clock.t);
            socket.deliver(arg);
          }
        } else if (kind === "cut") {
          current()?.cut();
        } else if (kind === "snapshot") {
          outcome.snapshot = { segment: segments.length - 1, length: segments.at(-1).length };
        } else {
          responder.apply(kind, arg);
        }
      }
    });
  }

  client.connect().catch(() => {});
  await clock.runUntil(script.endAt);
  client.close();
  outcome.syncTimes = responder.syncTimes;
  return outcome;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let outcome;
  try {
    outcome = await play(JSON.parse(line));
  } catch (error) {
    outcome = { error: String(error?.stack ?? error) };
  }
  process.stdout.write(JSON.stringify(outcome) + "\n");
}
