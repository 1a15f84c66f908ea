// Browser tests of the management console: a real `keyctl serve` (temporary
// SQLite store, admin token, loopback) driven through Debian's chromium with
// playwright-core. The steps share one server and one page and run in order.
//
//   KEYCTL=target/debug/keyctl node --test console.test.mjs   (or ./run.sh)
//
// Screenshots go to target/console-screenshots/.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const KEYCTL = process.env.KEYCTL ?? join(root, 'target/debug/keyctl');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = join(root, 'target/console-screenshots');
const TOKEN = `console-admin-${randomBytes(18).toString('hex')}`;
// The service accounts' names; their ids (ACCOUNT, PAGING_ACCOUNT) are
// given when the test creates them (a key's account must exist).
const ACCOUNT_NAME = 'robot-console';
const PAGING_ACCOUNT_NAME = 'robot-paging';
let ACCOUNT;
let PAGING_ACCOUNT;
const DEFAULT_ORGANIZATION = 'defaultorganization0';
const DEFAULT_CLOUD = 'defaultcloud00000000';
const DEFAULT_FOLDER = 'defaultfolder0000000';
const DENY = 'iam.denyServiceAccountApiKeysCreation';
const PAGE_SIZE = 20;
const COLUMNS = ['ID', 'Description', 'Created at', 'Last used at', 'Scopes', 'Expires at', 'Masked key', 'Status', 'Actions'];

let checks = 0;
const ok = (value, message) => { checks += 1; assert.ok(value, message); };
const eq = (actual, expected, message) => { checks += 1; assert.deepEqual(actual, expected, message); };
const match = (text, re, message) => { checks += 1; assert.match(text, re, message); };

let server;
// Whether this keyctl serve has the resource managers' routes
// (`/resource-manager/v1`, `/organization-manager/v1`) at its root.
let serverEnv;
let base;
let workdir;
let browser;
let context;
let page;
const secrets = [];
const traffic = [];
const problems = [];

// ----- the server -----

function startServer() {
  workdir = mkdtempSync(join(tmpdir(), 'keyctl-console-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('API_KEYS_')));
  Object.assign(env, {
    API_KEYS_PEPPER: randomBytes(32).toString('base64'),
    API_KEYS_ADMIN_TOKEN: TOKEN,
    API_KEYS_DATABASE_URL: `sqlite://${join(workdir, 'keys.db')}?mode=rwc`,
    RUST_LOG: 'warn',
  });
  serverEnv = env;
  server = spawn(KEYCTL, ['serve', '--listen', '127.0.0.1:0'], { cwd: workdir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolveStart, rejectStart) => {
    const timer = setTimeout(() => rejectStart(new Error(`keyctl serve did not start:\n${log}`)), 30_000);
    server.on('error', (e) => { clearTimeout(timer); rejectStart(new Error(`cannot run ${KEYCTL}: ${e.message}`)); });
    server.on('exit', (code) => { clearTimeout(timer); rejectStart(new Error(`keyctl serve exited ${code}:\n${log}`)); });
    server.stderr.setEncoding('utf8');
    server.stderr.on('data', (chunk) => {
      log += chunk;
      // Whole lines only: stderr may arrive in pieces.
      const found = /keyctl: listening on (\S+)[^\n]*\n/.exec(log);
      if (found && log.includes('console at /iam/v1/console')) {
        clearTimeout(timer);
        resolveStart(`http://${found[1]}`);
      }
    });
  });
}

async function stopServer() {
  if (!server || server.exitCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const timer = setTimeout(() => server.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/// The management API from the test itself (not through the page), with
/// the extension fields (`view=FULL`) as the console asks for them.
async function api(method, path, body) {
  return apiAt(`/iam/v1/${path}`, method, body);
}

/// The same for any path from the root (`/resource-manager/v1/…`).
async function apiAt(path, method, body) {
  const answer = await apiAnswer(path, method, body);
  assert.ok(answer.ok, `${method} ${path}: ${answer.status} ${JSON.stringify(answer.data)}`);
  return answer.data;
}

/// `{ ok, status, data }` of a call, refused or not.
async function apiAnswer(path, method, body) {
  const url = new URL(`${base}${path}`);
  url.searchParams.set('view', 'FULL');
  const response = await fetch(url, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  return { ok: response.ok, status: response.status, data };
}

/// Creates a service account in the default folder; its id.
async function createAccount(name, description = '') {
  const op = await api('POST', 'serviceAccounts', { folderId: DEFAULT_FOLDER, name, description });
  return op.response.id;
}

const ORGANIZATION_PATH = `/organization-manager/v1/organizations/${DEFAULT_ORGANIZATION}`;
const FOLDER_PATH = `/resource-manager/v1/folders/${DEFAULT_FOLDER}`;

async function authorize(secret, scope) {
  const query = scope ? `?scope=${encodeURIComponent(scope)}` : '';
  return fetch(`${base}/v1/authorize${query}`, { headers: { Authorization: `Api-Key ${secret}` } });
}

// ----- page helpers -----

const dialog = (name) => page.getByRole('dialog', { name });
const keyRow = (id) => page.locator(`#keys-body tr[data-key-id="${id}"]`);
const shot = (name, fullPage = false) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });

/// The row's cells as text, times on one line (`2030-06-01 12:00:00 UTC`).
async function rowCells(id) {
  const cells = await keyRow(id).locator('th, td').allInnerTexts();
  return cells.map((c, i) => ([2, 3, 5].includes(i) ? c.replace(/\s+/g, ' ') : c));
}

async function tableIds() {
  return page.locator('#keys-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.keyId));
}

async function historyKinds() {
  await page.locator('#history-section').waitFor({ state: 'visible' });
  return page.locator('#history-body tr').evaluateAll((rows) => rows.map((r) => r.dataset.kind));
}

async function waitHistory(first) {
  await page.waitForFunction((kind) => document.querySelector('#history-body tr')?.dataset.kind === kind, first);
  return historyKinds();
}

/// Reads the secret dialog, checks it, and returns `{ id, secret }`.
async function readSecretDialog() {
  const d = dialog('Save the secret');
  await d.waitFor({ state: 'visible' });
  const id = await d.getByLabel('ID', { exact: true }).inputValue();
  const secret = await d.getByLabel('Secret', { exact: true }).inputValue();
  match(secret, new RegExp(`^ak_${id}_[A-Za-z0-9_]+$`), 'the secret is a key of the shown id');
  ok(await d.getByLabel('Secret', { exact: true }).evaluate((e) => e.readOnly), 'the secret field is read-only');
  ok(await d.getByLabel('ID', { exact: true }).evaluate((e) => e.readOnly), 'the id field is read-only');
  match(await d.innerText(), /will not be shown again/, 'the dialog warns the secret is shown once');
  ok(await d.getByRole('button', { name: 'Copy' }).isVisible(), 'a Copy button beside the secret');
  secrets.push(secret);
  return { id, secret };
}

/// Nothing in the page holds a secret: markup, every field's value.
async function assertNoSecretInPage(label) {
  const found = await page.evaluate((known) => {
    const html = document.documentElement.outerHTML;
    const values = [...document.querySelectorAll('input, textarea, select')].map((e) => e.value);
    const text = document.body.innerText;
    return known.filter((s) => html.includes(s) || text.includes(s) || values.some((v) => v.includes(s))).length;
  }, secrets);
  eq(found, 0, `${label}: no secret left in the page`);
}

async function closeSecretDialog() {
  await dialog('Save the secret').getByRole('button', { name: 'Close' }).click();
  await dialog('Save the secret').waitFor({ state: 'hidden' });
}

async function confirmIn(name) {
  const d = dialog(name);
  await d.waitFor({ state: 'visible' });
  await d.getByRole('button', { name: 'Confirm' }).click();
  await d.waitFor({ state: 'hidden' });
}

// ----- the steps -----

describe('management console', { timeout: 120_000 }, () => {
  let first;
  let reissued;

  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    base = await startServer();
    ACCOUNT = await createAccount(ACCOUNT_NAME, 'the console tests');
    PAGING_ACCOUNT = await createAccount(PAGING_ACCOUNT_NAME, 'paging');
    eq((await apiAnswer('/organization-manager/v1/organizations', 'GET')).status, 200, 'the server lists organizations');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    // Failed API calls are logged by the browser as "Failed to load
    // resource"; anything else (a CSP violation, a script error) counts.
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('request', (r) => traffic.push({ request: r, body: null }));
    page.on('response', async (r) => {
      const entry = traffic.find((t) => t.request === r.request());
      try {
        entry.body = await r.text();
      } catch {
        entry.body = '';
      }
    });
  });

  after(async () => {
    await context?.close().catch(() => {});
    await browser?.close().catch(() => {});
    await stopServer();
    if (workdir) rmSync(workdir, { recursive: true, force: true });
    console.log(`# browser checks: ${checks}`);
  });

  it('serves the page with its security headers', async () => {
    const response = await page.goto(`${base}/iam/v1/console`);
    eq(response.status(), 200, 'GET /iam/v1/console');
    const headers = response.headers();
    match(headers['content-security-policy'], /default-src 'none'; script-src 'self'/, 'strict CSP');
    eq(headers['x-frame-options'], 'DENY', 'no framing');
    eq(headers['cache-control'], 'no-store', 'not cached');
    ok(await page.getByLabel('Admin token').isVisible(), 'the sign-in form is shown');
  });

  it('shows a sign-in error for a wrong token', async () => {
    await page.getByLabel('Admin token').fill('not-the-admin-token-0123456789');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const error = page.locator('#sign-in-error');
    await error.filter({ hasText: /./ }).waitFor();
    match(await error.innerText(), /Sign-in failed.*not accepted/, 'the error says the token was refused');
    ok(await error.isVisible(), 'the error is visible');
    ok(!(await page.getByLabel('Service account', { exact: true }).isVisible()), 'still signed out');
  });

  it('signs in and shows an empty account', async () => {
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByLabel('Service account', { exact: true }).waitFor({ state: 'visible' });
    eq(await page.locator('#admin-token').inputValue(), '', 'the token field is emptied');
    await page.getByLabel('Service account', { exact: true }).fill(ACCOUNT);
    await page.getByRole('button', { name: 'Show keys' }).click();
    await page.locator('#list-status').filter({ hasText: 'has no API keys' }).waitFor();
    ok(true, 'an empty account says so');
  });

  it('refuses a past expiry and an unknown scope in the create dialog, in words', async () => {
    await page.getByRole('button', { name: 'Create API key' }).click();
    const d = dialog('Create API key');
    await d.waitFor({ state: 'visible' });
    await d.getByLabel('Expires at').fill('2020-01-01T00:00:00');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    const error = d.locator('#create-error');
    await error.filter({ hasText: /./ }).waitFor();
    match(await error.innerText(), /Refused: .*not in the future/, 'a past expiry is refused in words');
    await d.getByLabel('Expires at').fill('');
    // A scope the catalog does not have (as a tampered form would send).
    await d.locator('input[type=checkbox]').first().evaluate((box) => { box.value = 'yc.no-such-scope'; box.checked = true; });
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    await error.filter({ hasText: 'yc.no-such-scope' }).waitFor();
    match(await error.innerText(), /unknown scope/, 'an unknown scope is refused in words');
    await d.getByRole('button', { name: 'Cancel' }).click();
    await d.waitFor({ state: 'hidden' });
    eq(await tableIds(), [], 'nothing was created');
  });

  it('creates a key with two scopes and an expiry, shows its secret once, and the secret works', async () => {
    const scopes = (await api('GET', 'apiKeyScopes')).scopes;
    const chosen = scopes.filter((s) => !s.default).slice(0, 2).map((s) => s.id);
    eq(chosen.length, 2, 'the catalog has two non-default scopes');
    await page.getByRole('button', { name: 'Create API key' }).click();
    const d = dialog('Create API key');
    await d.waitFor({ state: 'visible' });
    const group = d.getByRole('group', { name: 'Scopes' });
    eq(await group.getByRole('checkbox').count(), scopes.length, 'one checkbox per catalog scope');
    const defaults = scopes.filter((s) => s.default).map((s) => s.id);
    for (const s of defaults) {
      match(await group.locator(`#create-scope-${s.replace(/[^A-Za-z0-9_-]/g, '_')}-hint`).innerText(), /default/, `${s} is marked default`);
    }
    match(await d.getByLabel('Expires at').evaluate((e) => e.getAttribute('aria-describedby').split(' ').map((i) => document.getElementById(i).textContent).join(' ')), /UTC/, 'the expiry hint says UTC');
    await d.getByLabel('Description').fill('deploy bot');
    for (const s of chosen) await group.getByLabel(s, { exact: true }).check();
    await d.getByLabel('Expires at').fill('2030-06-01T12:00:00');
    await shot('create-dialog');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    await d.waitFor({ state: 'hidden' });
    first = await readSecretDialog();
    // Copy puts the secret on the clipboard.
    await dialog('Save the secret').getByRole('button', { name: 'Copy' }).click();
    await page.locator('#secret-copy-status').filter({ hasText: 'Copied' }).waitFor();
    eq(await page.evaluate(() => navigator.clipboard.readText()), first.secret, 'Copy copies the secret');
    await page.evaluate(() => navigator.clipboard.writeText(''));
    await shot('secret-dialog');
    const granted = await authorize(first.secret, chosen[1]);
    eq(granted.status, 200, 'the new secret passes /v1/authorize');
    eq(granted.headers.get('x-api-key-scopes').split(',').sort(), [...chosen].sort(), 'with both scopes');
    await closeSecretDialog();
    await assertNoSecretInPage('after closing the secret dialog');
    await keyRow(first.id).waitFor();
    const cells = await rowCells(first.id);
    eq(await page.locator('#keys-table thead th').allInnerTexts().then((t) => t.map((x) => x.trim().toLowerCase())), COLUMNS.map((c) => c.toLowerCase()), 'the column headers');
    eq(await page.locator('#keys-table thead th').evaluateAll((t) => t.map((x) => x.textContent)), COLUMNS, 'the column headers as written');
    eq(cells[0], first.id, 'ID');
    eq(cells[1], 'deploy bot', 'Description');
    match(cells[2], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'Created at');
    eq(cells[3], '—', 'never used: Last used at is empty');
    eq(cells[4].split('\n').sort(), [...chosen].sort(), 'Scopes');
    eq(cells[5], '2030-06-01 12:00:00 UTC', 'Expires at, read as UTC');
    eq(cells[6], `****${first.secret.slice(-6)}`, 'Masked key');
    eq(cells[7], 'active', 'Status');
    for (const action of ['Edit', 'Reissue', 'Revoke', 'Delete', 'History']) {
      ok(await keyRow(first.id).getByRole('button', { name: `${action} ${first.id}`, exact: true }).isVisible(), `${action} button with the key id`);
    }
    await page.getByRole('button', { name: `History ${first.id}`, exact: true }).click();
    eq(await waitHistory('create'), ['create'], 'history: the create');
    await shot('list', true);
  });

  it('shows API errors next to the action: forbidden, store unavailable, network failure', async () => {
    const listing = (url) => url.pathname === '/iam/v1/apiKeys' && url.search !== '';
    const cases = [
      [403, { code: 7, message: 'not allowed to manage the keys of service account robot-console', details: [] }, /Forbidden/],
      [503, { code: 14, message: 'the key store is unavailable; retry later', details: [] }, /key store is unavailable/],
      ['abort', null, /Network failure/],
    ];
    for (const [status, body, expected] of cases) {
      await page.route(listing, (route) => (status === 'abort'
        ? route.abort('connectionrefused')
        : route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) })));
      await page.getByRole('button', { name: 'Show keys' }).click();
      const error = page.locator('#list-error');
      await error.filter({ hasText: expected }).waitFor();
      ok(await error.isVisible(), `list error shown for ${status}`);
      ok(await page.locator('body').isVisible(), 'the page is still there');
      await page.unroute(listing);
    }
    // A key the API marks `enabled: false` (disable/enable, where the API has it) shows as disabled.
    await page.route(listing, async (route) => {
      const real = await route.fetch();
      const data = await real.json();
      data.apiKeys = data.apiKeys.map((k) => ({ ...k, enabled: false }));
      await route.fulfill({ response: real, json: data });
    });
    await page.getByRole('button', { name: 'Show keys' }).click();
    await page.waitForFunction((id) => document.querySelector(`#keys-body tr[data-key-id="${id}"] .badge`)?.textContent === 'disabled', first.id);
    ok(true, 'enabled: false shows as disabled');
    await page.unroute(listing);
    await page.getByRole('button', { name: 'Show keys' }).click();
    await page.waitForFunction(() => document.getElementById('list-error').textContent === '' && document.querySelector('#keys-body .badge')?.textContent === 'active');
    eq(await page.locator('#list-error').textContent(), '', 'the error clears when the call works');
    ok(await keyRow(first.id).isVisible(), 'and the keys are back');
  });

  it('edits the description; the table and the history show it', async () => {
    await page.getByRole('button', { name: `Edit ${first.id}`, exact: true }).click();
    const d = page.getByRole('dialog', { name: `Edit ${first.id}` });
    await d.waitFor({ state: 'visible' });
    eq(await d.getByLabel('Description').inputValue(), 'deploy bot', 'the dialog shows the description');
    match(await d.getByLabel('Expires at').inputValue(), /^2030-06-01T12:00(:00)?$/, 'and the expiry in UTC');
    // A past expiry is refused in words and changes nothing.
    await d.getByLabel('Expires at').fill('2021-01-01T00:00:00');
    await d.getByRole('button', { name: 'Save' }).click();
    await d.locator('#edit-error').filter({ hasText: /not in the future/ }).waitFor();
    ok(true, 'past expiry refused in the edit dialog');
    await d.getByLabel('Expires at').fill('2030-06-01T12:00:00');
    await d.getByLabel('Description').fill('deploy bot (renamed)');
    await d.getByRole('button', { name: 'Save' }).click();
    await d.waitFor({ state: 'hidden' });
    await page.waitForFunction((id) => document.querySelector(`#keys-body tr[data-key-id="${id}"] td.description`)?.textContent === 'deploy bot (renamed)', first.id);
    const cells = await rowCells(first.id);
    eq(cells[1], 'deploy bot (renamed)', 'the table shows the new description');
    eq(cells[5], '2030-06-01 12:00:00 UTC', 'the expiry stays');
    await page.getByRole('button', { name: `History ${first.id}`, exact: true }).click();
    eq(await waitHistory('update'), ['update', 'create'], 'history: update, create');
    match(await page.locator('#history-body tr').first().innerText(), /description: deploy bot \(renamed\)/, 'the update names the change');
  });

  it('refuses to save a key with no scope, in words', async () => {
    await page.getByRole('button', { name: `Edit ${first.id}`, exact: true }).click();
    const d = page.getByRole('dialog', { name: `Edit ${first.id}` });
    await d.waitFor({ state: 'visible' });
    const checked = d.getByRole('checkbox', { checked: true });
    while (await checked.count()) await checked.first().uncheck();
    await d.getByRole('button', { name: 'Save' }).click();
    await d.locator('#edit-error').filter({ hasText: /at least one scope/ }).waitFor();
    ok(true, 'no scope: refused before any request');
    await d.getByRole('button', { name: 'Cancel' }).click();
    await d.waitFor({ state: 'hidden' });
    const key = await api('GET', `apiKeys/${first.id}`);
    ok(key.scopes.length === 2, 'the scopes are unchanged');
  });

  it('shows where a key leaked (source and URL objects) in its history', async () => {
    const leaked = await api('POST', 'apiKeys', { serviceAccountId: ACCOUNT, description: 'leaked' });
    const file = join(workdir, 'leaked.env');
    writeFileSync(file, `TOKEN=${leaked.secret}\n`);
    const scan = spawnSync(KEYCTL, ['scan', '--revoke', '--yes', file], { cwd: workdir, env: serverEnv, encoding: 'utf8' });
    ok(scan.status === 0 || scan.status === 1, `keyctl scan ran (${scan.status}): ${scan.stderr}`);
    await page.getByLabel('Service account', { exact: true }).fill(ACCOUNT);
    await page.getByRole('button', { name: 'Show keys' }).click();
    await keyRow(leaked.apiKey.id).waitFor();
    await page.getByRole('button', { name: `History ${leaked.apiKey.id}`, exact: true }).click();
    await page.locator('#history-heading').filter({ hasText: leaked.apiKey.id }).waitFor();
    await page.locator('#history-body tr[data-kind="leak"]').first().waitFor();
    const kinds = await historyKinds();
    ok(kinds.includes('leak') && kinds.includes('revoke'), `the history has the leak and the revoke: ${kinds}`);
    const text = await page.locator('#history-body tr[data-kind="leak"]').first().innerText();
    match(text, /leak: source=.*leaked\.env/, 'the leak says where it was found');
    ok(!text.includes('[object Object]'), `no [object Object]: ${text}`);
    secrets.push(leaked.secret);
    await page.getByRole('button', { name: `Delete ${leaked.apiKey.id}`, exact: true }).click();
    await confirmIn(`Delete ${leaked.apiKey.id}?`);
    await keyRow(leaked.apiKey.id).waitFor({ state: 'detached' });
    await page.getByRole('button', { name: `History ${first.id}`, exact: true }).click();
    await page.locator('#history-heading').filter({ hasText: first.id }).waitFor();
  });

  it('reissues with a grace period; the new secret works and the history shows the reissue', async () => {
    await page.getByRole('button', { name: `Reissue ${first.id}`, exact: true }).click();
    const d = page.getByRole('dialog', { name: `Reissue ${first.id}?` });
    await d.waitFor({ state: 'visible' });
    await d.getByLabel('Grace period').fill('3600');
    await d.getByRole('button', { name: 'Confirm' }).click();
    await d.waitFor({ state: 'hidden' });
    reissued = await readSecretDialog();
    ok(reissued.id !== first.id && reissued.secret !== first.secret, 'a new key and secret');
    eq((await authorize(reissued.secret)).status, 200, 'the new secret passes /v1/authorize');
    eq((await authorize(first.secret)).status, 200, 'the old one still works in its grace period');
    await closeSecretDialog();
    await assertNoSecretInPage('after the reissue dialog');
    await keyRow(reissued.id).waitFor();
    const old = await rowCells(first.id);
    match(old[7], new RegExp(`replaced by ${reissued.id}`), 'the old key says what replaced it');
    const expires = Date.parse(old[5].replace(' UTC', 'Z').replace(' ', 'T'));
    ok(Math.abs(expires - (Date.now() + 3600_000)) < 120_000, `the old key expires in an hour (${old[5]})`);
    eq((await rowCells(reissued.id))[1], 'deploy bot (renamed)', 'the new key keeps the description');
    eq(await waitHistory('reissue'), ['reissue', 'update', 'create'], 'history of the old key: reissue on top');
    await page.getByRole('button', { name: `History ${reissued.id}`, exact: true }).click();
    await page.locator('#history-heading').filter({ hasText: reissued.id }).waitFor();
    ok((await historyKinds()).length >= 1, 'the new key has its own history');
  });

  it('revokes a key after confirming; the status and the history show it', async () => {
    await page.getByRole('button', { name: `Revoke ${reissued.id}`, exact: true }).click();
    const d = page.getByRole('dialog', { name: `Revoke ${reissued.id}?` });
    await d.waitFor({ state: 'visible' });
    ok(await d.getByRole('button', { name: 'Confirm' }).isVisible(), 'a Confirm button');
    await d.getByRole('button', { name: 'Confirm' }).click();
    await d.waitFor({ state: 'hidden' });
    await page.waitForFunction((id) => document.querySelector(`#keys-body tr[data-key-id="${id}"] .badge`)?.textContent === 'revoked', reissued.id);
    match((await rowCells(reissued.id))[7], /^revoked/, 'Status: revoked');
    eq((await authorize(reissued.secret)).status, 401, 'the revoked key is refused');
    eq((await waitHistory('revoke'))[0], 'revoke', 'history: revoke on top');
    ok(!(await keyRow(reissued.id).getByRole('button', { name: `Revoke ${reissued.id}` }).count()), 'no Revoke button on a revoked key');
  });

  it('deletes a key only after confirming; it is gone and its history says so', async () => {
    await page.getByRole('button', { name: `History ${first.id}`, exact: true }).click();
    await page.locator('#history-heading').filter({ hasText: first.id }).waitFor();
    await page.getByRole('button', { name: `Delete ${first.id}`, exact: true }).click();
    const d = page.getByRole('dialog', { name: `Delete ${first.id}?` });
    await d.waitFor({ state: 'visible' });
    await d.getByRole('button', { name: 'Cancel' }).click();
    await d.waitFor({ state: 'hidden' });
    ok(await keyRow(first.id).isVisible(), 'Cancel keeps the key');
    eq((await authorize(first.secret)).status, 200, 'and it still works');
    await page.getByRole('button', { name: `Delete ${first.id}`, exact: true }).click();
    await confirmIn(`Delete ${first.id}?`);
    await keyRow(first.id).waitFor({ state: 'detached' });
    eq(await tableIds(), [reissued.id], 'only the reissued key is left');
    eq((await authorize(first.secret)).status, 401, 'the deleted key is refused');
    eq(await waitHistory('delete'), ['delete', 'reissue', 'update', 'create'], 'the history outlives the key');
  });

  it('pages through more than a page of keys', async () => {
    for (let i = 0; i < PAGE_SIZE + 5; i += 1) {
      const made = await api('POST', 'apiKeys', { serviceAccountId: PAGING_ACCOUNT, description: `bulk ${i}` });
      secrets.push(made.secret);
    }
    await page.getByLabel('Service account', { exact: true }).fill(PAGING_ACCOUNT);
    await page.getByRole('button', { name: 'Show keys' }).click();
    await page.locator('#keys-caption').filter({ hasText: PAGING_ACCOUNT }).waitFor();
    const one = await tableIds();
    eq(one.length, PAGE_SIZE, 'a full first page');
    ok(await page.getByRole('button', { name: 'Previous page' }).isDisabled(), 'no previous page on the first');
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.locator('#page-info').filter({ hasText: 'Page 2' }).waitFor();
    const two = await tableIds();
    eq(two.length, 5, 'the rest on page two');
    ok(two.every((id) => !one.includes(id)), 'no key on both pages');
    ok(await page.getByRole('button', { name: 'Next page' }).isDisabled(), 'no next page on the last');
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.locator('#page-info').filter({ hasText: 'Page 1' }).waitFor();
    eq(await tableIds(), one, 'back to the first page');
  });

  it('fits a narrow window (the table scrolls inside its frame)', async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    ok(overflow <= 0, `the page itself does not scroll sideways (${overflow}px)`);
    const wrap = await page.locator('#keys-wrap').evaluate((e) => ({ scroll: e.scrollWidth, client: e.clientWidth, overflow: getComputedStyle(e).overflowX }));
    eq(wrap.overflow, 'auto', 'the table frame scrolls');
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot('narrow');
    await page.getByRole('button', { name: 'Create API key' }).click();
    await dialog('Create API key').waitFor({ state: 'visible' });
    const box = await dialog('Create API key').boundingBox();
    ok(box.x >= 0 && box.x + box.width <= 400, 'the dialog fits the narrow window');
    await shot('narrow-create-dialog');
    await page.keyboard.press('Escape');
    await dialog('Create API key').waitFor({ state: 'hidden' });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('sent no secret except in the create and reissue answers', async () => {
    await Promise.all(traffic.map((t) => t.request.response().catch(() => null)));
    await new Promise((r) => setTimeout(r, 100));
    const own = traffic.filter((t) => t.request.url().startsWith(base));
    ok(own.length > 20, `the console made its requests (${own.length})`);
    ok(own.every((t) => new URL(t.request.url()).origin === base), 'only to its own origin');
    const leaks = [];
    for (const t of own) {
      const r = t.request;
      const url = new URL(r.url());
      const oneTime = r.method() === 'POST' && (url.pathname.endsWith('/apiKeys') || url.pathname.endsWith(':reissue'));
      const sent = [r.url(), r.postData() ?? '', JSON.stringify(await r.allHeaders())].join('\n');
      for (const s of secrets) {
        if (sent.includes(s)) leaks.push(`request ${r.method()} ${url.pathname}`);
        if (!oneTime && (t.body ?? '').includes(s)) leaks.push(`response to ${r.method()} ${url.pathname}`);
      }
    }
    eq(leaks, [], 'no secret in any other request or response');
    const oneTimeAnswers = own.filter((t) => secrets.some((s) => (t.body ?? '').includes(s)));
    eq(oneTimeAnswers.length, 2, 'the secrets came only in the create and reissue answers');
  });

  // ----- the service-account flow: folder → accounts → keys, policies -----

  let robot;

  it('shows the default folder with its service accounts and no access policy', async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByRole('button', { name: 'Refresh', exact: true }).click();
    eq(await page.getByRole('combobox', { name: 'Organization' }).inputValue(), DEFAULT_ORGANIZATION, 'the default organization is chosen');
    eq(await page.getByRole('combobox', { name: 'Cloud' }).inputValue(), DEFAULT_CLOUD, 'the default cloud is chosen');
    eq(await page.getByRole('combobox', { name: 'Folder' }).inputValue(), DEFAULT_FOLDER, 'the default folder is chosen');
    const table = page.getByRole('table', { name: /^Service accounts in folder / });
    await table.getByRole('row', { name: new RegExp(ACCOUNT_NAME) }).waitFor();
    eq(await table.locator('thead th').allInnerTexts().then((t) => t.map((x) => x.trim().toLowerCase())), ['name', 'description', 'created at', 'id', 'actions'], 'the account columns');
    const row = await table.locator(`tr[data-account-id="${ACCOUNT}"]`).locator('th, td').allInnerTexts();
    eq(row[0], ACCOUNT_NAME, 'Name');
    eq(row[1], 'the console tests', 'Description');
    match(row[2].replace(/\s+/g, ' '), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'Created at');
    eq(row[3], ACCOUNT, 'ID');
    ok(await table.getByRole('button', { name: `Open ${PAGING_ACCOUNT_NAME}`, exact: true }).isVisible(), 'each account has an Open button');
    await page.locator('#policies-status').filter({ hasText: 'No access policy is bound' }).waitFor();
    ok(!(await page.getByRole('table', { name: /Access policies bound/ }).isVisible()), 'no policy table while none is bound');
  });

  it('opens a service account to show its keys only', async () => {
    await page.getByRole('button', { name: `Open ${ACCOUNT_NAME}`, exact: true }).click();
    await page.getByRole('heading', { name: `API keys of ${ACCOUNT_NAME}` }).waitFor();
    await page.getByRole('table', { name: `API keys of ${ACCOUNT_NAME} (${ACCOUNT})` }).waitFor();
    eq(await tableIds(), [reissued.id], 'the keys of that account');
    eq(await page.getByLabel('Service account', { exact: true }).inputValue(), ACCOUNT, 'the account field names its id');
    eq(await page.locator(`#accounts-body tr[data-account-id="${ACCOUNT}"]`).getAttribute('aria-current'), 'true', 'its row is marked open');
    await page.getByRole('button', { name: `Open ${PAGING_ACCOUNT_NAME}`, exact: true }).click();
    await page.getByRole('heading', { name: `API keys of ${PAGING_ACCOUNT_NAME}` }).waitFor();
    const ids = await tableIds();
    eq(ids.length, PAGE_SIZE, 'a page of the other account');
    ok(!ids.includes(reissued.id), "none of the first account's keys");
  });

  it('refuses a bad service-account name with the server\'s words, then creates one', async () => {
    await page.getByRole('button', { name: 'Create service account' }).click();
    const d = dialog('Create service account');
    await d.waitFor({ state: 'visible' });
    match(await d.innerText(), new RegExp(DEFAULT_FOLDER), 'the dialog names the folder');
    await d.getByLabel('Name').fill('Bad_Name!');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    const error = d.getByRole('alert');
    await error.filter({ hasText: /./ }).waitFor();
    const said = await error.innerText();
    match(said, /^Refused: .*name/i, `the server's refusal is shown: ${said}`);
    ok(await error.isVisible(), 'next to the form');
    ok(await d.isVisible(), 'the dialog stays open');
    await shot('account-bad-name');
    // A name already taken in the cloud.
    await d.getByLabel('Name').fill(ACCOUNT_NAME);
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    await error.filter({ hasText: ACCOUNT_NAME }).waitFor();
    match(await error.innerText(), /Conflict|exists|taken/i, 'a taken name is refused in words');
    await d.getByLabel('Name').fill('deploy-robot');
    await d.getByLabel('Description').fill('deploys the site');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    await d.waitFor({ state: 'hidden' });
    const row = page.locator('#accounts-body tr', { hasText: 'deploy-robot' });
    await row.waitFor();
    robot = await row.getAttribute('data-account-id');
    const sa = await api('GET', `serviceAccounts/${robot}`);
    eq([sa.name, sa.description, sa.folderId], ['deploy-robot', 'deploys the site', DEFAULT_FOLDER], 'the account is stored as typed');
    match((await row.locator('td').first().innerText()), /deploys the site/, 'the table shows its description');
    await page.getByRole('heading', { name: 'API keys of deploy-robot' }).waitFor();
    await page.locator('#list-status').filter({ hasText: 'has no API keys' }).waitFor();
    ok(true, 'the new account is opened, with no keys');
  });

  it('creates a key for the new account and shows its secret once', async () => {
    await page.getByRole('button', { name: 'Create API key' }).click();
    const d = dialog('Create API key');
    await d.waitFor({ state: 'visible' });
    match(await d.innerText(), new RegExp(`deploy-robot \\(${robot}\\)`), 'the dialog names the account');
    const scope = (await api('GET', 'apiKeyScopes')).scopes.find((s) => !s.default).id;
    await d.getByLabel('Description').fill('site deploy');
    await d.getByRole('group', { name: 'Scopes' }).getByLabel(scope, { exact: true }).check();
    await d.getByLabel('Expires at').fill('2031-01-01T00:00:00');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    await d.waitFor({ state: 'hidden' });
    const made = await readSecretDialog();
    eq((await authorize(made.secret, scope)).status, 200, 'the secret works');
    await closeSecretDialog();
    await assertNoSecretInPage('after the new account\'s key');
    await keyRow(made.id).waitFor();
    const cells = await rowCells(made.id);
    eq([cells[1], cells[4], cells[5]], ['site deploy', scope, '2031-01-01 00:00:00 UTC'], 'the row: description, scope, expiry');
    eq((await api('GET', `apiKeys/${made.id}`)).serviceAccountId, robot, 'the key belongs to the new account');
    await shot('service-accounts', true);
  });

  it('lists the access policies bound on the folder\'s path and shows why a create is refused', async () => {
    const deny = { accessPolicyTemplateId: DENY, parameters: {} };
    const lifetime = { accessPolicyTemplateId: 'iam.apiKeys.maxLifetime', parameters: { max_lifetime: '3650d' } };
    await apiAt(`${ORGANIZATION_PATH}:bindAccessPolicy`, 'POST', { accessPolicyBinding: deny });
    await apiAt(`${FOLDER_PATH}:bindAccessPolicy`, 'POST', { accessPolicyBinding: lifetime });
    await page.getByRole('button', { name: 'Refresh', exact: true }).click();
    const table = page.getByRole('table', { name: 'Access policies bound on the folder, its cloud and its organization' });
    await table.waitFor();
    await table.locator('tbody tr').nth(1).waitFor();
    const rows = await table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((c) => c.innerText)));
    eq(rows.length, 2, 'both bindings are listed');
    match(rows[0][0], /^iam\.apiKeys\.maxLifetime/, 'the folder\'s binding first');
    eq(rows[0][1], 'max_lifetime=3650d', 'with its parameters');
    match(rows[0][2], new RegExp(`^Folder .*\\(${DEFAULT_FOLDER}\\)$`), 'bound on the folder');
    match(rows[1][0], new RegExp(`^${DENY.replace(/\./g, '\\.')}`), 'the deny template');
    eq(rows[1][1], '—', 'no parameters');
    match(rows[1][2], new RegExp(`^Organization .*\\(${DEFAULT_ORGANIZATION}\\)$`), 'bound on the organization');
    match(await page.locator('#policies-status').innerText(), /2 access policies apply/, 'the count in words');

    // The server's own answer to a key create for the account, outside the page.
    const direct = await apiAnswer('/iam/v1/apiKeys', 'POST', { serviceAccountId: robot, expiresAt: '2030-01-01T00:00:00Z' });
    await page.getByRole('button', { name: `Open deploy-robot`, exact: true }).click();
    await page.getByRole('heading', { name: 'API keys of deploy-robot' }).waitFor();
    const listed = await tableIds();
    await page.getByRole('button', { name: 'Create API key' }).click();
    const d = dialog('Create API key');
    await d.waitFor({ state: 'visible' });
    match(await d.innerText(), new RegExp(`Access policies on its path: .*${DENY.replace(/\./g, '\\.')} \\(on organization`), 'the dialog names the policies on the path');
    await d.getByLabel('Description').fill('refused');
    await d.getByLabel('Expires at').fill('2030-01-01T00:00:00');
    eq([direct.status, direct.data.code], [400, 9], 'the server refuses the key: FAILED_PRECONDITION');
    match(direct.data.message, new RegExp(DENY.replace(/\./g, '\\.')), 'naming the policy');
    await d.getByRole('button', { name: 'Create', exact: true }).click();
    const error = d.getByRole('alert');
    await error.filter({ hasText: /./ }).waitFor();
    const said = await error.innerText();
    match(said, new RegExp(`^Refused by access policy .${DENY.replace(/\./g, '\\.')}. bound on organization ${DEFAULT_ORGANIZATION}`), `the refusal names the policy and where it is bound: ${said}`);
    match(said, /Access policies on this folder's path/, 'and points at the policy list');
    ok(await d.isVisible(), 'the dialog stays open, the refusal next to its form');
    await shot('refused-by-policy');
    await d.getByRole('button', { name: 'Cancel' }).click();
    await d.waitFor({ state: 'hidden' });
    eq(await tableIds(), listed, 'nothing was added');

    await apiAt(`${ORGANIZATION_PATH}:unbindAccessPolicy`, 'POST', { accessPolicyTemplateId: DENY });
    await apiAt(`${FOLDER_PATH}:unbindAccessPolicy`, 'POST', { accessPolicyTemplateId: 'iam.apiKeys.maxLifetime' });
    await page.getByRole('button', { name: 'Refresh', exact: true }).click();
    await page.locator('#policies-status').filter({ hasText: 'No access policy is bound' }).waitFor();
    ok(true, 'unbound, the list empties');
  });

  it('is usable with the keyboard alone', async () => {
    const kb = await context.newPage();
    const errors = [];
    kb.on('pageerror', (e) => errors.push(e.message));
    await kb.goto(`${base}/iam/v1/console`);
    const focused = () => kb.evaluate(() => {
      const e = document.activeElement;
      return e ? (e.getAttribute('aria-label') || e.labels?.[0]?.textContent || (e.tagName === 'BUTTON' ? e.textContent : e.id)).trim() : '';
    });
    const tabTo = async (name, limit = 200) => {
      for (let i = 0; i < limit; i += 1) {
        await kb.keyboard.press('Tab');
        if ((await focused()) === name) return;
      }
      throw new Error(`Tab never reached ${name}`);
    };
    await tabTo('Admin token');
    await kb.keyboard.type(TOKEN);
    await kb.keyboard.press('Enter');
    await kb.getByLabel('Service account', { exact: true }).waitFor({ state: 'visible' });
    eq(await focused(), 'Folder', 'focus moves to the folder picker');
    await kb.getByRole('button', { name: `Open ${ACCOUNT_NAME}`, exact: true }).waitFor();
    await tabTo('Service account');
    await kb.keyboard.type(ACCOUNT);
    await kb.keyboard.press('Enter');
    await kb.locator(`#keys-body tr[data-key-id="${reissued.id}"]`).waitFor();

    // Every control on the page is reached by Tab.
    const controls = await kb.evaluate(() => [...document.querySelectorAll('button, input, [tabindex="0"]')]
      .filter((e) => !e.disabled && e.offsetParent !== null && !e.closest('dialog'))
      .map((e) => (e.getAttribute('aria-label') || e.labels?.[0]?.textContent || (e.tagName === 'BUTTON' ? e.textContent : e.id)).trim()));
    const reached = new Set();
    for (let i = 0; i < controls.length + 10; i += 1) {
      await kb.keyboard.press('Tab');
      reached.add(await focused());
    }
    eq(controls.filter((c) => !reached.has(c)), [], `Tab reaches every control (${controls.length})`);

    // Create a key with the keyboard: Enter on the button, Space on a checkbox.
    await kb.evaluate(() => document.activeElement?.blur());
    await tabTo('Create API key');
    await kb.keyboard.press('Enter');
    await kb.getByRole('dialog', { name: 'Create API key' }).waitFor({ state: 'visible' });
    eq(await focused(), 'Description', 'the dialog opens on its first field');
    await kb.keyboard.type('typed with the keyboard');
    await kb.keyboard.press('Tab');
    await kb.keyboard.press('Space');
    ok(await kb.evaluate(() => document.activeElement.checked === true), 'Space checks a scope');
    await tabTo('Create');
    await kb.keyboard.press('Enter');
    const d = kb.getByRole('dialog', { name: 'Save the secret' });
    await d.waitFor({ state: 'visible' });
    const id = await d.getByLabel('ID', { exact: true }).inputValue();
    const secret = await d.getByLabel('Secret', { exact: true }).inputValue();
    secrets.push(secret);
    eq((await authorize(secret)).status, 200, 'the keyboard-made key works');
    await tabTo('Close', 10);
    await kb.keyboard.press('Enter');
    await d.waitFor({ state: 'hidden' });
    const left = await kb.evaluate((s) => document.documentElement.outerHTML.includes(s)
      || [...document.querySelectorAll('input')].some((e) => e.value.includes(s)), secret);
    eq(left, false, 'no secret in the page after the keyboard closed the dialog');

    // Revoke it with Space on the row button and Enter on Confirm.
    await kb.locator(`#keys-body tr[data-key-id="${id}"]`).waitFor();
    await kb.evaluate(() => document.activeElement?.blur());
    await tabTo(`Revoke ${id}`);
    await kb.keyboard.press('Space');
    const c = kb.getByRole('dialog', { name: `Revoke ${id}?` });
    await c.waitFor({ state: 'visible' });
    eq(await focused(), 'Confirm', 'the confirm dialog opens on Confirm');
    await kb.keyboard.press('Enter');
    await c.waitFor({ state: 'hidden' });
    await kb.waitForFunction((k) => document.querySelector(`#keys-body tr[data-key-id="${k}"] .badge`)?.textContent === 'revoked', id);
    eq((await authorize(secret)).status, 401, 'revoked from the keyboard');
    // Escape closes a dialog.
    await kb.evaluate(() => document.activeElement?.blur());
    await tabTo(`Delete ${id}`);
    await kb.keyboard.press('Enter');
    await kb.getByRole('dialog', { name: `Delete ${id}?` }).waitFor({ state: 'visible' });
    await kb.keyboard.press('Escape');
    await kb.getByRole('dialog', { name: `Delete ${id}?` }).waitFor({ state: 'hidden' });
    ok(await kb.locator(`#keys-body tr[data-key-id="${id}"]`).isVisible(), 'Escape cancels the delete');
    eq(errors, [], 'no script errors');
    await kb.close();
  });

  it('raised no script error and no CSP violation', () => {
    eq(problems, [], 'the console reported nothing');
  });
});
