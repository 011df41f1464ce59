// Type declarations for classwire.js, the classwire JavaScript client (README.md: "Protocol",
// "Delivery guarantee"). Hand-written to match the implementation; `tests/clients/test_js_types.py`
// compiles a consumer against them (`tsc -p clients/js`) and checks them against the module itself
// (`node clients/js/check-declarations.mjs`: exports, members, stats, option defaults, statuses, codes).
//
// The client does not validate the frames the server sends beyond what it needs for ordering (`seq`,
// `eid`, `prev`, `epoch`): the frame shapes below are the protocol's, and the client hands the server's
// objects to the callbacks as they were parsed.

// -- frames ---------------------------------------------------------------------------------------

/** A member's role, from the `role` claim of its token. */
export type Role = "teacher" | "student";

/**
 * An event's `data`: any JSON value. `undefined` is not allowed: `JSON.stringify` would leave `data` out
 * of the frame and the server refuses a `send` without it (`bad_request`).
 */
export type EventData = {} | null;

/**
 * A persistent event, as logged by the server and delivered by {@link ClasswireClientOptions.onEvent}
 * strictly in `seq` order, exactly once.
 */
/** What every event frame carries, persistent or volatile. */
export interface EventFrame {
  readonly type: "event";
  readonly classroom: string;
  /** The sender's user id (its token's `sub`). */
  readonly from: string;
  readonly role: Role;
  /** The sender's display name (`""` when its token has none). */
  readonly name: string;
  /** The event name: `chat`, `stroke`, `erase`, `clear`, `end`, `join`, `leave`, `cursor`, ... */
  readonly event: string;
  /** Whatever the sender sent; for `join`/`leave` a {@link MembershipData}. */
  readonly data: unknown;
  /** Server time of the event (a persistent one: of its append), in ms since the epoch. */
  readonly ts: number;
}

export interface PersistentEvent extends EventFrame {
  /** Per classroom it starts at 1 and rises by exactly 1 per persistent event (`join`/`leave` included). */
  readonly seq: number;
  /** This event's id. */
  readonly eid: string;
  /** The `eid` of the event before it; `""` for the first one of the log. */
  readonly prev: string;
  /** The incarnation of the classroom log; a log that restarts gets a new one and starts again at seq 1. */
  readonly epoch: string;
  /** The sender's client id (see {@link ClasswireClient.send}); `null` for the server's `join`/`leave`. */
  readonly id: string | null;
}

/** The `data` of the server's `join` and `leave` events. */
export interface MembershipData {
  /** That user's live connections to the classroom afterwards. */
  readonly connections: number;
  /** On a `join`: a teacher connected with `reopen` and lifted the class's `end`. */
  readonly reopened?: true;
}

/**
 * A volatile event (`cursor` by default): no `seq`, `eid`, `prev` or `epoch`, not logged, best effort;
 * delivered by {@link ClasswireClientOptions.onVolatile} as it arrives.
 */
export interface VolatileEvent extends EventFrame {
  /** The sender's client id. */
  readonly id: string;
}

/**
 * What a persistent {@link ClasswireClient.send} resolves with when its acknowledgement is not its own
 * copy: a resend found the event appended but gone from the log since (retention, a restarted log).
 */
export interface SendAck {
  readonly type: "ack";
  readonly id: string;
  readonly seq: number;
  readonly epoch: string;
}

/** The error codes of the server's error frames (README.md, "Errors"). */
export type ServerErrorCode =
  | "bad_request"
  | "unknown_action"
  | "forbidden"
  | "too_large"
  | "rate_limited"
  | "ended"
  | "internal";

/** An error frame from the server. */
export interface ServerErrorFrame {
  readonly type: "error";
  readonly code: ServerErrorCode;
  /** Exactly what was wrong. */
  readonly message: string;
  /** The refused frame's client id (a `send`'s), or `null`. */
  readonly id: string | null;
  /** The refused frame's action, when the server understood it. */
  readonly action?: "send" | "sync" | "who" | "ping";
  /** On `rate_limited`: how long to wait before asking again. */
  readonly retryAfterMs?: number;
}

/**
 * An error the client reports itself, shaped like an error frame: `token_failed` (the token function
 * threw or rejected) or `connect_failed` (the socket could not be created, or closed before the client
 * had been live); the client retries either way.
 */
export interface LocalErrorFrame {
  readonly type: "error";
  readonly code: "token_failed" | "connect_failed";
  readonly message: string;
  readonly id: null;
}

/** What {@link ClasswireClientOptions.onError} receives: a plain frame object, never an `Error`. */
export type ErrorFrame = ServerErrorFrame | LocalErrorFrame;

/** One student joining (`present: true`) or leaving a crowded classroom. */
export interface PresenceChange {
  readonly userId: string;
  readonly role: Role;
  readonly name: string;
  readonly present: boolean;
}

/** Students' joins and leaves of a crowded classroom, in order, sent to its teachers' connections. */
export interface PresenceFrame {
  readonly type: "presence";
  readonly classroom: string;
  /** The occupancy after these changes. */
  readonly users: number;
  readonly crowded: boolean;
  readonly changes: readonly PresenceChange[];
}

/** One member of the classroom, as `who` lists them (one entry per user). */
export interface RosterMember {
  readonly userId: string;
  readonly role: Role;
  /** `""` when the user's token has no name. */
  readonly name: string;
  /** The user's live connections to the classroom. */
  readonly connections: number;
  /** Delivery lag of the user's worst connection that reported in the last 60 s; `null` when none did. */
  readonly lagMs: number | null;
  /** Events that connection had not applied when it reported; `null` when none reported. */
  readonly behind: number | null;
}

// -- client state ---------------------------------------------------------------------------------

/**
 * The client's state. It starts `idle` (never reported to `onStatus`); `connecting` on
 * {@link ClasswireClient.connect}; `syncing` once a socket opened, until its first sync finished;
 * `live` when caught up; `reconnecting` before each new attempt; and at the end `ended` (the class
 * ended: for good), `closed` ({@link ClasswireClient.close}) or `failed` (it never got in after
 * `maxConnectAttempts` attempts). A later `connect()` restarts a `closed` or `failed` client, never an
 * `ended` one.
 */
export type ClasswireStatus =
  | "idle"
  | "connecting"
  | "syncing"
  | "live"
  | "reconnecting"
  | "ended"
  | "closed"
  | "failed";

/** The detail of a `reconnecting` status: the attempt about to be made, and the wait before it. */
export interface ReconnectDetail {
  readonly attempt: number;
  readonly delayMs: number;
}

/** The arguments of {@link ClasswireClientOptions.onStatus}: every status but `reconnecting` has `{}`. */
export type StatusChange =
  | [status: "reconnecting", detail: ReconnectDetail]
  | [status: Exclude<ClasswireStatus, "idle" | "reconnecting">, detail: Record<string, never>];

/** Counters of what the client did, since it was created. */
export interface ClasswireStats {
  /** Persistent events handed to `onEvent`. */
  applied: number;
  /** Those of them that came from a sync (`replay: true`). */
  replayed: number;
  /** Copies of events already applied, dropped by `seq`. */
  duplicates: number;
  /** Sync requests sent (every page counts). */
  syncs: number;
  /** Syncs asked for because an out-of-order gap persisted. */
  gapSyncs: number;
  /** Chains that did not link (another `prev`, `eid` or `epoch`): each leads to a resync. */
  divergences: number;
  /** Sync pages with `reset: true` (each also called `onReset`). */
  resets: number;
  /** Sends sent again with the same id (lost acknowledgement, reconnect). */
  resends: number;
  /** Reconnect attempts scheduled. */
  reconnects: number;
  /** Sync pages no request was waiting for, ignored. */
  strayPages: number;
}

// -- options --------------------------------------------------------------------------------------

/**
 * A one-argument handler whose parameter is compared bivariantly (the method-shorthand trick), so a
 * handler typed for a narrower argument fits: the DOM's `(ev: MessageEvent) => any`, the `ws`
 * package's, a test double's, or a `clearTimeout` taking its own handle type.
 */
export type BivariantHandler<E> = { bivarianceHack(arg: E): void }["bivarianceHack"];

/**
 * What the client needs of a socket: the browser's `WebSocket`, Node 22's global one, the `ws`
 * package's, or a test double. The client sets the four handlers (and resets them to `null` when it
 * lets the socket go); it sends only while `readyState` is 1 (OPEN); it ignores `onerror` (a `close`
 * always follows).
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: BivariantHandler<unknown> | null;
  /** Only text frames count: a `data` that is not a non-empty string is ignored. */
  onmessage: BivariantHandler<{ readonly data: unknown }> | null;
  /** The close's `code` is only used in the `connect_failed` message. */
  onclose: BivariantHandler<{ readonly code?: number } | undefined> | null;
  onerror: BivariantHandler<unknown> | null;
}

/** A `WebSocket` constructor: called with the full URL (token and classroom in the query string). */
export type WebSocketConstructorLike = new (url: string) => WebSocketLike;

/**
 * Tunables, with the client's defaults. An option left out takes its default; one given as
 * `undefined` replaces it with `undefined` (the options are spread over the defaults) and breaks the
 * client, hence no `| undefined` here (enforced under `exactOptionalPropertyTypes`).
 */
export interface ClasswireTunables {
  /**
   * How long an out-of-order event waits for the ones before it before a sync, in ms; doubled for each
   * complete sync that left the gap unfilled. Also the wait after a pong says this client is behind.
   * @defaultValue 300
   */
  gapMs?: number;
  /**
   * Out-of-order events held at most; beyond, the highest seqs are dropped (a sync brings them back).
   * @defaultValue 1000
   */
  maxBuffered?: number;
  /**
   * The `limit` of each sync request (the server allows 1..1000).
   * @defaultValue 200
   */
  syncLimit?: number;
  /**
   * A sync with no reply by then (ms) is asked again (10 s).
   * @defaultValue 10000
   */
  syncTimeoutMs?: number;
  /**
   * A roster page with no reply by then (ms) is asked again, 3 times, then `who()` rejects with
   * `timeout` (10 s).
   * @defaultValue 10000
   */
  whoTimeoutMs?: number;
  /**
   * A send with neither acknowledgement nor error by then (ms) is resent with the same id (10 s).
   * @defaultValue 10000
   */
  ackTimeoutMs?: number;
  /**
   * A send is never resent later than this (ms) after its first attempt: it rejects with code
   * `expired` instead (it may or may not have been appended) (10 minutes; the server remembers ids
   * for 15, so a later resend could append the event twice).
   * @defaultValue 600000
   */
  resendWindowMs?: number;
  /**
   * Keep-alive ping interval (ms); API Gateway closes a connection idle for 10 minutes (5 minutes).
   * @defaultValue 300000
   */
  pingIntervalMs?: number;
  /**
   * Pings carry delivery telemetry (last applied seq, smoothed lag) this often (ms) (30 s), which also
   * keeps the connection alive; the ping interval is then min(pingIntervalMs, telemetryIntervalMs).
   * `0`: no telemetry, bare keep-alives every `pingIntervalMs`.
   * @defaultValue 30000
   */
  telemetryIntervalMs?: number;
  /**
   * Reconnects (with full jitter) and resyncs that keep diverging wait min(cap, base * 2^(n-1)) ms
   * after n failures in a row (250 ms).
   * @defaultValue 250
   */
  backoffBaseMs?: number;
  /**
   * The cap of that back-off (10 s).
   * @defaultValue 10000
   */
  backoffCapMs?: number;
  /**
   * A client that has never been live gives up (status `failed`, `connect()` rejects with
   * `connect_failed`) after this many attempts in a row; one that has been live slows to
   * `suspendedRetryMs` after as many failures in a row instead, and keeps trying.
   * @defaultValue 6
   */
  maxConnectAttempts?: number;
  /**
   * The retry interval (ms) of a client that had been live and then failed `maxConnectAttempts` times in
   * a row (a browser cannot see why it is refused; an ended class answers 403) (1 minute).
   * @defaultValue 60000
   */
  suspendedRetryMs?: number;
  /**
   * After `end`, the server closes the socket; the client closes it itself after this long (ms) (3 s).
   * @defaultValue 3000
   */
  endGraceMs?: number;
  /**
   * Event names sent and received as volatile: `send` resolves `null` at once, nothing is queued.
   * @defaultValue ["cursor"]
   */
  volatileEvents?: Iterable<string>;
}

/**
 * The application's callbacks. Each is called synchronously; an exception it throws is logged
 * (`console.error`) and swallowed, so an application bug cannot break the delivery order. Return
 * values are ignored (a returned promise's rejection is not handled).
 */
export interface ClasswireCallbacks {
  /**
   * Persistent events, in `seq` order, exactly once (since the last {@link onReset}). `replay` is true
   * for events that came from a sync (catch-up, gap fill, resync), false for live ones.
   */
  onEvent?: ((event: PersistentEvent, info: { readonly replay: boolean }) => void) | undefined;
  /** Volatile events, best effort, as they arrive (not ordered, not deduplicated). */
  onVolatile?: ((event: VolatileEvent) => void) | undefined;
  /**
   * The log no longer continues from what was applied (trimmed past it, restarted, or a failover lost
   * events): drop all state built from `onEvent`; the retained events follow, as replays.
   */
  onReset?: (() => void) | undefined;
  /** Every change of {@link ClasswireClient.status} (a `reconnecting` is reported for each attempt). */
  onStatus?: ((...change: StatusChange) => void) | undefined;
  /**
   * The classroom's members: the whole list a `who()` gathered over its pages, or the members of a
   * roster page no `who()` was waiting for.
   */
  onRoster?: ((members: RosterMember[]) => void) | undefined;
  /**
   * A crowded classroom's students joining and leaving, to a teacher's connections only (best effort:
   * `who()` is the roster that counts). Students' joins and leaves are then not in the log.
   */
  onPresence?: ((presence: PresenceFrame) => void) | undefined;
  /**
   * Every error frame from the server except the refusals the client retries by itself
   * (`rate_limited` or `internal` for a pending send, a `sync` or a `who`), and the client's own
   * connection failures ({@link LocalErrorFrame}). A refused send is reported here and also rejects its
   * promise.
   */
  onError?: ((error: ErrorFrame) => void) | undefined;
}

/** Stand-ins for the globals, for tests (a fake socket and clock). */
export interface ClasswireEnvironment {
  /** @defaultValue `globalThis.WebSocket` (the constructor throws a `TypeError` when there is none) */
  WebSocket?: WebSocketConstructorLike | undefined;
  /**
   * Must return a truthy handle (the client tests handles for truthiness: a `0` is never cleared).
   * @defaultValue `globalThis.setTimeout`
   */
  setTimeout?: ((callback: () => void, ms: number) => unknown) | undefined;
  /** Called with a handle `setTimeout` returned. @defaultValue `globalThis.clearTimeout` */
  clearTimeout?: BivariantHandler<unknown> | undefined;
  /** Milliseconds since the epoch. @defaultValue `Date.now` */
  now?: (() => number) | undefined;
  /**
   * A number in [0, 1): reconnect jitter, and the client-id prefix where `crypto.getRandomValues` is
   * missing. @defaultValue `Math.random`
   */
  random?: (() => number) | undefined;
}

/** The options of {@link ClasswireClient}'s constructor. */
export interface ClasswireClientOptions extends ClasswireTunables, ClasswireCallbacks, ClasswireEnvironment {
  /**
   * `ws(s)://host/stage`: an absolute URL; the client adds `token`, `classroom` and, when reopening,
   * `reopen=1` to its query string. It is parsed when connecting: an invalid URL fails `connect()` at once
   * with `connect_failed` (status `failed`).
   */
  url: string;
  /**
   * A JWT, or a function fetching a fresh one for every connection (if it throws or rejects, the client
   * reports `token_failed` and retries). Must not be empty.
   */
  token: string | (() => string | Promise<string>);
  /** The classroom id (`[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}`). Must not be empty. */
  classroom: string;
  /**
   * A teacher reopening an ended class; sent on this client's first connection that opens only (its own
   * reconnects never reopen a class).
   * @defaultValue false
   */
  reopen?: boolean | undefined;
  /**
   * This user's id, to recognise its own events as acknowledgements. Default: the token's `sub` (for a
   * token function, read from each token fetched); `""` (unknown) lets any sender's event with the
   * same id and name acknowledge a send.
   */
  user?: string | undefined;
}

/** The options as the client holds them: the tunables' defaults filled in. */
export type ResolvedClasswireClientOptions = ClasswireClientOptions & Required<ClasswireTunables>;

/** The options of {@link ClasswireClient.send}. */
export interface SendOptions {
  /**
   * The client id (1..64 characters) of the event; default {@link ClasswireClient.nextId}. The server
   * deduplicates by (user, id) for 15 minutes: a send reusing an id of an earlier one is answered with
   * that earlier event (or a {@link SendAck}), and appends nothing.
   */
  id?: string | undefined;
}

// -- exports --------------------------------------------------------------------------------------

/** Every `code` a {@link ClasswireError} may carry. */
export type ClasswireErrorCode =
  /** The class has ended (the client ended; its pending requests are rejected). */
  | "ended"
  /** The client was closed with {@link ClasswireClient.close}, or is closed. */
  | "closed"
  /** A send could not be resent within `resendWindowMs`: it may or may not have been appended. */
  | "expired"
  /** A roster page got no reply, `whoTimeoutMs` each time, 4 times in a row. */
  | "timeout"
  /** The client never got in (`maxConnectAttempts` attempts). */
  | "connect_failed"
  /** A refusal by the server: its error frame is {@link ClasswireError.frame}. */
  | ServerErrorCode
  /** A refusal whose error frame had no `code`. */
  | "error";

/**
 * A request refused by the server (`frame` is its error frame), or one that can no longer be served
 * (`frame` is `null`). Its `message` is `"<code>: <message>"`.
 */
export declare class ClasswireError extends Error {
  constructor(code: ClasswireErrorCode, message: string, frame?: ServerErrorFrame | null);
  readonly name: "ClasswireError";
  readonly code: ClasswireErrorCode;
  /** The server's error frame for a refusal; `null` for the client's own errors. */
  readonly frame: ServerErrorFrame | null;
}

/**
 * Reads the `sub` claim of a JWT without verifying it. Never throws: `""` for anything that is not a
 * token with a string `sub`.
 */
export declare function tokenSubject(token: string): string;

/**
 * A classroom connection. Hands persistent events to the application strictly in `seq` order, exactly
 * once (buffering, syncing gaps, dropping duplicates, resyncing a chain that does not link); sends its
 * own persistent events one at a time, each after the previous one's acknowledgement, resending
 * (same id) after a lost acknowledgement or a reconnect; reconnects on its own until closed or ended.
 *
 * ```ts
 * const client = new ClasswireClient({ url: "wss://<api>/<stage>", token, classroom: "c1",
 *   onEvent: (event, { replay }) => {}, onReset: () => {}, onStatus: (status) => {} });
 * await client.connect();                                 // resolves once caught up ("live")
 * const acked = await client.send("chat", { text: "hi" }); // the logged event, with its seq
 * const members = await client.who();
 * client.close();
 * ```
 */
export declare class ClasswireClient {
  /**
   * Creates the client; it does not connect until {@link connect}.
   * @throws TypeError when `url`, `token` or `classroom` is missing or empty, or there is no WebSocket.
   */
  constructor(options: ClasswireClientOptions);

  /** The options given, over the defaults. */
  readonly options: Readonly<ResolvedClasswireClientOptions>;
  /** This user's id (`user`, else the token's `sub`); `""` while unknown. */
  readonly user: string;
  /** The `seq` of the last event applied; 0 before any. */
  readonly lastSeq: number;
  /** The `eid` of the last event applied; `""` before any. */
  readonly lastEid: string;
  /** The epoch of the log applied; `""` until known. */
  readonly epoch: string;
  /** Smoothed delivery lag (receive time minus the server's `ts`) of live events, in ms; `null` before any. */
  readonly lagMs: number | null;
  /** Events the server had that this client had not applied, at the last telemetry pong; `null` before any. */
  readonly behind: number | null;
  /** The classroom's occupancy (users present), as last heard; `null` before any. */
  readonly users: number | null;
  /**
   * The classroom is crowded: students' joins and leaves are not in the log (teachers get them through
   * {@link ClasswireCallbacks.onPresence}), so a roster built from join and leave events is incomplete.
   */
  readonly crowded: boolean;
  readonly status: ClasswireStatus;
  /** The class has ended (the applied log holds an `end` no reopening `join` followed): for good. */
  readonly ended: boolean;
  readonly stats: Readonly<ClasswireStats>;
  /** Unacknowledged persistent sends. */
  readonly pending: number;

  /**
   * Opens the connection; resolves once caught up (`live`), at once if it is. Reconnects on its own
   * until {@link close}. Rejects with {@link ClasswireError} `ended` (the class ended), `closed`
   * ({@link close} was called meanwhile) or `connect_failed` (never got in, or an invalid `url`). After a
   * {@link close}, it connects again (an open still fetching its token goes on).
   */
  connect(): Promise<void>;

  /**
   * Publishes an event; it may be called before `connect()`, the event goes out once live.
   *
   * A persistent event resolves with its acknowledgement: its own copy as logged (with `seq`), or a
   * {@link SendAck} when a resend finds that copy gone from the log. A volatile one (`volatileEvents`)
   * resolves with `null` at once (best effort, dropped while disconnected). The result type cannot
   * tell which, since `volatileEvents` is an option.
   *
   * Rejects with a `TypeError` when `event` is not a non-empty string, and with a
   * {@link ClasswireError}: `ended`, `closed`, `expired`, `connect_failed`, or the server's refusal
   * (`bad_request`, `forbidden`, `too_large`, ...; `rate_limited` and `internal` are retried).
   */
  send(event: string, data: EventData, options?: SendOptions): Promise<PersistentEvent | SendAck | null>;

  /**
   * The classroom's members (every roster page), also handed to `onRoster`. Waits for a connection.
   * Rejects with a {@link ClasswireError}: `ended`, `closed`, `connect_failed`, `timeout`, or the
   * server's refusal (`rate_limited` is retried without limit, `internal` 3 times).
   */
  who(): Promise<RosterMember[]>;

  /** A fresh client id (`<12 hex digits>-<counter>`), unique per client. */
  nextId(): string;

  /**
   * Closes: no reconnect; pending sends, `who()` and `connect()` are rejected with `closed`; status
   * `closed` (unless ended). A later {@link connect} opens it again.
   */
  close(): void;

  /**
   * Cuts the socket as a network failure would (for tests and demos); the client reconnects, after
   * `offlineMs` at the earliest (without an open socket it only delays the next attempt). Does nothing
   * once closed or ended.
   */
  drop(options?: { offlineMs?: number | undefined }): void;
}
