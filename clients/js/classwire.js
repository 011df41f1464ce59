// classwire JavaScript client: the protocol of README.md ("Protocol", "Delivery guarantee"), for browsers
// and Node 20. Dependency-free ES module.
//
// It hands persistent events to the application strictly in `seq` order, exactly once: out-of-order
// frames wait in a buffer, a gap that persists is filled with `sync`, duplicates are dropped by `seq`,
// and a chain that does not link (`prev` != the previous `eid`, or one seq with two eids) means the
// server's log diverged, so it resyncs naming the eid it holds and honours `reset`. Its own persistent
// events go out one at a time, each after the previous one's acknowledgement; unacknowledged ones stay
// in an outbox and are resent with the same `id` after a reconnect.
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
  maxBuffered: 1000, // a buffer this full syncs at once
  syncLimit: 200,
  syncTimeoutMs: 10_000, // no sync reply by then: ask again
  ackTimeoutMs: 10_000, // no acknowledgement and no error by then: resend (same id)
  pingIntervalMs: 5 * 60_000, // API Gateway closes a connection idle for 10 minutes
  // Pings carry delivery telemetry (last applied seq, smoothed lag) this often, which also keeps the
  // connection alive; each costs a message, an invocation and a Redis round trip. 0: bare keep-alives.
  telemetryIntervalMs: 30_000,
  backoffBaseMs: 250,
  backoffCapMs: 10_000,
  maxConnectAttempts: 6, // a client that never got in gives up (a refused token retries otherwise forever)
  endGraceMs: 3_000, // after `end`, the server closes the socket; close it ourselves if it does not
  volatileEvents: ["cursor"],
};
const RECENT_EIDS = 4096; // eids kept per seq to spot a same-seq, different-event divergence
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
   * @param {string} [options.user]     this user's id (default: the token's `sub`); recognises acknowledgements
   * @param {(event: object, info: {replay: boolean}) => void} [options.onEvent]  persistent events, in seq order
   * @param {(event: object) => void} [options.onVolatile]  volatile events (`cursor`), best effort
   * @param {() => void} [options.onReset]  the log no longer continues from what was applied: drop all state
   * @param {(status: string, detail: object) => void} [options.onStatus]
   *        connecting | syncing | live | reconnecting | ended | closed | failed
   * @param {(members: object[]) => void} [options.onRoster]
   * @param {(error: object) => void} [options.onError]  error frames and connection failures
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
    this.lagMs = null;
    this.behind = null; // events the server had that this client had not applied, at the last telemetry ping
    this.status = "idle";
    this.ended = false;
    this.stats = { applied: 0, replayed: 0, duplicates: 0, syncs: 0, gapSyncs: 0, divergences: 0, resets: 0, resends: 0, reconnects: 0 };

    this._ws = null;
    this._open = false;
    this._closing = false;
    this._everCaughtUp = false;
    this._attempt = 0; // consecutive connection attempts that did not reach `live`
    this._holdUntil = 0;
    this._timers = { reconnect: null, gap: null, sync: null, ping: null, outbox: null, end: null };
    this._buffer = new Map(); // seq -> event, waiting for the ones before it
    this._recent = new Map(); // seq -> eid of applied events
    this._lastEvent = null; // name of the last applied event
    this._historyDone = false; // false while replaying history (an old `end` there is not this session's)
    this._catchingUp = false; // this socket has not finished its first sync
    this._sync = { inFlight: false, again: false };
    this._outbox = []; // [{id, event, data, resolve, reject, sent}]
    this._whoQueue = []; // [{resolve, reject, members, after, sent}]
    this._connectWaiters = [];
    this._opening = false;
  }

  // -- public API -------------------------------------------------------------------------------

  /** Opens the connection; resolves once caught up (`live`). Reconnects on its own until close(). */
  connect() {
    if (this.ended) return Promise.reject(new ClasswireError("ended", "the class has ended"));
    const done = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.status === "live") this._settleConnect(null);
    else if (!this._ws && !this._timers.reconnect && !this._opening) {
      this._closing = false;
      this._attempt = 0;
      this._setStatus("connecting");
      this._openSocket();
    }
    return done;
  }

  /**
   * Publishes an event. Persistent events resolve with their acknowledged copy (which carries `seq`);
   * volatile ones resolve with null at once (best effort, dropped while disconnected).
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
      this._outbox.push({ id: clientId, event, data, resolve, reject, sent: false, attempts: 0 });
      this._pumpOutbox();
    });
  }

  /** The classroom's members (every roster page), also handed to onRoster. */
  who() {
    if (this.ended) return Promise.reject(new ClasswireError("ended", "the class has ended"));
    if (this._closing) return Promise.reject(new ClasswireError("closed", "the client is closed"));
    return new Promise((resolve, reject) => {
      this._whoQueue.push({ resolve, reject, members: [], after: "", sent: false });
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
    const url = new URL(this.options.url);
    url.searchParams.set("token", token);
    url.searchParams.set("classroom", this.options.classroom);
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
    this._catchingUp = true;
    this._sync = { inFlight: false, again: false };
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
    this._sync = { inFlight: false, again: false };
    for (const name of ["sync", "ping", "outbox", "gap"]) this._clear(name);
    for (const item of this._outbox) item.sent = false;
    for (const request of this._whoQueue) {
      request.sent = false;
      request.members = [];
      request.after = "";
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
    const ceiling = Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * 2 ** this._attempt);
    const delay = Math.max(this._random() * ceiling, this._holdUntil - this._now());
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
        if (frame.seq === undefined || frame.seq === null) {
          this._call("onVolatile", frame);
          return;
        }
        this._measureLag(frame);
        this._acknowledge(frame);
        this._accept(frame, false);
        return;
      case "sync":
        this._onSyncPage(frame);
        return;
      case "roster":
        this._onRoster(frame);
        return;
      case "error":
        this._onErrorFrame(frame);
        return;
      case "pong":
        if (Number.isInteger(frame.behind)) this.behind = frame.behind;
        return;
      default:
        return; // anything newer
    }
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
      if (this._buffer.size >= this.options.maxBuffered) this._requestSync();
      else this._armGap();
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
      if (this.lastEid && next.prev !== this.lastEid) return this._diverged();
      this._apply(next, replay);
    }
    if (this._buffer.size) this._armGap();
    else this._clear("gap");
    return true;
  }

  _apply(event, replay) {
    this.lastSeq = event.seq;
    this.lastEid = typeof event.eid === "string" ? event.eid : "";
    this._recent.set(event.seq, this.lastEid);
    this._recent.delete(event.seq - RECENT_EIDS);
    this._lastEvent = event.event;
    this.stats.applied += 1;
    if (replay) this.stats.replayed += 1;
    this._call("onEvent", event, { replay });
    if (event.event === "end" && this._historyDone) this._end();
  }

  _diverged() {
    // The server's log is not the one this client applied (e.g. a failover lost events): ask from the
    // eid held; the server answers `reset` if it does not have it.
    this.stats.divergences += 1;
    this._buffer.clear();
    this._clear("gap");
    this._requestSync();
    return false;
  }

  _armGap() {
    if (this._timers.gap) return;
    this._timers.gap = this._setTimeout(() => {
      this._timers.gap = null;
      if (this._sync.inFlight) return; // its reply fills the gap or re-arms this timer
      const first = Math.min(...this._buffer.keys());
      if (this._buffer.size && first > this.lastSeq + 1) {
        this.stats.gapSyncs += 1;
        this._requestSync();
      }
    }, this.options.gapMs);
  }

  _requestSync() {
    if (!this._open) return; // every (re)connect starts with a sync anyway
    if (this._sync.inFlight) {
      this._sync.again = true;
      return;
    }
    this._sendSync();
  }

  _sendSync() {
    this._sync.inFlight = true;
    this._sync.again = false;
    this.stats.syncs += 1;
    this._sendFrame({ action: "sync", since: this.lastSeq, sinceEid: this.lastEid, limit: this.options.syncLimit });
    this._clear("sync");
    this._timers.sync = this._setTimeout(() => {
      this._timers.sync = null; // the reply was lost: ask again
      if (this._open) this._sendSync();
    }, this.options.syncTimeoutMs);
  }

  _onSyncPage(page) {
    const events = Array.isArray(page.events) ? page.events : [];
    if (page.reset) {
      this.stats.resets += 1;
      this._buffer.clear();
      this._recent.clear();
      this._clear("gap");
      this._historyDone = false;
      this._lastEvent = null;
      const first = Number.isInteger(events[0]?.seq) ? events[0] : null;
      this.lastSeq = first ? first.seq - 1 : Number(page.last) || 0;
      this.lastEid = first ? first.prev || "" : "";
      this._call("onReset");
    }
    for (const event of events) {
      this._acknowledge(event);
      if (!this._accept(event, true)) break;
    }
    if (page.more || this._sync.again) {
      this._sendSync();
      return;
    }
    this._sync.inFlight = false;
    this._clear("sync");
    if (!this._historyDone) {
      this._historyDone = true;
      if (this._lastEvent === "end") this._end();
    }
    if (this.ended) return;
    if (this._catchingUp) {
      this._catchingUp = false;
      this._everCaughtUp = true;
      this._attempt = 0;
      this._setStatus("live");
      this._settleConnect(null);
      this._pumpOutbox();
    }
    if (this._buffer.size) this._armGap();
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
    head.sent = true;
    head.attempts += 1;
    if (head.attempts > 1) this.stats.resends += 1;
    this._sendFrame({ action: "send", id: head.id, event: head.event, data: head.data });
    this._timers.outbox = this._setTimeout(() => {
      this._timers.outbox = null; // neither acknowledgement nor error: resend, same id
      if (this._outbox[0] === head) {
        head.sent = false;
        this._pumpOutbox();
      }
    }, this.options.ackTimeoutMs);
  }

  _acknowledge(event) {
    if (event.id === null || event.id === undefined || !this._outbox.length) return;
    if (this.user && event.from !== this.user) return;
    const index = this._outbox.findIndex((item) => item.id === event.id && item.event === event.event);
    if (index < 0) return;
    const [item] = this._outbox.splice(index, 1);
    if (index === 0) this._clear("outbox");
    item.resolve(event);
    this._pumpOutbox();
  }

  _onErrorFrame(frame) {
    const index = frame.id == null ? -1 : this._outbox.findIndex((item) => item.id === frame.id);
    if (index < 0) {
      this._report(frame);
      return;
    }
    const item = this._outbox[index];
    if (frame.code === "rate_limited" || frame.code === "internal") {
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
    this._outbox.splice(index, 1);
    if (index === 0) this._clear("outbox");
    item.reject(new ClasswireError(frame.code ?? "error", frame.message ?? "", frame));
    this._report(frame);
    this._pumpOutbox();
  }

  // -- roster -----------------------------------------------------------------------------------

  _pumpWho() {
    const request = this._whoQueue[0];
    if (!request || request.sent || !this._open) return;
    request.sent = true;
    this._sendFrame({ action: "who", after: request.after });
  }

  _onRoster(frame) {
    const request = this._whoQueue[0];
    const members = Array.isArray(frame.members) ? frame.members : [];
    if (!request) {
      this._call("onRoster", members);
      return;
    }
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
