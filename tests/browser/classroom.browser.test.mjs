// The demo classroom page in a real browser, against the real local system: Playwright (playwright-core)
// driving Debian's chromium.
//
//   make install && .venv/bin/pytest tests/browser      (what `make test` runs)
//
// tests/browser/test_browser.py starts the system (real redis-server primary and replica, the AWS
// emulator, the gateway with warm Lambda workers running the real handlers, the demo page and its
// local token endpoint) and runs this file with:
//   CLASSWIRE_WEB_URL=http://127.0.0.1:<port>/      the demo page (required; `make deploy` serves one too)
//   CLASSWIRE_CONTROL_URL=http://127.0.0.1:<port>/  Redis faults on demand (POST redis/hold-replica,
//                                                   redis/failover); without it the failover test skips
// CHROMIUM overrides /usr/bin/chromium. Screenshots go to reports/tmp/browser/ (gitignored).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = join(HERE, "..", "..");
const SHOTS = join(REPO, "reports", "tmp", "browser");
const RUN = Date.now().toString(36);
const ROOM = `room-${RUN}`;
const OTHER_ROOM = `other-${RUN}`;
const CROWD_ROOM = `crowd-${RUN}`;
// The system under test is crowded above this many users (test_browser.py sets it).
const LIVE_MAX = 3;
const WAIT = { timeout: 15_000 };

const BASE_URL = process.env.CLASSWIRE_WEB_URL;
const CONTROL_URL = process.env.CLASSWIRE_CONTROL_URL;
let context;
let userDataDir;
const pages = {};

/** Asks the harness for a fault (see CLASSWIRE_CONTROL_URL). */
async function control(action) {
  const response = await fetch(new URL(action, CONTROL_URL), { method: "POST" });
  const body = await response.text();
  assert.equal(response.status, 200, `${action}: ${body}`);
  return JSON.parse(body);
}

/** Takes a page off the network (fetches and new WebSockets fail) or puts it back. */
async function setOffline(page, offline) {
  page.cdp ??= await context.newCDPSession(page);
  await page.cdp.send("Network.emulateNetworkConditions", { offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
}

async function openClassroom(label, { classroom, user, role, name }) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(String(error)));
  page.on("console", (message) => message.type() === "error" && problems.push(message.text()));
  page.problems = problems;
  const query = new URLSearchParams({ classroom, user, role, name });
  await page.goto(new URL(`?${query}`, BASE_URL).toString());
  await page.waitForFunction(() => window.classwire?.status() === "live", null, WAIT);
  pages[label] = page;
  return page;
}

/** Draws a stroke with the mouse, from and to fractions of the board. */
async function drawWithMouse(page, [x0, y0], [x1, y1]) {
  await page.bringToFront(); // chromium acknowledges input to a background tab only once a second
  const box = await page.getByTestId("board-overlay").boundingBox();
  await page.mouse.move(box.x + x0 * box.width, box.y + y0 * box.height);
  await page.mouse.down();
  await page.mouse.move(box.x + x1 * box.width, box.y + y1 * box.height, { steps: 12 });
  await page.mouse.up();
}

const strokes = (page) => page.evaluate(() => window.classwire.strokeCount());
const chats = (page) => page.evaluate(() => window.classwire.chatMessages());
const waitFor = (page, fn, arg) => page.waitForFunction(fn, arg, WAIT);

/** Every applied event exactly once, in seq order, with no gap since the first one the page saw. */
async function assertInOrder(page) {
  const seqs = (await page.evaluate(() => window.classwire.applied())).map((e) => e.seq);
  assert.ok(seqs.length > 0);
  seqs.forEach((seq, i) => assert.equal(seq, seqs[0] + i, `seq ${seq} at position ${i}: ${seqs.join(",")}`));
}

/** Counts inked pixels of a PNG screenshot by decoding it in the browser itself. */
async function inkedPixels(page, png) {
  return page.evaluate(async (b64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${b64}`;
    await image.decode();
    const canvas = new OffscreenCanvas(image.width, image.height);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(image, 0, 0);
    const { data } = ctx.getImageData(0, 0, image.width, image.height);
    let inked = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] < 600) inked += 1;
    return inked;
  }, png.toString("base64"));
}

describe("demo classroom page in chromium", { timeout: 120_000 }, () => {
  before(async () => {
    assert.ok(BASE_URL, "CLASSWIRE_WEB_URL is not set: run `.venv/bin/pytest tests/browser`, which starts the local system");
    mkdirSync(SHOTS, { recursive: true });
    userDataDir = mkdtempSync(join(tmpdir(), "classwire-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      viewport: { width: 1200, height: 800 },
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
    });
    await Promise.all([
      openClassroom("teacher", { classroom: ROOM, user: `teacher-${RUN}`, role: "teacher", name: "Ms Teacher" }),
      openClassroom("student", { classroom: ROOM, user: `student-${RUN}`, role: "student", name: "Sam Student" }),
      openClassroom("outsider", { classroom: OTHER_ROOM, user: `outsider-${RUN}`, role: "student", name: "Olly" }),
    ]);
  });

  after(async () => {
    await context?.close();
    if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  });

  it("shows each member in the roster of its own classroom only", async () => {
    const { teacher, student, outsider } = pages;
    await waitFor(teacher, (n) => window.classwire.roster().length === n, 2);
    await waitFor(student, (n) => window.classwire.roster().length === n, 2);
    await teacher.getByTestId("roster").getByText("Sam Student").waitFor(WAIT);
    assert.deepEqual((await outsider.evaluate(() => window.classwire.roster())).map((m) => m.name), ["Olly"]);
    assert.equal(await student.getByTestId("clear").isVisible(), false, "students have no clear button");
    assert.equal(await teacher.getByTestId("clear").isVisible(), true);
  });

  it("teacher and student see each other's strokes and chat, in the same order", async () => {
    const { teacher, student } = pages;
    await drawWithMouse(teacher, [0.1, 0.2], [0.45, 0.3]);
    await drawWithMouse(student, [0.2, 0.7], [0.6, 0.55]);
    for (const page of [teacher, student]) await waitFor(page, () => window.classwire.strokeCount() === 2);

    await teacher.getByTestId("chat-input").fill("Welcome, everyone");
    await teacher.getByTestId("chat-input").press("Enter");
    await student.getByTestId("chat-input").fill("Hello <b>miss</b>");
    await student.getByTestId("chat-send").click();
    for (const page of [teacher, student]) await waitFor(page, () => window.classwire.chatMessages().length === 2);
    assert.deepEqual(await chats(teacher), await chats(student));
    assert.deepEqual((await chats(student)).map((m) => m.text).sort(), ["Hello <b>miss</b>", "Welcome, everyone"]);
    await student.getByTestId("chat-log").getByText("Hello <b>miss</b>").waitFor(WAIT); // shown as text
    for (const page of [teacher, student]) await assertInOrder(page);
  });

  it("a page in another classroom sees none of it", async () => {
    const { outsider } = pages;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await strokes(outsider), 0);
    assert.deepEqual(await chats(outsider), []);
    const foreign = (await outsider.evaluate(() => window.classwire.applied())).filter((e) => !e.from.startsWith("outsider"));
    assert.deepEqual(foreign, []);
  });

  it("a page whose socket is cut reconnects and shows every stroke it missed", async () => {
    const { teacher, student } = pages;
    // The student's network goes down (every reconnection attempt fails: no token, no socket) and its
    // socket is cut; it stays offline until the teacher's strokes are in the log.
    await setOffline(student, true);
    await student.evaluate(() => window.classwire.dropConnection());
    await waitFor(student, () => window.classwire.status() === "reconnecting");
    await drawWithMouse(teacher, [0.55, 0.15], [0.9, 0.2]);
    await drawWithMouse(teacher, [0.55, 0.3], [0.9, 0.35]);
    await drawWithMouse(teacher, [0.55, 0.45], [0.9, 0.5]);
    await waitFor(teacher, () => window.classwire.strokeCount() === 5);
    assert.equal(await student.evaluate(() => window.classwire.status()), "reconnecting");
    assert.equal(await strokes(student), 2, "the student is offline");
    await setOffline(student, false);
    await waitFor(student, () => window.classwire.status() === "live" && window.classwire.strokeCount() === 5);
    await assertInOrder(student);
    assert.equal(await student.getByTestId("status").getAttribute("data-status"), "live");
  });

  it("the screenshot shows the drawn strokes", async () => {
    const { student } = pages;
    await student.bringToFront();
    const png = await student.getByTestId("board").screenshot({ path: join(SHOTS, "student-board.png") });
    const inked = await inkedPixels(student, png);
    assert.ok(inked > 500, `only ${inked} inked pixels in the board screenshot`);
    await student.screenshot({ path: join(SHOTS, "student-page.png") });
  });

  it("cursors reach the others; an eraser stroke removes ink on every board", async () => {
    const { teacher, student } = pages;
    await teacher.bringToFront();
    const box = await teacher.getByTestId("board-overlay").boundingBox();
    await teacher.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.8, { steps: 5 });
    await waitFor(student, (user) => window.classwire.cursors().some((c) => c.userId === user), `teacher-${RUN}`);
    const before = await student.evaluate(() => window.classwire.inkedPixels());
    await student.bringToFront();
    await student.getByTestId("tool-eraser").click();
    await drawWithMouse(student, [0.7, 0.05], [0.7, 0.6]); // across the three right-hand strokes
    await student.getByTestId("tool-pen").click();
    for (const page of [teacher, student]) await waitFor(page, () => window.classwire.eraseCount() === 1);
    const after = await student.evaluate(() => window.classwire.inkedPixels());
    assert.ok(after < before, `erasing left ${after} of ${before} inked pixels`);
    assert.equal(await teacher.evaluate(() => window.classwire.inkedPixels()), after, "both boards show the same picture");
    await student.getByTestId("board").screenshot({ path: join(SHOTS, "student-board-erased.png") });
  });

  it("after a failover that lost an event, both pages reset and rebuild the board from the log", { skip: !CONTROL_URL && "needs CLASSWIRE_CONTROL_URL" }, async () => {
    const { teacher, student } = pages;
    // The replica stops receiving writes, so the next stroke is only on the primary when it fails over.
    await control("redis/hold-replica");
    await drawWithMouse(teacher, [0.1, 0.85], [0.3, 0.9]);
    for (const page of [teacher, student]) await waitFor(page, () => window.classwire.strokeCount() === 6);
    await control("redis/failover");
    await drawWithMouse(teacher, [0.35, 0.85], [0.45, 0.9]); // takes the lost event's seq, with another eid
    for (const page of [teacher, student]) {
      await waitFor(page, () => window.classwire.resets() === 1 && window.classwire.strokeCount() === 6);
      await assertInOrder(page);
    }
    assert.equal(await teacher.evaluate(() => window.classwire.inkedPixels()), await student.evaluate(() => window.classwire.inkedPixels()));
  });

  it("the teacher's clear empties both boards", async () => {
    const { teacher, student } = pages;
    await teacher.bringToFront();
    await teacher.getByTestId("clear").click();
    for (const page of [teacher, student]) await waitFor(page, () => window.classwire.strokeCount() === 0);
    await student.bringToFront();
    const png = await student.getByTestId("board").screenshot({ path: join(SHOTS, "student-board-cleared.png") });
    assert.ok((await inkedPixels(student, png)) < 50, "the cleared board still shows ink");
    await assertInOrder(student);
  });

  it("in a crowded classroom the teacher's roster follows every student, a student sees the count", async () => {
    const open = (n, role = "student") =>
      openClassroom(`crowd-${role}-${n}`, { classroom: CROWD_ROOM, user: `crowd-${n}-${RUN}`, role, name: `Crowd ${n}` });
    const teacher = await open(0, "teacher");
    const early = [];
    for (let n = 1; n <= LIVE_MAX; n += 1) early.push(await open(n)); // the last of them makes it crowded
    const late = await open(LIVE_MAX + 1); // announced to the teacher only
    const everyone = LIVE_MAX + 2;
    await waitFor(teacher, (n) => window.classwire.roster().length === n, everyone);
    await waitFor(late, (n) => window.classwire.crowded() && window.classwire.users() === n, everyone);
    const listed = await late.evaluate(() => window.classwire.listed());
    assert.deepEqual(listed.sort(), [`crowd-0-${RUN}`, `crowd-${LIVE_MAX + 1}-${RUN}`].sort(), "a student lists the teachers and itself");
    await late.getByTestId("roster-count").getByText(String(everyone)).waitFor(WAIT);
    await late.getByTestId("roster-more").getByText(`and ${everyone - 2} more`).waitFor(WAIT);
    // The late joiner's join is not in the log: the students who were there saw none.
    const joins = await early[0].evaluate(() => window.classwire.applied().filter((e) => e.event === "join").map((e) => e.from));
    assert.ok(!joins.includes(`crowd-${LIVE_MAX + 1}-${RUN}`), `a crowded join reached a student's log: ${joins}`);
    await teacher.bringToFront();
    await teacher.screenshot({ path: join(SHOTS, "teacher-crowded-roster.png") });
    await late.close();
    await waitFor(teacher, (n) => window.classwire.roster().length === n, everyone - 1);
    for (const page of [teacher, ...early]) await page.close(); // their console problems are checked at the end
  });

  it("a student may not clear; the teacher ends the class and no page reconnects", async () => {
    const { teacher, student } = pages;
    const refused = await student.evaluate(() => window.classwire.clearBoard().then(() => "sent", (e) => e.code));
    assert.equal(refused, "forbidden");
    await teacher.bringToFront();
    await teacher.getByTestId("end").click();
    await teacher.getByTestId("end").click();
    for (const page of [teacher, student]) {
      await waitFor(page, () => window.classwire.status() === "ended");
      await page.getByTestId("ended-banner").waitFor({ state: "visible", ...WAIT });
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(await student.evaluate(() => window.classwire.status()), "ended");
    // Expected noise only: refused sockets, and the offline student's failed token fetches.
    const expected = /WebSocket|net::ERR_INTERNET_DISCONNECTED/;
    for (const page of Object.values(pages)) assert.deepEqual(page.problems.filter((p) => !expected.test(p)), []);
  });
});
