// Browser tests of the operator console (DESIGN §12), against the real system.
//
// It starts bin/msgrouter (build it first: make build, or make test-browser) on free
// ports with a fresh Postgres database, an embedded NATS server and ADMIN_API_KEYS
// set, plus a fake HTTP agent inbox that fails until told to succeed; seeds messages
// through the real ingest API; then drives the console in Debian's headless Chromium
// with playwright-core, and takes screenshots: into a fresh temporary directory by
// default (its path is printed at the end), into docs/console/*.png — the README's
// tour — only with UPDATE_SCREENSHOTS=1, so a test run leaves the work tree clean.
//
//   node test/browser/run.mjs                       (from the repository root or anywhere)
//   UPDATE_SCREENSHOTS=1 node test/browser/run.mjs  (refresh docs/console/*.png)
//
// Environment: TEST_DATABASE_URL or DATABASE_URL (default postgres://127.0.0.1:5432/postgres)
// names the server the test database is created on; CHROMIUM (default /usr/bin/chromium);
// SCREENSHOTS_DIR overrides where screenshots go (unless UPDATE_SCREENSHOTS=1).

import { spawn, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const updateScreenshots = process.env.UPDATE_SCREENSHOTS === '1';
const shots = updateScreenshots ? path.join(root, 'docs/console')
  : process.env.SCREENSHOTS_DIR ? path.resolve(process.env.SCREENSHOTS_DIR)
  : mkdtempSync(path.join(os.tmpdir(), 'console-screenshots-'));
const KEY = 'console-test-' + randomUUID();
const started = Date.now();
const cleanups = [];
let failed = 0;

function log(...a) { console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a); }

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

async function waitFor(what, f, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

// ---- fake agent inbox --------------------------------------------------------

// Each inbox path has a mode: 'fail' answers 500 with a hostile body (the console must
// show it as text), 'ok' answers 204. Deliveries are counted by X-Message-Id.
const inboxMode = new Map();
const received = new Map();
const HOSTILE = '<img src=x onerror="window.__xss=1">boom';
const inbox = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    const name = req.url.split('/').pop();
    if ((inboxMode.get(name) || 'fail') === 'ok') {
      const id = req.headers['x-message-id'];
      received.set(id, (received.get(id) || 0) + 1);
      res.writeHead(204).end();
    } else {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(HOSTILE);
    }
  });
});

// ---- the system ----------------------------------------------------------------

const baseDB = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || 'postgres://127.0.0.1:5432/postgres';
const dbName = 'console_browser_' + randomUUID().replaceAll('-', '').slice(0, 16);
function dbURL(name) { const u = new URL(baseDB); u.pathname = '/' + name; return u.toString(); }

let urls;
async function startSystem() {
  if (!existsSync(path.join(root, 'bin/msgrouter'))) throw new Error('bin/msgrouter is missing: run make build (or make test-browser)');
  execFileSync('psql', [baseDB, '-q', '-c', `CREATE DATABASE ${dbName}`], { stdio: 'inherit' });
  cleanups.push(() => execFileSync('psql', [baseDB, '-q', '-c', `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`], { stdio: 'inherit' }));
  const [ingest, router, cams, natsPort, inboxPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  await new Promise((r) => inbox.listen(inboxPort, '127.0.0.1', r));
  cleanups.push(() => inbox.close());
  const data = mkdtempSync(path.join(os.tmpdir(), 'console-browser-'));
  cleanups.push(() => rmSync(data, { recursive: true, force: true }));
  urls = {
    ingest: `http://127.0.0.1:${ingest}`, router: `http://127.0.0.1:${router}`, cams: `http://127.0.0.1:${cams}`,
    inbox: `http://127.0.0.1:${inboxPort}/inbox/`,
  };
  const env = {
    ...process.env, DATABASE_URL: dbURL(dbName), NATS_URL: '',
    INGEST_ADDR: `127.0.0.1:${ingest}`, ROUTER_ADDR: `127.0.0.1:${router}`, CAMS_ADDR: `127.0.0.1:${cams}`,
    CAMS_API_URL: urls.cams, ADMIN_API_KEYS: `ops:${KEY}`, CAMS_API_KEY: KEY, INGEST_API_KEYS: '',
    DELIVERY_ALLOW_PRIVATE_NETWORKS: 'true', DELIVERY_MAX_ATTEMPTS: '2', DELIVERY_BACKOFF_INITIAL: '50ms',
    DELIVERY_BACKOFF_MAX: '200ms', BREAKER_FAILURES: '1000', CAMS_CACHE_TTL: '1s', LOG_LEVEL: 'warn', LOG_FORMAT: 'text',
  };
  delete env.NATS_URL; // the all-in-one binary starts an embedded NATS server when it is unset
  const proc = spawn(path.join(root, 'bin/msgrouter'), ['--nats-port', String(natsPort), '--data', data],
    { env, stdio: ['ignore', 'inherit', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (b) => { stderr += b; if (process.env.VERBOSE) process.stderr.write(b); });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => r({ code, sig })));
  cleanups.push(async () => {
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 15000);
    await exited;
    clearTimeout(t);
  });
  await waitFor('the router to be ready', async () => {
    if (proc.exitCode !== null) throw new Error('bin/msgrouter exited: ' + stderr.slice(-2000));
    const r = await fetch(urls.router + '/health/ready');
    return r.ok;
  }, 60000);
  await waitFor('CAMS to answer', async () => (await fetch(urls.cams + '/health/ready')).ok, 30000);
}

async function call(method, url, body) {
  const r = await fetch(url, {
    method, headers: { Authorization: 'Bearer ' + KEY, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null, text };
}

async function send(agent, payload) {
  const r = await call('POST', urls.ingest + '/v1/messages', { aiAgentAddress: agent, payload });
  assert(r.status === 202, `ingest accepted the message: ${r.status} ${r.text}`);
  return r.body.messageId;
}

async function status(id) {
  const r = await call('GET', urls.router + '/v1/messages/' + id);
  return r.status === 200 ? r.body.status : null;
}

const waitStatus = (id, want, ms) => waitFor(`${id} to be ${want}`, async () => (await status(id)) === want, ms);

async function registerHTTP(address, name) {
  const r = await call('POST', urls.cams + '/v1/agent-inboxes', {
    aiAgentAddress: address, inboxDestinationType: 'HTTP_ENDPOINT', inboxName: urls.inbox + name, ownerTeam: 'QA',
  });
  assert(r.status === 201, `CAMS registered ${address}: ${r.status} ${r.text}`);
}

// ---- steps -----------------------------------------------------------------------

async function step(name, f) {
  const t = Date.now();
  try {
    await f();
    log(`ok   ${name} (${Date.now() - t} ms)`);
  } catch (e) {
    failed++;
    log(`FAIL ${name}: ${e.stack || e}`);
  }
}

async function main() {
  mkdirSync(shots, { recursive: true });
  await startSystem();
  log('system up', urls.router);

  // Seed: a delivered message, a dead-lettered one, three dead letters for a bulk
  // replay, and a rejected one.
  await registerHTTP('flaky@example.com', 'flaky');
  await registerHTTP('bulk@example.com', 'bulk');
  const delivered = await send('demo-agent@example.com', { command: 'hello', value: 42 });
  const flaky = await send('flaky@example.com', { command: 'retry-me' });
  const bulk = [];
  for (let i = 0; i < 3; i++) bulk.push(await send('bulk@example.com', { n: i }));
  const rejected = await send('nobody@example.com', { command: 'lost' });
  // Enough messages for a second page of the message list (25 a page).
  const more = await Promise.all(Array.from({ length: 24 }, (_, i) => send('demo-agent@example.com', { n: i })));
  const total = 6 + more.length;
  await waitStatus(delivered, 'DELIVERED');
  for (const id of more) await waitStatus(id, 'DELIVERED');
  await waitStatus(flaky, 'DEAD_LETTERED');
  for (const id of bulk) await waitStatus(id, 'DEAD_LETTERED');
  await waitStatus(rejected, 'REJECTED');
  log('seeded');

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10000);
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // Failed API answers (the key prompt's 401s, the unknown id's 404) are expected
    // and checked below; anything else (a CSP violation, an exception) is a failure.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push('console error: ' + m.text());
  });
  page.on('response', (r) => {
    const p = new URL(r.url()).pathname;
    const expected = (r.status() === 401) || (r.status() === 404 && p.startsWith('/v1/messages/'));
    if (r.status() >= 400 && !expected) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${p}`);
  });
  const consoleURL = urls.router + '/console/';
  const shot = (name) => page.screenshot({ path: path.join(shots, name + '.png'), fullPage: true });
  const text = (s) => page.getByText(s, { exact: false }).first().waitFor();

  await step('the key prompt: no key, a wrong key, then the right key', async () => {
    await page.goto(consoleURL);
    await text('This router requires an admin key');
    await page.getByLabel('Key (one of').fill('not-the-key');
    await page.keyboard.press('Enter');
    await text('That key was not accepted');
    await shot('key-prompt');
    await page.getByLabel('Key (one of').fill(KEY);
    await page.getByRole('button', { name: 'Use this key' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await waitFor('the overview counts', async () => (await page.locator('.card .value').count()) === 7);
    // The key is kept for the tab: a reload does not ask again.
    await page.reload();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    assert(await page.locator('#key-prompt').isHidden(), 'no key prompt after a reload');
    await waitFor('the delivered rate', async () => !(await page.locator('.card .value').nth(1).textContent()).includes('…'), 10000);
    await text('Dead-lettered');
    await shot('overview');
  });

  await step('page through all messages, newest first', async () => {
    await page.getByRole('link', { name: 'Messages' }).click();
    await waitFor('a full first page', async () => (await page.locator('tbody tr').count()) === 25, 10000);
    await shot('messages');
    const newestFirst = async () => {
      const times = await page.locator('tbody tr td:first-child').allTextContents();
      return times.every((t, i) => i === 0 || times[i - 1] >= t);
    };
    assert(await newestFirst(), 'newest first on page 1');
    const page1 = await page.locator('tbody tr td:first-child').allTextContents();
    const ids1 = await page.locator('tbody tr td.id').allTextContents();
    await page.getByRole('link', { name: 'Older →' }).click();
    await waitFor('the second page', async () => (await page.locator('tbody tr').count()) === total - 25, 10000);
    const ids = () => page.locator('tbody tr td.id').allTextContents();
    assert(await page.getByRole('link', { name: 'Older →' }).count() === 0, 'no third page');
    assert(await newestFirst(), 'newest first on page 2');
    const page2 = await page.locator('tbody tr td:first-child').allTextContents();
    assert(page1[page1.length - 1] >= page2[0], 'page 2 is older than page 1');
    const all = new Set([...ids1, ...(await ids())]);
    assert(all.size === total && [delivered, flaky, rejected, ...bulk, ...more].every((id) => all.has(id)), 'the two pages hold every message once');
    await page.getByRole('link', { name: '← Newest' }).click();
    await waitFor('the first page again', async () => (await page.locator('tbody tr').count()) === 25, 10000);
  });

  await step('find a delivered message and open it', async () => {
    await page.getByRole('link', { name: 'Messages' }).click();
    await page.getByLabel('Agent address').fill('flaky@example.com');
    await page.getByLabel('Status').selectOption('DEAD_LETTERED');
    await page.getByRole('button', { name: 'Search' }).click();
    await waitFor('the dead-lettered message of flaky@', async () =>
      (await page.locator('tbody tr').count()) === 1 && (await page.getByRole('link', { name: flaky }).count()) === 1, 10000);
    await page.getByLabel('Agent address').fill('demo-agent@example.com');
    await page.getByLabel('Status').selectOption('DELIVERED');
    await page.getByRole('button', { name: 'Search' }).click();
    await waitFor('the 25 delivered messages of the demo agent', async () =>
      (await page.locator('tbody tr').count()) === 25 && (await page.getByRole('link', { name: delivered }).count()) === 1, 10000);
    assert(await page.getByRole('link', { name: 'Older →' }).count() === 0, 'one page exactly');
    await page.getByRole('link', { name: delivered }).click();
    await page.locator('[data-status="DELIVERED"]').waitFor();
    await text('agents.demo.inbox');
    assert(await page.getByRole('button', { name: 'Replay' }).count() === 0, 'no replay button on a delivered message');
    await shot('message-delivered');
  });

  await step('open a dead-lettered message, replay it, see it DELIVERED', async () => {
    await page.goto(consoleURL + '#/messages/' + flaky);
    await page.locator('[data-status="DEAD_LETTERED"]').waitFor();
    await text('MAX_ATTEMPTS_EXCEEDED');
    // The inbox's hostile error body is shown as text, never run as HTML.
    await page.locator('td.err', { hasText: '<img src=x' }).first().waitFor();
    assert(await page.evaluate(() => window.__xss === undefined), 'the hostile error text did not run');
    assert(await page.locator('main img').count() === 0, 'no element was made from the hostile text');
    await shot('message-dead-lettered');
    inboxMode.set('flaky', 'ok');
    await page.getByRole('button', { name: 'Replay' }).click();
    await page.locator('[data-status="DELIVERED"]').waitFor({ timeout: 20000 });
    assert(received.get(flaky) === 1, 'the fake inbox received the replayed message once');
    await shot('message-replayed');
    // The agent links to its page.
    await page.getByRole('link', { name: 'flaky@example.com' }).click();
    await page.getByRole('heading', { name: 'Edit agent flaky@example.com' }).waitFor();
    assert(await page.getByLabel('Inbox (a NATS subject').inputValue() === urls.inbox + 'flaky', 'the form shows the inbox');
  });

  await step('bulk replay with a confirmation that says how many', async () => {
    await page.getByRole('link', { name: 'Dead letters' }).click();
    await page.getByRole('heading', { name: 'Dead letters and rejections' }).waitFor();
    await text('nobody@example.com'); // the rejected one is listed too
    await page.getByLabel('Agent address').fill('bulk@example.com');
    await page.getByRole('button', { name: 'Filter' }).click();
    await text('3 failed messages match');
    await shot('dead-letters');
    inboxMode.set('bulk', 'ok');
    await page.getByRole('button', { name: 'Replay all 3 matching…' }).click();
    await text('Replay these 3 messages?');
    await page.keyboard.press('Escape'); // cancels, from the keyboard
    await waitFor('the confirmation to close', async () => (await page.getByText('Replay these 3 messages?').count()) === 0, 5000);
    assert(await page.evaluate(() => document.activeElement.id) === 'bulk-replay', 'focus is back on the bulk replay button');
    await page.keyboard.press('Enter');
    await text('Replay these 3 messages?');
    await shot('bulk-replay-confirm');
    await page.getByRole('button', { name: 'Replay 3 messages' }).click();
    await text('Replayed 3 messages.');
    for (const id of bulk) await waitStatus(id, 'DELIVERED');
    await page.reload();
    await text('0 failed messages match');
  });

  await step('register an agent, edit it, mark it inactive; secrets never shown', async () => {
    const secret = 'whsec_' + Buffer.from('0123456789abcdef0123456789abcdef').toString('base64');
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.getByRole('link', { name: 'Register an agent' }).click();
    await page.getByLabel('Agent address').fill('new-agent@example.com');
    await page.getByLabel('Inbox (a NATS subject').fill('agents.new.inbox');
    await page.getByLabel('Owner team').fill('Sales');
    await page.getByLabel('New signing secrets').fill(secret);
    await shot('agent-create');
    await page.getByRole('button', { name: 'Register agent' }).click();
    await text('Registered new-agent@example.com.');
    const row = page.locator('tr', { hasText: 'new-agent@example.com' });
    await row.getByText('set (1)').waitFor();
    assert(!(await page.content()).includes(secret), 'the secret is not in the page');
    const stored = await call('GET', urls.cams + '/v1/agent-inboxes/new-agent%40example.com?includeSecrets=true');
    assert(JSON.stringify(stored.body).includes('whsec_') || stored.body.signingSecrets, 'CAMS stored the secret');
    const viaRouter = await call('GET', urls.router + '/v1/agents/new-agent%40example.com');
    assert(viaRouter.status === 200 && !viaRouter.text.includes('whsec_'), 'the router never returns a secret: ' + viaRouter.text);

    await row.getByRole('link', { name: 'new-agent@example.com' }).click();
    await page.getByRole('heading', { name: 'Edit agent new-agent@example.com' }).waitFor();
    await text('Signing secrets: set (1)');
    await page.getByLabel('Owner team').fill('Growth');
    await page.getByLabel('Description').fill('Edited in the console');
    await shot('agent-edit');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await text('Saved new-agent@example.com.');
    await row.getByText('Growth').waitFor();
    const after = await call('GET', urls.cams + '/v1/agent-inboxes/new-agent%40example.com');
    assert(after.body.ownerTeam === 'Growth' && after.body.inboxName === 'agents.new.inbox', 'CAMS has the edit: ' + after.text);
    assert(after.body.updatedBy === 'ops', 'the edit is recorded as made by the admin key "ops": ' + after.body.updatedBy);

    await page.getByRole('button', { name: 'Mark new-agent@example.com inactive' }).click();
    await text('new-agent@example.com is now INACTIVE.');
    await row.locator('.badge', { hasText: 'INACTIVE' }).waitFor();
    await shot('agents');
    await page.getByRole('button', { name: 'Mark new-agent@example.com active' }).click();
    await row.locator('.badge', { hasText: 'ACTIVE' }).waitFor();
  });

  await step('an unknown message id says so', async () => {
    const unknown = randomUUID();
    await page.getByRole('link', { name: 'Messages' }).click();
    await page.getByLabel('Message id').fill(unknown);
    await page.keyboard.press('Enter');
    await text(`No message with id ${unknown}`);
    await text('has not seen message');
    await shot('message-unknown');
    await page.goto(consoleURL + '#/messages/not-a-uuid');
    await text('messageIds are UUIDs');
  });

  await step('keyboard only: reach a page from the navigation', async () => {
    await page.goto(consoleURL + '#/');
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('link', { name: 'Overview' }).focus();
    let reached = false;
    for (let i = 0; i < 4 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement && document.activeElement.textContent === 'Dead letters');
    }
    assert(reached, 'Tab reaches the "Dead letters" link');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Dead letters and rejections' }).waitFor();
  });

  await step('a narrow window: nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const hash of ['#/', '#/messages/' + flaky, '#/dead-letters', '#/agents']) {
      await page.goto(consoleURL + hash);
      await page.locator('main h1').waitFor();
      await page.waitForLoadState('networkidle');
      const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(over <= 1, `${hash} fits a 390 px window (overflows by ${over} px)`);
    }
    await page.goto(consoleURL + '#/messages/' + flaky);
    await page.locator('[data-status]').waitFor();
    await shot('narrow-message');
  });

  await step('no script errors or CSP violations', async () => {
    assert(problems.length === 0, problems.join('\n'));
  });
}

let code = 0;
try {
  await main();
} catch (e) {
  failed++;
  log('FAIL setup: ' + (e.stack || e));
}
for (const c of cleanups.reverse()) {
  try { await c(); } catch (e) { log('cleanup: ' + e.message); }
}
code = failed ? 1 : 0;
log(failed ? `${failed} step(s) failed` : 'all browser tests passed', `in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${shots}${updateScreenshots ? '' : ' (UPDATE_SCREENSHOTS=1 writes docs/console/)'}`);
process.exit(code);
