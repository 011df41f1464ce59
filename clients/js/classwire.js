// classwire JavaScript client: the protocol of README.md ("Protocol", "Delivery guarantee"), for browsers
// and Node 20. Dependency-free ES module.
//
// It hands persistent events to the application strictly in `seq` order, exactly once: out-of-order
// frames wait in a bounded buffer, a gap that persists is filled with `sync`, duplicates are dropped by
// `seq`, and a chain that does not link (`prev` != the previous `eid`, one seq with two eids, or another
// `epoch`, i.e. a restarted log) means the server's log diverged, so it resyncs naming the eid and epoch it
// holds and honours `reset`; resyncs that keep diverging back off exponentially. A telemetry pong that
// says the client is behind is followed by a sync if the events do not come. Its own persistent events go
// out one at a time, each after the previous one's acknowledgement (its own copy, or an `ack` frame when
// that copy has left the log); unacknowledged ones stay in an outbox and are resent with the same `id`
// after a reconnect, but never past `resendWindowMs` after their first attempt (they fail `expired`). Sync
// and `who` requests are asked again when their reply is lost or refused, so nothing stalls. The class is
// ended when the applied log holds an `end` with no join that reopened it after it (a teacher connecting
// with `reopen: true`).
//
//   const client = new ClasswireClient({ url: "wss://<api>/<stage>", token, classroom: "c1",
//     onEvent: (event, { replay }) => ..., onReset: () => ..., onStatus: (status) => ... });
//   await client.connect();                                // resolves once caught up ("live")
//   const acked = await client.send("chat", { text: "hi" }); // the logged event, with its seq
//   const members = await client.who();
//   client.close();

const OPEN = 1;
const DEFAULTS = {
  gapMs: 300, // how long an out-of-order frame waits for the missing ones before a sync
  maxBuffered: 1000, // out-of-order events held at most; beyond, the highest seqs are dropped and synced
  syncLimit: 200,
  syncTimeoutMs: 10_000, // no sync reply by then: ask again
  whoTimeoutMs: 10_000, // no roster page by then: ask again (WHO_RETRIES times, then reject)
  ackTimeoutMs: 10_000, // no acknowledgement and no error by then: resend (same id)
  // The server remembers a send's id for 15 minutes; a resend later than this could append it twice.
  resendWindowMs: 600_000,
  pingIntervalMs: 5 * 60_000, // API Gateway closes a connection idle for 10 minutes
  // Pings carry delivery telemetry (last applied seq, smoothed lag) this often, which also keeps the
  // connection alive; each costs a message, an invocation and a Redis round trip. 0: bare keep-alives.
  telemetryIntervalMs: 30_000,
  backoffBaseMs: 250, // reconnects, and resyncs that keep diverging, wait min(cap, base * 2^(n-1))
  backoffCapMs: 10_000,
  maxConnectAttempts: 6, // a client that never got in gives up (a refused token retries otherwise forever)
  // After having been live, that many failed attempts in a row slow retries to this: a browser cannot see
  // why it is refused (an ended class answers 403), so it knocks once a minute, not every 10 s.
  suspendedRetryMs: 60_000,
  endGraceMs: 3_000, // after `end`, the server closes the socket; close it ourselves if it does not
  volatileEvents: ["cursor"],
};
const RECENT_EIDS = 4096; // eids kept per seq to spot a same-seq, different-event divergence
const MAX_USERS = 1_000_000; // an occupancy above this is not believed
const WHO_RETRIES = 3; // a roster page lost or failed this many more times rejects who()
const RETRYABLE = new Set(["rate_limited", "internal"]); // error codes that mean "ask again later"
const MAX_LAG_MS = 24 * 3600 * 1000; // the server refuses a larger lagMs (a broken clock, not a lag)

/** A send refused by the server (its error frame), or one that can no longer be delivered. */
export class ClasswireError extends Error {
  constructor(code, message, frame = null) {
    super(`${code}: ${message}`);
    this.name = "ClasswireError";
    this.code = code;
    this.frame = frame;
  }
}

function refusal(frame) {
  return new ClasswireError(frame.code ?? "error", frame.message ?? "", frame);
}

/** Reads the `sub` claim of a JWT without verifying it (to recognise this user's acknowledgements). */
export function tokenSubject(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")))
        .map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0"))
        .join(""),
    );
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : "";
  } catch {
    return "";
  }
}

/** Per-socket sync state: `notBefore` holds back the next sync (divergence back-off, retryAfterMs). */
function freshSync() {
  return { inFlight: false, again: false, notBefore: 0, diverged: false, failures: 0 };
}

function randomPrefix(random) {
  const bytes = new Uint8Array(6);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class ClasswireClient {
  /**
   * @param {object} options
   * @param {string} options.url        ws(s)://host/stage
   * @param {string|(() => string|Promise<string>)} options.token  a JWT, or a function fetching a fresh one per connection
   * @param {string} options.classroom
   * @param {boolean} [options.reopen]  a teacher reopening an ended class (on this client's first connection only)
   * @param {string} [options.user]     this user's id (default: the token's `sub`); recognises acknowledgements
   * @param {(event: object, info: {replay: boolean}) => void} [options.onEvent]  persistent events, in seq order
   * @param {(event: object) => void} [options.onVolatile]  volatile events (`cursor`), best effort
   * @param {() => void} [options.onReset]  the log no longer continues from what was applied: drop all state
   * @param {(status: string, detail: object) => void} [options.onStatus]
   *        connecting | syncing | live | reconnecting | ended | closed | failed
   * @param {(members: object[]) => void} [options.onRoster]
   * @param {(presence: object) => void} [options.onPresence]  a crowded classroom's students joining and
   *        leaving, to a teacher's connection (README, "Presence")
   * @param {(error: object) => void} [options.onError]  error frames and connection failures
   * @param {number} [options.maxBuffered]     out-of-order events held at most (1000)
   * @param {number} [options.syncTimeoutMs]   a sync with no reply by then is asked again (10 s)
   * @param {number} [options.whoTimeoutMs]    a roster page with no reply by then is asked again, 3 times, then who() rejects (10 s)
   * @param {number} [options.resendWindowMs]  a send is never resent later than this after its first attempt:
   *        it rejects with code `expired` (it may or may not have been appended) (600 s)
   * @param {number} [options.backoffBaseMs]   reconnects and diverging resyncs wait min(cap, base * 2^(n-1)) (250 ms)
   * @param {number} [options.backoffCapMs]    (10 s)
   * Tests may pass WebSocket, setTimeout, clearTimeout, now and random, and override any of DEFAULTS.
   */
  constructor(options) {
    const o = { ...DEFAULTS, ...options };
    if (!o.url || !o.token || !o.classroom) throw new TypeError("url, token and classroom are required");
    this.options = o;
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    if (!this._WebSocket) throw new TypeError("no WebSocket: pass options.WebSocket");
    this._setTimeout = o.setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = o.clearTimeout ?? ((t) => globalThis.clearTimeout(t));
    this._now = o.now ?? (() => Date.now());
    this._random = o.random ?? Math.random;
    this._volatile = new Set(o.volatileEvents);
    this.user = o.user ?? (typeof o.token === "string" ? tokenSubject(o.token) : "");
    this._idPrefix = randomPrefix(this._random);
    this._idCounter = 0;

    this.lastSeq = 0;
    this.lastEid = "";
    this.epoch = ""; // the incarnation of the log that was applied, "" until known
    this.lagMs = null;
    this.behind = null; // events the server had that this client had not applied, at the last telemetry ping
    this.status = "idle";
    this.ended = false;
    this.users = null; // the classroom's occupancy, as last heard (pong, roster, join, leave, presence)
    // Students' joins and leaves are not in the log (teachers get them in `presence` frames): a roster built
    // from join and leave events is incomplete, and `who()` is the one to read.
    this.crowded = false;
    this.stats = { applied: 0, replayed: 0, duplicates: 0, syncs: 0, gapSyncs: 0, divergences: 0, resets: 0, resends: 0, reconnects: 0, strayPages: 0 };

    this._ws = null;
    this._open = false;
    this._closing = false;
    this._everCaughtUp = false;
    this._attempt = 0; // consecutive connection attempts that did not reach `live`
    this._holdUntil = 0;
    this._timers = {
      reconnect: null, gap: null, sync: null, resync: null, behind: null, ping: null, outbox: null, who: null, end: null,
    };
    this._buffer = new Map(); // seq -> event, waiting for the ones before it
    this._recent = new Map(); // seq -> eid of applied events
    this._endInLog = false; // the applied log holds an `end` with no reopening `join` after it
    this._reopen = Boolean(o.reopen); // ask to reopen an ended class until a socket has opened once
    this._catchingUp = false; // this socket has not finished its first sync
    this._divergences = 0; // consecutive divergences, since the last page that linked
    this._unfilled = 0; // complete syncs that left the buffer unfilled: its gap timer backs off
    this._sync = freshSync();
    this._outbox = []; // [{id, event, data, resolve, reject, sent, attempts, firstAt}]
    this._whoQueue = []; // [{resolve, reject, members, after, sent, retries}]
    this._connectWaiters = [];
    this._opening = false;
  }

  // -- public API -------------------------------------------------------------------------------

  /** Opens the connection; resolves once caught up (`live`). Reconnects on its own until close(). */
  connect() {
    if (this.ended) return Promise.reject(new ClasswireError("ended", "the class has ended"));
    const done = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.status === "live") this._settleConnect(null);
    else if (!this._ws && !this._timers.reconnect) {
      this._closing = false;
      this._attempt = 0;
      this._setStatus("connecting");
      // An open still awaiting its token (from before a close()) goes on, now that closing is off.
      if (!this._opening) this._openSocket();
    }
    return done;
  }

  /**
   * Publishes an event. Persistent events resolve with their acknowledged copy (which carries `seq`), or
   * with `{type: "ack", id, seq, epoch}` when a resend finds that copy already gone from the log; they
   * reject with code `expired` rather than be resent past `resendWindowMs`. Volatile ones resolve with
   * null at once (best effort, dropped while disconnected).
   */
  send(event, data, { id } = {}) {
    if (typeof event !== "string" || !event) return Promise.reject(new TypeError("event must be a non-empty string"));
    if (this.ended) return Promise.reject(new ClasswireError("ended", "the class has ended"));
    if (this._closing) return Promise.reject(new ClasswireError("closed", "the client is closed"));
    const clientId = id ?? this.nextId();
    if (this._volatile.has(event)) {
      if (this._open) this._sendFrame({ action: "send", id: clientId, event, data });
      return Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      this._outbox.push({ id: clientId, event, data, resolve, reject, sent: false, attempts: 0, firstAt: 0 });
      this._pumpOutbox();
    });
  }

  /** The classroom's members (every roster page), also handed to onRoster. */
  who() {
    if (this.ended) return Promise.reject(new ClasswireError("ended", "the class has ended"));
    if (this._closing) return Promise.reject(new ClasswireError("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      this._whoQueue.push({ resolve, reject, members: [], after: "", sent: false, retries: 0 });
      this._pumpWho();
    });
  }

  /** A fresh client id (1..64 characters, unique per client). */
  nextId() {
    this._idCounter += 1;
    return `${this._idPrefix}-${this._idCounter}`;
  }

  /** Closes for good: no reconnect; unacknowledged sends are rejected. */
  close() {
    this._closing = true;
    this._clearAllTimers();
    const ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch {
        /* already closing */
      }
    }
    this._failPending(new ClasswireError("closed", "the client is closed"));
    if (!this.ended) this._setStatus("closed");
  }

  /** Cuts the socket as a network failure would; reconnects after `offlineMs` at the earliest. */
  drop({ offlineMs = 0 } = {}) {
    if (this._closing || this.ended) return;
    this._holdUntil = this._now() + offlineMs;
    const ws = this._ws;
    if (!ws) return;
    try {
      ws.close(4000, "dropped");
    } catch {
      /* ignore */
    }
    this._onSocketClosed(ws, { code: 4000, reason: "dropped" });
  }

  /** Unacknowledged persistent sends. */
  get pending() {
    return this._outbox.length;
  }

  // -- connection -------------------------------------------------------------------------------

  async _openSocket() {
    this._timers.reconnect = null;
    if (this._closing || this.ended) return;
    let token = this.options.token;
    try {
      this._opening = true;
      if (typeof token === "function") token = await token();
      if (!this.options.user) this.user = tokenSubject(token) || this.user;
    } catch (error) {
      this._report({ type: "error", code: "token_failed", message: String(error?.message ?? error), id: null });
      this._scheduleReconnect();
      return;
    } finally {
      this._opening = false;
    }
    if (this._closing || this.ended) return;
    let url;
    try {
      url = new URL(this.options.url);
    } catch (error) {
      // No retry mends a malformed URL: fail at once, as after the last attempt.
      const failure = new ClasswireError("connect_failed", `invalid url: ${String(error?.message ?? error)}`);
      this._setStatus("failed");
      this._closing = true;
      this._failPending(failure);
      return;
    }
    url.searchParams.set("token", token);
    url.searchParams.set("classroom", this.options.classroom);
    // batch=1: the server may send several events in one `events` frame (one message, not many).
    url.searchParams.set("batch", "1");
    if (this._reopen) url.searchParams.set("reopen", "1");
    let ws;
    try {
      ws = new this._WebSocket(url.toString());
    } catch (error) {
      this._report({ type: "error", code: "connect_failed", message: String(error?.message ?? error), id: null });
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    ws.onopen = () => ws === this._ws && this._onOpen();
    ws.onmessage = (message) => ws === this._ws && this._onMessage(message.data);
    ws.onclose = (event) => this._onSocketClosed(ws, event);
    ws.onerror = () => {}; // always followed by close
  }

  _onOpen() {
    this._open = true;
    this._reopen = false; // an explicit act, once: this client's own reconnects never reopen a class
    this._catchingUp = true;
    this._sync = freshSync();
    this._setStatus("syncing");
    this._armPing();
    this._requestSync();
    this._pumpWho();
  }

  _onSocketClosed(ws, event) {
    if (ws !== this._ws) return; // a socket already given up on
    const wasOpen = this._open;
    this._detach();
    if (this._closing) return;
    if (this.ended) {
      this._setStatus("ended");
      return;
    }
    if (!wasOpen || !this._everCaughtUp) this._report({ type: "error", code: "connect_failed", message: `socket closed (${event?.code ?? "?"})`, id: null });
    this._scheduleReconnect();
  }

  _detach() {
    const ws = this._ws;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._ws = null;
    this._open = false;
    this._catchingUp = false;
    this._sync = freshSync();
    for (const name of ["sync", "resync", "behind", "ping", "outbox", "who", "gap"]) this._clear(name);
    for (const item of this._outbox) item.sent = false;
    for (const request of this._whoQueue) {
      request.sent = false;
      request.members = [];
      request.after = "";
      request.retries = 0;
    }
  }

  _scheduleReconnect() {
    if (this._closing || this.ended) return;
    if (!this._everCaughtUp && this._attempt + 1 >= this.options.maxConnectAttempts) {
      const error = new ClasswireError("connect_failed", `could not connect after ${this._attempt + 1} attempts`);
      this._setStatus("failed");
      this._closing = true;
      this._failPending(error);
      return;
    }
    // Full jitter: a classroom cut off together does not come back together.
    const ceiling = this._backoff(this._attempt + 1);
    const suspended = this._attempt + 1 >= this.options.maxConnectAttempts;
    const delay = Math.max(
      suspended ? this.options.suspendedRetryMs : this._random() * ceiling,
      this._holdUntil - this._now(),
    );
    this._attempt += 1;
    this.stats.reconnects += 1;
    this._setStatus("reconnecting", { attempt: this._attempt, delayMs: Math.round(delay) });
    this._timers.reconnect = this._setTimeout(() => this._openSocket(), delay);
  }

  _armPing() {
    this._clear("ping");
    const telemetry = this.options.telemetryIntervalMs > 0;
    const interval = telemetry
      ? Math.min(this.options.pingIntervalMs, this.options.telemetryIntervalMs)
      : this.options.pingIntervalMs;
    this._timers.ping = this._setTimeout(() => {
      // A bare ping costs the server no Redis call; one with `seq` is recorded for `who` and the metrics.
      const frame = { action: "ping" };
      if (telemetry) {
        frame.seq = this.lastSeq;
        if (this.lagMs !== null) frame.lagMs = Math.min(MAX_LAG_MS, Math.round(this.lagMs));
      }
      this._sendFrame(frame);
      this._armPing();
    }, interval);
  }

  _sendFrame(frame) {
    if (!this._open || !this._ws || this._ws.readyState !== OPEN) return false;
    try {
      this._ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  // -- incoming ---------------------------------------------------------------------------------

  _onEvent(frame) {
    if (frame.seq === undefined || frame.seq === null) {
      this._call("onVolatile", frame);
      return;
    }
    this._measureLag(frame);
    this._acknowledge(frame);
    this._accept(frame, false);
  }

  _onMessage(raw) {
    if (typeof raw !== "string" || raw === "") return; // API Gateway may send an empty route response
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) return;
    switch (frame.type) {
      case "event":
        this._onEvent(frame);
        return;
      case "events": // several events in one frame, each exactly as its own `event` frame
        if (!Array.isArray(frame.events)) return;
        for (const event of frame.events) {
          if (event && typeof event === "object" && event.type === "event") this._onEvent(event);
        }
        return;
      case "sync":
        this._onSyncPage(frame);
        return;
      case "roster":
        this._onRoster(frame);
        return;
      case "ack":
        this._onAck(frame);
        return;
      case "error":
        this._onErrorFrame(frame);
        return;
      case "pong":
        this._onPong(frame);
        return;
      case "presence":
        if (!Array.isArray(frame.changes)) return;
        this._heardPresence(frame);
        this._call("onPresence", frame);
        return;
      default:
        return; // anything newer
    }
  }

  /** Occupancy and crowding from a pong, roster page, presence frame or a join or leave's data. */
  _heardPresence(frame) {
    if (Number.isInteger(frame.users) && frame.users >= 0 && frame.users <= MAX_USERS) this.users = frame.users;
    if (typeof frame.crowded === "boolean") this.crowded = frame.crowded;
  }

  _onPong(pong) {
    this._heardPresence({ users: pong.users, crowded: pong.crowded });
    if (Number.isInteger(pong.behind)) this.behind = pong.behind;
    if (!this._sameEpoch(pong)) {
      this._diverged(); // the log restarted: the resync names our epoch and gets `reset`
      return;
    }
    if (Number.isInteger(pong.last) && pong.last < this.lastSeq) {
      // The log is behind us (a failover lost what we hold, in a quiet classroom): the sync names the event
      // held, which the server answers with `reset`. (A frame that overtook the pong costs one idle sync.)
      this._requestSync();
      return;
    }
    if (!Number.isInteger(pong.behind) || pong.behind <= 0 || !Number.isInteger(pong.last)) return;
    // `behind` counts events still in flight to us: give them the gap time before asking for them.
    this._clear("behind");
    this._timers.behind = this._setTimeout(() => {
      this._timers.behind = null;
      if (this.lastSeq < pong.last) this._requestSync();
    }, this.options.gapMs);
  }

  _measureLag(event) {
    if (typeof event.ts !== "number") return;
    const sample = Math.max(0, this._now() - event.ts);
    this.lagMs = this.lagMs === null ? sample : 0.8 * this.lagMs + 0.2 * sample;
  }

  /** Takes one persistent event; returns false when the chain broke (a resync is under way). */
  _accept(event, replay) {
    const seq = event.seq;
    if (!Number.isInteger(seq) || seq < 1) return true;
    // Before the duplicate check: a restarted log's seq 1 is not our seq 1.
    if (!this._sameEpoch(event)) return this._diverged();
    if (seq <= this.lastSeq) {
      const known = this._recent.get(seq);
      if (known !== undefined && event.eid !== known) return this._diverged();
      this.stats.duplicates += 1;
      return true;
    }
    if (seq > this.lastSeq + 1) {
      const held = this._buffer.get(seq);
      if (held && held.eid !== event.eid) return this._diverged();
      this._buffer.set(seq, event);
      if (this._buffer.size > this.options.maxBuffered) {
        // Keep the lowest seqs, the next to apply; the dropped ones come back by sync.
        this._buffer.delete(Math.max(...this._buffer.keys()));
        this._requestSync();
      }
      this._armGap();
      return true;
    }
    if (this.lastEid && event.prev !== this.lastEid) return this._diverged();
    this._apply(event, replay);
    return this._drainBuffer(replay);
  }

  _drainBuffer(replay) {
    for (const [seq, held] of this._buffer) {
      if (seq > this.lastSeq) continue;
      this._buffer.delete(seq);
      const known = this._recent.get(seq);
      if (known !== undefined && held.eid !== known) return this._diverged();
    }
    while (this._buffer.has(this.lastSeq + 1)) {
      const next = this._buffer.get(this.lastSeq + 1);
      this._buffer.delete(this.lastSeq + 1);
      // Buffered before the epoch was known, it may belong to another one.
      if (!this._sameEpoch(next) || (this.lastEid && next.prev !== this.lastEid)) return this._diverged();
      this._apply(next, replay);
    }
    if (this._buffer.size) this._armGap();
    else {
      this._clear("gap");
      this._unfilled = 0;
    }
    return true;
  }

  /** An event, page or pong of the log this client applied (either side's epoch may still be unknown). */
  _sameEpoch(frame) {
    return !frame.epoch || !this.epoch || frame.epoch === this.epoch;
  }

  _apply(event, replay) {
    this.lastSeq = event.seq;
    this.lastEid = typeof event.eid === "string" ? event.eid : "";
    if (event.epoch) this.epoch = event.epoch;
    this._recent.set(event.seq, this.lastEid);
    this._recent.delete(event.seq - RECENT_EIDS);
    // Only a teacher's explicit reopen lifts an `end` (its own reconnect does not).
    if (event.event === "end") this._endInLog = true;
    else if (event.event === "join" && event.data?.reopened === true) this._endInLog = false;
    if ((event.event === "join" || event.event === "leave") && event.data && typeof event.data === "object") {
      this._heardPresence(event.data);
    }
    this.stats.applied += 1;
    if (replay) this.stats.replayed += 1;
    this._call("onEvent", event, { replay });
    // A live `end` ends at once; one from a sync is judged when it is done (a reopening `join` may follow).
    if (event.event === "end" && !replay && !this._catchingUp) this._end();
  }

  _diverged() {
    // The server's log is not the one this client applied (e.g. a failover lost events, or the log
    // restarted): ask from the eid and epoch held; the server answers `reset` if it does not have them.
    this.stats.divergences += 1;
    this._buffer.clear();
    this._clear("gap");
    if (!this._sync.diverged) {
      // Counted once per sync reply (the frames after the first are the same divergence), and backed
      // off, so a server that keeps answering pages that do not link does not get a sync per round trip.
      this._sync.diverged = true;
      this._divergences += 1;
      this._sync.notBefore = Math.max(this._sync.notBefore, this._now() + this._backoff(this._divergences));
    }
    this._requestSync();
    return false;
  }

  _armGap() {
    if (this._timers.gap) return;
    this._timers.gap = this._setTimeout(() => {
      this._timers.gap = null;
      if (this._sync.inFlight || this._timers.resync) return; // its reply fills the gap or re-arms this timer
      const first = Math.min(...this._buffer.keys());
      if (this._buffer.size && first > this.lastSeq + 1) {
        this.stats.gapSyncs += 1;
        this._requestSync();
      }
    }, this.options.gapMs * 2 ** this._unfilled);
  }

  _requestSync() {
    if (!this._open) return; // every (re)connect starts with a sync anyway
    if (this._sync.inFlight) {
      this._sync.again = true;
      return;
    }
    const wait = this._sync.notBefore - this._now();
    if (wait > 0) {
      if (!this._timers.resync) {
        this._timers.resync = this._setTimeout(() => {
          this._timers.resync = null;
          this._requestSync();
        }, wait);
      }
      return;
    }
    this._sendSync();
  }

  _sendSync() {
    this._sync.inFlight = true;
    this._sync.again = false;
    this._clear("resync"); // this one serves it
    this.stats.syncs += 1;
    const frame = { action: "sync", since: this.lastSeq, sinceEid: this.lastEid, limit: this.options.syncLimit };
    if (this.epoch) frame.epoch = this.epoch; // a log restarted since answers `reset`
    this._sendFrame(frame);
    this._clear("sync");
    this._timers.sync = this._setTimeout(() => {
      this._timers.sync = null; // the reply was lost: ask again
      if (this._open) this._sendSync();
    }, this.options.syncTimeoutMs);
  }

  _onSyncError(frame) {
    // The server answered, though not with a page: ask again later (never at once), or the catch-up stalls.
    this._sync.inFlight = false;
    this._clear("sync");
    this._sync.failures += 1;
    this._sync.notBefore = Math.max(this._sync.notBefore, this._now() + this._retryDelay(frame, this._sync.failures));
    if (!RETRYABLE.has(frame.code)) this._report(frame);
    this._requestSync();
  }

  _onSyncPage(page) {
    // A page no request is waiting for (a duplicate, or a reply that came after its timeout's resend
    // was answered) would rewind what was applied: only an awaited page counts.
    if (!this._sync.inFlight) {
      this.stats.strayPages += 1;
      return;
    }
    this._sync.diverged = false;
    this._sync.failures = 0;
    const events = Array.isArray(page.events) ? page.events : [];
    const epoch = typeof page.epoch === "string" ? page.epoch : "";
    let linked = true;
    if (page.reset) {
      // Not counted for a client that held nothing (a first sync starting at the last `clear`, or past a
      // trim): it lost nothing, and live events that came before the page and follow it are kept. onReset
      // is still called: the application builds from this page.
      const kept =
        this.lastSeq === 0
          ? [...this._buffer].filter(([seq, e]) => seq > Number(page.last) && (!e.epoch || e.epoch === epoch))
          : [];
      if (this.lastSeq > 0) this.stats.resets += 1;
      this._buffer.clear();
      for (const [seq, e] of kept) this._buffer.set(seq, e);
      this._recent.clear();
      this._clear("gap");
      this._endInLog = false;
      this.epoch = epoch;
      const first = Number.isInteger(events[0]?.seq) ? events[0] : null;
      this.lastSeq = first ? first.seq - 1 : Number(page.last) || 0;
      this.lastEid = first ? first.prev || "" : "";
      this._call("onReset");
    } else if (!this._sameEpoch(page)) {
      linked = this._diverged(); // another log answered without `reset`
    }
    for (const event of events) {
      if (!linked) break;
      this._acknowledge(event);
      linked = this._accept(event, true);
    }
    if (linked) {
      if (!page.reset) this._divergences = 0; // it continued the chain this client held
      if (!this.epoch) this.epoch = epoch;
      if (page.more) {
        this._sendSync();
        return;
      }
    }
    this._sync.inFlight = false;
    this._clear("sync");
    if (!linked || this._sync.again) {
      this._requestSync(); // diverged, or asked for meanwhile: that sync's reply finishes the catch-up
      return;
    }
    if (this._endInLog) this._end(); // caught up on a log whose last `end` nothing reopened
    if (this.ended) return;
    if (this._catchingUp) {
      this._catchingUp = false;
      this._everCaughtUp = true;
      this._attempt = 0;
      this._setStatus("live");
      this._settleConnect(null);
      this._pumpOutbox();
    }
    if (this._buffer.size) {
      // Still buffered: past the log's last as the server saw it, in flight or not in the log at all.
      this._unfilled += 1;
      this._clear("gap");
      if (this.options.gapMs * 2 ** this._unfilled > Math.max(this.options.gapMs, this.options.backoffCapMs)) {
        this._buffer.clear();
        this._unfilled = 0;
      } else this._armGap();
    }
  }

  _end() {
    if (this.ended) return;
    this.ended = true;
    this._clear("ping");
    this._clear("reconnect");
    this._failPending(new ClasswireError("ended", "the class has ended"));
    this._setStatus("ended");
    const ws = this._ws;
    if (ws) {
      // The server closes every connection after `end`; one that came back by sync is ours to close.
      this._timers.end = this._setTimeout(() => {
        this._timers.end = null;
        if (this._ws === ws) {
          this._detach();
          try {
            ws.close(1000, "class ended");
          } catch {
            /* ignore */
          }
        }
      }, this.options.endGraceMs);
    }
  }

  // -- outbox -----------------------------------------------------------------------------------

  _pumpOutbox() {
    const head = this._outbox[0];
    if (!head || head.sent || !this._open || this._catchingUp || this.ended || this._timers.outbox) return;
    if (head.attempts && this._now() - head.firstAt > this.options.resendWindowMs) {
      // The server may have forgotten its id: a resend could append it twice, so the application decides.
      this._takeSend(0).reject(new ClasswireError("expired", "may or may not have been appended; look for its id in the log"));
      this._pumpOutbox();
      return;
    }
    head.sent = true;
    head.attempts += 1;
    if (head.attempts === 1) head.firstAt = this._now();
    else this.stats.resends += 1;
    this._sendFrame({ action: "send", id: head.id, event: head.event, data: head.data });
    this._timers.outbox = this._setTimeout(() => {
      this._timers.outbox = null; // neither acknowledgement nor error: resend, same id
      if (this._outbox[0] === head) {
        head.sent = false;
        this._pumpOutbox();
      }
    }, this.options.ackTimeoutMs);
  }

  /** Removes a pending send from the outbox (and its resend timer if it is the head) and returns it. */
  _takeSend(index) {
    const [item] = this._outbox.splice(index, 1);
    if (index === 0) this._clear("outbox");
    return item;
  }

  _acknowledge(event) {
    if (event.id === null || event.id === undefined || !this._outbox.length) return;
    if (this.user && event.from !== this.user) return;
    const index = this._outbox.findIndex((item) => item.id === event.id && item.event === event.event);
    if (index < 0) return;
    this._takeSend(index).resolve(event);
    this._pumpOutbox();
  }

  _onAck(frame) {
    // A resend whose event was appended but has left the log since: no copy will come, this frame is
    // the acknowledgement (and the send must not go out again).
    const index = this._outbox.findIndex((item) => item.id === frame.id);
    if (index < 0) return;
    this._takeSend(index).resolve({ type: "ack", id: frame.id, seq: frame.seq, epoch: frame.epoch });
    this._pumpOutbox();
  }

  _onErrorFrame(frame) {
    if (frame.action === "sync") {
      this._onSyncError(frame);
      return;
    }
    if (frame.action === "who") {
      this._onWhoError(frame);
      return;
    }
    const index = frame.id == null ? -1 : this._outbox.findIndex((item) => item.id === frame.id);
    if (index < 0) {
      this._report(frame);
      return;
    }
    const item = this._outbox[index];
    if (frame.code === "ended") {
      this._report(frame);
      this._end(); // the class ended while this connection was still open
      return;
    }
    if (RETRYABLE.has(frame.code)) {
      // Same id again later: the server dedupes, so a retry never doubles an event.
      const wait = frame.code === "rate_limited"
        ? Math.max(0, Number(frame.retryAfterMs) || 1000)
        : Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * 2 ** Math.min(item.attempts, 10));
      this._clear("outbox");
      item.sent = true;
      this._timers.outbox = this._setTimeout(() => {
        this._timers.outbox = null;
        if (this._outbox[0] === item) {
          item.sent = false;
          this._pumpOutbox();
        }
      }, wait);
      return;
    }
    this._takeSend(index).reject(refusal(frame));
    this._report(frame);
    this._pumpOutbox();
  }

  // -- roster -----------------------------------------------------------------------------------

  _pumpWho() {
    const request = this._whoQueue[0];
    if (!request || request.sent || !this._open || this._timers.who) return;
    request.sent = true;
    this._sendFrame({ action: "who", after: request.after });
    this._timers.who = this._setTimeout(() => {
      this._timers.who = null; // the page was lost
      this._retryWho(request, new ClasswireError("timeout", `no roster page in ${this.options.whoTimeoutMs} ms`), 0);
    }, this.options.whoTimeoutMs);
  }

  /** Asks for the head request's page again after `wait`; a `failure` counts, past WHO_RETRIES it rejects. */
  _retryWho(request, failure, wait) {
    if (failure) {
      if (request.retries >= WHO_RETRIES) {
        this._rejectWho(failure);
        return;
      }
      request.retries += 1;
    }
    this._timers.who = this._setTimeout(() => {
      this._timers.who = null;
      request.sent = false;
      this._pumpWho();
    }, wait);
  }

  _rejectWho(error) {
    this._whoQueue.shift().reject(error);
    this._pumpWho();
  }

  _onWhoError(frame) {
    const request = this._whoQueue[0];
    if (!request) {
      this._report(frame);
      return;
    }
    this._clear("who");
    // A refusal for the rate is no failure of the page: it does not use up a retry.
    if (frame.code === "rate_limited") this._retryWho(request, null, this._retryDelay(frame, 1));
    else if (frame.code === "internal") this._retryWho(request, refusal(frame), this._retryDelay(frame, request.retries + 1));
    else {
      this._rejectWho(refusal(frame));
      this._report(frame);
    }
  }

  _onRoster(frame) {
    this._heardPresence(frame);
    const request = this._whoQueue[0];
    const members = Array.isArray(frame.members) ? frame.members : [];
    if (!request) {
      this._call("onRoster", members);
      return;
    }
    this._clear("who");
    request.retries = 0; // the retries are per page
    request.members.push(...members);
    if (frame.more && typeof frame.next === "string") {
      request.after = frame.next;
      request.sent = false;
      this._pumpWho();
      return;
    }
    this._whoQueue.shift();
    request.resolve(request.members);
    this._call("onRoster", request.members);
    this._pumpWho();
  }

  // -- plumbing ---------------------------------------------------------------------------------

  _settleConnect(error) {
    const waiters = this._connectWaiters.splice(0);
    for (const waiter of waiters) error ? waiter.reject(error) : waiter.resolve();
  }

  _failPending(error) {
    this._settleConnect(error);
    for (const item of this._outbox.splice(0)) item.reject(error);
    for (const request of this._whoQueue.splice(0)) request.reject(error);
    this._clear("outbox");
    this._clear("who");
  }

  _setStatus(status, detail = {}) {
    if (status === this.status && status !== "reconnecting") return;
    this.status = status;
    this._call("onStatus", status, detail);
  }

  _report(frame) {
    this._call("onError", frame);
  }

  _call(name, ...args) {
    const callback = this.options[name];
    if (typeof callback !== "function") return;
    try {
      callback(...args);
    } catch (error) {
      // An application bug must not break delivery order for the events after it.
      if (globalThis.console) console.error(`classwire ${name} callback failed`, error);
    }
  }

  /** min(cap, base * 2^(n-1)): the wait after n consecutive failures. */
  _backoff(n) {
    return Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * 2 ** (n - 1));
  }

  /** The wait before asking again after an error frame: its retryAfterMs, else the back-off. */
  _retryDelay(frame, n) {
    const after = frame.retryAfterMs;
    return frame.code === "rate_limited" && Number.isFinite(after) && after >= 0 ? after : this._backoff(n);
  }

  _clear(name) {
    if (this._timers[name]) {
      this._clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  _clearAllTimers() {
    for (const name of Object.keys(this._timers)) this._clear(name);
  }
}
