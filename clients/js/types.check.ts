// A consumer of classwire.d.ts, compiled (never run) by `tsc -p clients/js` to check the declarations:
// the API used the way an application and a test harness use it, plus misuse that must not compile
// (each `@ts-expect-error` fails the check if its line stops being an error).
import { ClasswireClient, ClasswireError, tokenSubject } from "./classwire.js";
import type {
  ClasswireClientOptions,
  ClasswireErrorCode,
  ClasswireStatus,
  ErrorFrame,
  MembershipData,
  PersistentEvent,
  RosterMember,
  SendAck,
  VolatileEvent,
  WebSocketLike,
} from "./classwire.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function assertType<T extends true>(): T | void {}

// -- a browser application ---------------------------------------------------------------------------

const board: PersistentEvent[] = [];
const cursors = new Map<string, VolatileEvent>();
const statuses: ClasswireStatus[] = [];

const client = new ClasswireClient({
  url: "wss://abc.execute-api.eu-west-1.amazonaws.com/prod",
  token: async () => (await fetch("/local/token")).text(),
  classroom: "c1",
  reopen: true,
  // The defaults, given explicitly: the DOM's WebSocket fits WebSocketLike, its timers the timer hooks.
  WebSocket: globalThis.WebSocket,
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  now: Date.now,
  random: Math.random,
  onEvent(event, { replay }) {
    if (event.event === "join" || event.event === "leave") {
      const data = event.data as MembershipData;
      console.log(event.from, data.connections, data.reopened === true, replay);
    }
    const seq: number = event.seq;
    const id: string | null = event.id;
    console.log(seq, id, event.eid, event.prev, event.epoch, event.role, event.ts);
    board.push(event);
  },
  onVolatile: (event) => cursors.set(event.from, event),
  onReset: () => {
    board.length = 0;
  },
  onStatus: (status, detail) => {
    statuses.push(status);
    if (status === "reconnecting") console.log(detail.attempt, detail.delayMs);
    // @ts-expect-error: `idle` is the initial status, never reported
    if (status === "idle") console.log("never");
  },
  onRoster: (members) => members.filter((m) => (m.behind ?? 0) > 0).map((m) => m.userId),
  onPresence: (presence) => presence.changes.filter((c) => c.present).map((c) => c.userId),
  onError: (error) => {
    if (error.code === "rate_limited") console.log(error.retryAfterMs ?? 0, error.action);
    if (error.code === "token_failed") {
      const id: null = error.id;
      console.log(id);
    }
  },
});

async function session(): Promise<void> {
  await client.connect();
  const acked = await client.send("chat", { text: "hi" });
  if (acked === null) console.log("volatile");
  else if (acked.type === "ack") {
    const ack: SendAck = acked;
    console.log(ack.seq, ack.epoch);
  } else console.log(acked.seq, acked.eid, acked.data);
  await client.send("cursor", { x: 0.5, y: 0.5 });
  await client.send("stroke", { points: [[0, 0]] }, { id: client.nextId() });
  await client.send("clear", {});
  await client.send("end", null);
  const members: RosterMember[] = await client.who();
  console.log(members.map((m) => [m.name, m.role, m.connections, m.lagMs]));
  try {
    await client.send("chat", { text: "late" });
  } catch (error) {
    if (error instanceof ClasswireError) {
      const code: ClasswireErrorCode = error.code;
      if (code === "expired") console.log("look for its id in the log");
      console.log(error.name, error.message, error.frame?.retryAfterMs, error.frame?.code);
    }
  }
  const s = client.stats;
  console.log(s.applied + s.replayed + s.duplicates + s.syncs + s.gapSyncs + s.divergences);
  console.log(s.resets + s.resends + s.reconnects + s.strayPages, client.pending);
  console.log(client.lastSeq, client.lastEid, client.epoch, client.lagMs, client.behind, client.ended, client.user);
  console.log(client.options.gapMs.toFixed(), client.options.url);
  client.drop({ offlineMs: 2_000 });
  client.drop();
  client.close();
}
void session();

assertType<Equal<ReturnType<typeof client.connect>, Promise<void>>>();
assertType<Equal<ReturnType<typeof client.who>, Promise<RosterMember[]>>>();
assertType<Equal<Awaited<ReturnType<typeof client.send>>, PersistentEvent | SendAck | null>>();
assertType<Equal<typeof client.status, ClasswireStatus>>();
assertType<Equal<ReturnType<typeof tokenSubject>, string>>();
const subject: string = tokenSubject("a.b.c");
console.log(subject, new ClasswireError("closed", "the client is closed").frame === null);

// -- a test harness: a fake socket and a fake clock ------------------------------------------------------

class FakeSocket implements WebSocketLike {
  static instances: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.instances.push(this);
  }
  send(text: string): void {
    this.sent.push(JSON.parse(text));
  }
  close(code?: number, reason?: string): void {
    this.readyState = 3;
    console.log(code, reason);
  }
}

const timers = new Map<number, () => void>();
let nextTimer = 1;
const options: ClasswireClientOptions = {
  url: "ws://127.0.0.1:9/local",
  token: "header.payload.signature",
  classroom: "c1",
  user: "alice",
  WebSocket: FakeSocket,
  setTimeout: (fn: () => void) => {
    timers.set(nextTimer, fn);
    return nextTimer++;
  },
  clearTimeout: (id: number) => timers.delete(id),
  now: () => 1_700_000_000_000,
  random: () => 0.5,
  gapMs: 100,
  maxBuffered: 10,
  telemetryIntervalMs: 0,
  volatileEvents: new Set(["cursor", "pointer"]),
};
const harnessed = new ClasswireClient(options);
console.log(harnessed.status);

// -- misuse that must not compile ------------------------------------------------------------------------

// @ts-expect-error: classroom is required
new ClasswireClient({ url: "ws://x/y", token: "t" });
// @ts-expect-error: an explicit undefined would replace the default (exactOptionalPropertyTypes)
new ClasswireClient({ ...options, gapMs: undefined });
// @ts-expect-error: the token is a string or a function returning one
new ClasswireClient({ ...options, token: 42 });
// @ts-expect-error: onError receives frames, not Error objects
new ClasswireClient({ ...options, onError: (error: Error) => console.log(error.stack) });
// @ts-expect-error: a socket needs send and close
new ClasswireClient({ ...options, WebSocket: class { constructor(readonly url: string) {} } });
// @ts-expect-error: data is required (a send without it is refused `bad_request`)
void client.send("chat");
// @ts-expect-error: undefined is no JSON value
void client.send("chat", undefined);
// @ts-expect-error: the id is a string
void client.send("chat", {}, { id: 7 });
// @ts-expect-error: the state is the client's
client.lastSeq = 3;
// @ts-expect-error: so are its counters
client.stats.applied = 0;
// @ts-expect-error: connect resolves with nothing
void client.connect().then((value) => value.status);
// @ts-expect-error: no such error code
const unknownCode: ClasswireErrorCode = "nope";
// @ts-expect-error: tokenSubject takes the token
tokenSubject();
const frame: ErrorFrame = { type: "error", code: "connect_failed", message: "", id: null };
// @ts-expect-error: the client's own error frames have no id
const badFrame: ErrorFrame = { type: "error", code: "token_failed", message: "", id: "x" };
console.log(frame, badFrame, unknownCode);
