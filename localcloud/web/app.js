// The demo classroom page: a shared whiteboard, chat and roster on the classwire JavaScript client.
//
// Served by the local cloud next to `classwire.js` (clients/js/classwire.js), with a local-only token
// endpoint on the same origin:
//   GET /local/token?user=<id>&classroom=<id>&role=teacher|student&name=<display name>
//   -> {"token": "<JWT granting that classroom>", "url": "ws://127.0.0.1:<port>/<stage>"}
//
// The board is the classroom log replayed in seq order: `stroke` and `erase` draw, `clear` empties it.
// Event data (coordinates are fractions of the board, so every screen size draws the same picture):
//   stroke {points: [[x, y], ...], color: "#rrggbb", width}  x, y in 0..1; width a fraction of the board width
//   erase  {points: [[x, y], ...], width}                    removes ink under the path
//   clear  {}                                               chat {text}    end {}
//   cursor {x, y} (volatile; {} when the pointer leaves the board)
import { ClasswireClient } from "./classwire.js";

const MAX_POINTS_PER_STROKE = 300; // keeps one stroke far below the 16 KB data limit
const MIN_POINT_DISTANCE = 0.0015; // thins pointer samples that add nothing visible
const CURSOR_INTERVAL_MS = 50; // at most 20 cursor events a second
const CURSOR_TTL_MS = 3000;
const ERASER_WIDTH = 0.03;
const DEFAULT_COLOR = "#1f2937";
// The teacher's roster refreshes this often to show who is behind (`who` carries each member's telemetry,
// which clients report every 30 s).
const ROSTER_REFRESH_MS = 30_000;

const $ = (testId) => document.querySelector(`[data-testid="${testId}"]`);

// -- who am I --------------------------------------------------------------------------------------
const params = new URLSearchParams(location.search);
const me = {
  classroom: params.get("classroom") || "demo",
  user: params.get("user") || guestId(),
  role: params.get("role") === "teacher" ? "teacher" : "student",
};
me.name = params.get("name") || me.user;

function guestId() {
  let id = sessionStorage.getItem("classwire.guest");
  if (!id) {
    id = `guest-${Math.random().toString(36).slice(2, 8)}`;
    sessionStorage.setItem("classwire.guest", id);
  }
  return id;
}

// -- state rebuilt from the log ----------------------------------------------------------------------
const board = { ops: [] }; // strokes and erases since the last clear, in seq order
const chat = []; // {seq, from, name, role, text, ts}
const applied = []; // {seq, event, from} since the last reset (for tests and debugging)
const roster = new Map(); // userId -> {userId, name, role, connections, lagMs, behind}
const pending = new Map(); // client id -> {kind, ...data} of own strokes/chat not yet in the log
const cursors = new Map(); // userId -> {x, y, name, at}
let tool = { mode: "pen", color: DEFAULT_COLOR, width: 0.006 };
let drawing = null; // the stroke under the pointer
let ended = false;

// -- DOM -------------------------------------------------------------------------------------------
const surface = $("board");
const ink = $("board-canvas");
const overlay = $("board-overlay");
const inkCtx = ink.getContext("2d");
const overlayCtx = overlay.getContext("2d");
$("classroom").textContent = me.classroom;
$("me").textContent = `${me.name} (${me.role})`;
document.body.dataset.role = me.role;
document.body.dataset.tool = tool.mode;

// -- drawing ---------------------------------------------------------------------------------------
function validPoints(points) {
  return Array.isArray(points) && points.length > 0 && points.every(
    (p) => Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]),
  );
}

function paint(ctx, op, preview = false) {
  if (!validPoints(op.points)) return;
  const w = ctx.canvas.width;
  const h = ctx.canvas.height;
  const erase = op.kind === "erase";
  const width = Number.isFinite(op.width) && op.width > 0 && op.width <= 0.2 ? op.width : erase ? ERASER_WIDTH : 0.006;
  ctx.save();
  if (erase && !preview) ctx.globalCompositeOperation = "destination-out";
  ctx.strokeStyle = erase ? (preview ? "rgba(156,163,175,0.6)" : "#000") : safeColor(op.color);
  ctx.lineWidth = Math.max(1, width * w);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  const [x0, y0] = op.points[0];
  ctx.moveTo(x0 * w, y0 * h);
  if (op.points.length === 1) ctx.lineTo(x0 * w + 0.01, y0 * h);
  for (const [x, y] of op.points.slice(1)) ctx.lineTo(x * w, y * h);
  ctx.stroke();
  ctx.restore();
}

function safeColor(color) {
  return typeof color === "string" && /^#[0-9a-fA-F]{3,8}$/.test(color) ? color : DEFAULT_COLOR;
}

function redrawInk() {
  inkCtx.clearRect(0, 0, ink.width, ink.height);
  for (const op of board.ops) paint(inkCtx, op);
}

let overlayQueued = false;
function redrawOverlay() {
  if (overlayQueued) return;
  overlayQueued = true;
  requestAnimationFrame(() => {
    overlayQueued = false;
    overlayCtx.clearRect(0, 0, overlay.width, overlay.height);
    for (const op of pending.values()) if (op.kind !== "chat") paint(overlayCtx, op, true);
    if (drawing) paint(overlayCtx, drawing, true);
    const now = Date.now();
    for (const [userId, cursor] of cursors) {
      if (now - cursor.at > CURSOR_TTL_MS) {
        cursors.delete(userId);
        continue;
      }
      const x = cursor.x * overlay.width;
      const y = cursor.y * overlay.height;
      overlayCtx.fillStyle = "#7c3aed";
      overlayCtx.beginPath();
      overlayCtx.arc(x, y, 4 * devicePixelRatio, 0, 2 * Math.PI);
      overlayCtx.fill();
      overlayCtx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
      overlayCtx.fillText(cursor.name, x + 7 * devicePixelRatio, y - 5 * devicePixelRatio);
    }
  });
}
setInterval(() => cursors.size && redrawOverlay(), 1000);

function fitCanvases() {
  const rect = surface.getBoundingClientRect();
  const width = Math.max(1, Math.round(rect.width * devicePixelRatio));
  const height = Math.max(1, Math.round(rect.height * devicePixelRatio));
  if (ink.width === width && ink.height === height) return;
  for (const canvas of [ink, overlay]) {
    canvas.width = width;
    canvas.height = height;
  }
  redrawInk();
  redrawOverlay();
}
new ResizeObserver(fitCanvases).observe(surface);
fitCanvases();

function boardPoint(event) {
  const rect = overlay.getBoundingClientRect();
  const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  return [round((event.clientX - rect.left) / rect.width), round((event.clientY - rect.top) / rect.height)];
}

overlay.addEventListener("pointerdown", (event) => {
  if (ended || event.button !== 0) return;
  overlay.setPointerCapture(event.pointerId);
  drawing = newStroke([boardPoint(event)]);
  redrawOverlay();
});

overlay.addEventListener("pointermove", (event) => {
  const point = boardPoint(event);
  sendCursor(point);
  if (!drawing) return;
  const last = drawing.points.at(-1);
  if (Math.hypot(point[0] - last[0], point[1] - last[1]) < MIN_POINT_DISTANCE) return;
  drawing.points.push(point);
  if (drawing.points.length >= MAX_POINTS_PER_STROKE) {
    // A long stroke goes out in pieces that join end to start.
    const piece = drawing;
    drawing = newStroke([point]);
    publishStroke(piece);
  }
  redrawOverlay();
});

function finishStroke() {
  if (!drawing) return;
  const stroke = drawing;
  drawing = null;
  publishStroke(stroke);
}
overlay.addEventListener("pointerup", finishStroke);
overlay.addEventListener("pointercancel", finishStroke);
overlay.addEventListener("pointerleave", () => sendCursor(null));

function newStroke(points) {
  return tool.mode === "eraser"
    ? { kind: "erase", points, width: ERASER_WIDTH }
    : { kind: "stroke", points, color: tool.color, width: tool.width };
}

function publishStroke(op) {
  const data = op.kind === "erase"
    ? { points: op.points, width: op.width }
    : { points: op.points, color: op.color, width: op.width };
  return publish(op.kind, data, op);
}

/** Sends a persistent event; shows it as pending (overlay, greyed chat) until it is in the log. */
function publish(event, data, preview = null) {
  const id = client.nextId();
  if (preview) {
    pending.set(id, preview);
    event === "chat" ? renderChat() : redrawOverlay();
  }
  return client.send(event, data, { id }).catch((error) => {
    pending.delete(id);
    renderChat();
    redrawOverlay();
    notice(`${event} not sent: ${error.message}`);
    throw error;
  });
}

let cursorTimer = null;
let cursorNext;
let cursorLastSent = 0;
function sendCursor(point) {
  cursorNext = point ? { x: point[0], y: point[1] } : {};
  const wait = CURSOR_INTERVAL_MS - (Date.now() - cursorLastSent);
  if (wait <= 0) flushCursor();
  else if (!cursorTimer) cursorTimer = setTimeout(flushCursor, wait);
}
function flushCursor() {
  cursorTimer = null;
  if (!cursorNext || ended || client.status !== "live") return;
  cursorLastSent = Date.now();
  client.send("cursor", cursorNext).catch(() => {});
  cursorNext = undefined;
}

// -- the log, applied in seq order ------------------------------------------------------------------
function onEvent(event, { replay }) {
  applied.push({ seq: event.seq, event: event.event, from: event.from });
  const data = event.data && typeof event.data === "object" ? event.data : {};
  const mine = event.from === me.user && pending.has(event.id);
  if (mine) pending.delete(event.id);
  switch (event.event) {
    case "stroke":
    case "erase": {
      const op = { kind: event.event, points: data.points, color: data.color, width: data.width, seq: event.seq };
      if (!validPoints(op.points)) break;
      board.ops.push(op);
      paint(inkCtx, op); // in seq order, so drawing on top is the same as a full replay
      break;
    }
    case "clear":
      board.ops = [];
      redrawInk();
      break;
    case "chat":
      if (typeof data.text === "string") {
        chat.push({ seq: event.seq, from: event.from, name: event.name || event.from, role: event.role, text: data.text, ts: event.ts });
      }
      renderChat();
      break;
    case "join":
    case "leave":
      updateMember(event);
      break;
    case "end":
      if (!replay) notice(`${event.name || event.from} ended the class`);
      break;
    default:
      break;
  }
  if (mine) redrawOverlay();
}

let resets = 0;
function onReset() {
  resets += 1;
  // The log no longer continues from what this page showed: drop everything and rebuild from the replay.
  board.ops = [];
  chat.length = 0;
  applied.length = 0;
  redrawInk();
  renderChat();
}

function onVolatile(event) {
  if (event.event !== "cursor" || event.from === me.user) return;
  const data = event.data || {};
  if (Number.isFinite(data.x) && Number.isFinite(data.y)) {
    cursors.set(event.from, { x: data.x, y: data.y, name: event.name || event.from, at: Date.now() });
  } else {
    cursors.delete(event.from);
  }
  redrawOverlay();
}

// -- chat and roster ----------------------------------------------------------------------------------
const chatLog = $("chat-log");
function renderChat() {
  const nearBottom = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 40;
  const items = chat.map((m) => chatItem(m, false));
  for (const op of pending.values()) if (op.kind === "chat") items.push(chatItem({ name: me.name, text: op.text }, true));
  chatLog.replaceChildren(...items);
  if (nearBottom) chatLog.scrollTop = chatLog.scrollHeight;
}

function chatItem(message, isPending) {
  const li = document.createElement("li");
  li.dataset.testid = "chat-message";
  if (isPending) li.className = "pending";
  if (message.seq) li.dataset.seq = String(message.seq);
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = message.name;
  li.append(who, document.createTextNode(message.text)); // text nodes: chat is never HTML
  return li;
}

$("chat-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || ended) return;
  input.value = "";
  publish("chat", { text }, { kind: "chat", text }).catch(() => {});
});

function updateMember(event) {
  // Leaving a crowded spell, the log's joins and leaves are complete again: rebuild from `who` once.
  if (crowdedRoster && event.data?.crowded === false) refreshRoster();
  const connections = Number(event.data?.connections) || 0;
  if (connections > 0) {
    const known = roster.get(event.from) ?? { lagMs: null, behind: null };
    roster.set(event.from, { ...known, userId: event.from, name: event.name || event.from, role: event.role, connections });
  } else {
    roster.delete(event.from);
  }
  renderRoster();
}

// A crowded classroom's students come and go without a join or leave in the log: a teacher hears of them
// (onPresence), a student's list shows the teachers and itself, and the count is the server's.
let crowdedRoster = false;
function onPresence(frame) {
  for (const change of frame.changes) {
    if (!change || typeof change.userId !== "string") continue;
    if (change.present === true) {
      const known = roster.get(change.userId) ?? { lagMs: null, behind: null, connections: 1 };
      const name = typeof change.name === "string" && change.name ? change.name : change.userId;
      const role = change.role === "teacher" ? "teacher" : "student"; // only students' changes come this way
      roster.set(change.userId, { ...known, userId: change.userId, name, role });
    } else {
      roster.delete(change.userId);
    }
  }
  renderRoster();
}

function listed() {
  const everyone = [...roster.values()];
  if (!client?.crowded || me.role === "teacher") return everyone;
  return everyone.filter((m) => m.role === "teacher" || m.userId === me.user);
}

function renderCount() {
  crowdedRoster = Boolean(client?.crowded);
  const count = crowdedRoster && client.users !== null ? client.users : roster.size;
  $("roster-count").textContent = String(count);
  const more = $("roster-more");
  const hidden = count - listed().length;
  more.hidden = !crowdedRoster || hidden <= 0;
  more.textContent = `and ${hidden} more`;
}

function renderRoster() {
  const items = listed()
    .sort((a, b) => (a.role === b.role ? a.name.localeCompare(b.name) : a.role === "teacher" ? -1 : 1))
    .map((member) => {
      const li = document.createElement("li");
      li.dataset.testid = "roster-member";
      li.dataset.user = member.userId;
      const role = document.createElement("span");
      role.className = "role";
      role.textContent = member.connections > 1 ? `${member.role} ×${member.connections}` : member.role;
      if (member.behind > 0) {
        li.classList.add("lagging");
        role.textContent += ` · ${member.behind} behind`;
        if (member.lagMs !== null) role.title = `delivery lag ${member.lagMs} ms`;
      }
      li.append(document.createTextNode(member.name || member.userId), role);
      return li;
    });
  $("roster").replaceChildren(...items);
  renderCount();
  // Only the teacher is told; `behind` is null for a member whose client has not reported lately.
  const behind = [...roster.values()].filter((m) => m.role === "student" && m.behind > 0).length;
  const notice = $("behind");
  notice.hidden = me.role !== "teacher" || behind === 0;
  notice.textContent = behind === 1 ? "1 student is behind" : `${behind} students are behind`;
}

async function refreshRoster() {
  try {
    const members = await client.who();
    roster.clear();
    for (const m of members) roster.set(m.userId, { ...m, name: m.name || m.userId });
    renderRoster();
  } catch {
    /* disconnected or ended: the next `live` refreshes it */
  }
}
// The teacher's page re-reads the roster (one `who` round trip) to see who is behind.
if (me.role === "teacher") setInterval(() => client?.status === "live" && refreshRoster(), ROSTER_REFRESH_MS);

// -- toolbar ----------------------------------------------------------------------------------------
for (const button of document.querySelectorAll("[data-tool]")) {
  button.addEventListener("click", () => {
    tool = { ...tool, mode: button.dataset.tool };
    document.body.dataset.tool = tool.mode;
    for (const b of document.querySelectorAll("[data-tool]")) b.setAttribute("aria-pressed", String(b === button));
  });
}
for (const swatch of document.querySelectorAll("[data-color]")) {
  swatch.addEventListener("click", () => {
    tool = { ...tool, color: swatch.dataset.color, mode: "pen" };
    for (const s of document.querySelectorAll("[data-color]")) s.setAttribute("aria-pressed", String(s === swatch));
    document.querySelector('[data-tool="pen"]').click();
  });
}
$("width").addEventListener("change", (event) => {
  tool = { ...tool, width: Number(event.target.value) };
});
$("clear").addEventListener("click", () => publish("clear", {}).catch(() => {}));

const endButton = $("end");
let endArmed = null;
endButton.addEventListener("click", () => {
  // Two clicks: ending closes everyone's connection.
  if (!endArmed) {
    endButton.textContent = "Click again to end";
    endButton.classList.add("confirming");
    endArmed = setTimeout(() => {
      endArmed = null;
      endButton.textContent = "End class";
      endButton.classList.remove("confirming");
    }, 4000);
    return;
  }
  clearTimeout(endArmed);
  endArmed = null;
  publish("end", {}).catch(() => {});
});

// -- status line --------------------------------------------------------------------------------------
const statusLine = $("status");
let statusDetail = {};
let lastNotice = "";
function renderStatus() {
  const status = client ? client.status : "connecting";
  const text = {
    idle: "Starting…",
    connecting: "Connecting…",
    syncing: "Catching up…",
    live: "Live",
    reconnecting: `Reconnecting${statusDetail.delayMs ? ` in ${(statusDetail.delayMs / 1000).toFixed(1)} s` : ""}…`,
    ended: "Class ended",
    closed: "Disconnected",
    failed: "Could not connect",
  }[status] ?? status;
  const parts = [text];
  if (client && client.lastSeq) parts.push(`seq ${client.lastSeq}`);
  if (client && client.lagMs !== null && status === "live") parts.push(`lag ${Math.round(client.lagMs)} ms`);
  if (lastNotice) parts.push(lastNotice);
  statusLine.textContent = parts.join(" · ");
  statusLine.dataset.status = status;
}
setInterval(() => {
  renderStatus();
  renderCount(); // occupancy comes in pongs too
}, 1000);

function notice(text) {
  lastNotice = text;
  renderStatus();
  setTimeout(() => {
    if (lastNotice === text) lastNotice = "";
  }, 5000);
}

function onStatus(status, detail) {
  statusDetail = detail;
  if (status === "live") refreshRoster();
  if (status === "ended") {
    ended = true;
    document.body.classList.add("ended");
    $("ended-banner").hidden = false;
    roster.clear();
    renderRoster();
  }
  renderStatus();
}

function onError(frame) {
  if (frame.code === "rate_limited") return; // cursor moves over the limit are simply dropped
  notice(frame.code === "connect_failed" ? "connection failed" : `${frame.code}: ${frame.message}`);
}

// -- connect ----------------------------------------------------------------------------------------
let socketUrl = null;
async function fetchToken() {
  const query = new URLSearchParams({ user: me.user, classroom: me.classroom, role: me.role, name: me.name });
  const response = await fetch(`/local/token?${query}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
  const body = await response.json();
  socketUrl = body.url;
  return body.token;
}

let client = null;
let readyResolve;
const ready = new Promise((resolve) => (readyResolve = resolve));

async function start() {
  renderStatus();
  let firstToken;
  try {
    firstToken = await fetchToken();
  } catch (error) {
    statusLine.textContent = `Could not get a token: ${error.message}`;
    statusLine.dataset.status = "failed";
    return;
  }
  let fresh = firstToken;
  client = new ClasswireClient({
    url: socketUrl,
    classroom: me.classroom,
    user: me.user,
    // Opening the page as a teacher is the explicit act that reopens an ended class (reconnects never do).
    reopen: me.role === "teacher",
    // A fresh token per connection: a long class outlives a token's expiry.
    token: async () => {
      if (fresh) {
        const token = fresh;
        fresh = null;
        return token;
      }
      return fetchToken();
    },
    onEvent,
    onReset,
    onVolatile,
    onStatus,
    onError,
    onPresence,
  });
  hooks.client = client;
  client.connect().then(readyResolve, () => {});
}

// Hooks for automated browser tests (and curious humans in the console).
const hooks = {
  me,
  client: null,
  ready,
  status: () => (client ? client.status : "idle"),
  lastSeq: () => (client ? client.lastSeq : 0),
  strokeCount: () => board.ops.filter((op) => op.kind === "stroke").length,
  eraseCount: () => board.ops.filter((op) => op.kind === "erase").length,
  chatMessages: () => chat.map(({ seq, from, name, text }) => ({ seq, from, name, text })),
  roster: () => [...roster.values()],
  listed: () => listed().map((m) => m.userId),
  users: () => (client ? client.users : null),
  crowded: () => Boolean(client?.crowded),
  applied: () => applied.slice(),
  cursors: () => [...cursors].map(([userId, c]) => ({ userId, x: c.x, y: c.y })),
  inkedPixels: () => {
    const { data } = inkCtx.getImageData(0, 0, ink.width, ink.height);
    let inked = 0;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked += 1;
    return inked;
  },
  resets: () => resets,
  pendingCount: () => (client ? client.pending : 0),
  ended: () => ended,
  dropConnection: (offlineMs = 0) => client.drop({ offlineMs }),
  drawStroke: (points, { color = tool.color, width = tool.width } = {}) =>
    publishStroke({ kind: "stroke", points, color, width }),
  sendChat: (text) => publish("chat", { text }, { kind: "chat", text }),
  clearBoard: () => publish("clear", {}),
  endClass: () => publish("end", {}),
};
window.classwire = hooks;
start();
