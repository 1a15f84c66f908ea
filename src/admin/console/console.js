// The management console: plain DOM over the management API.
//
// The API lives one level above this script (`…/console/console.js` →
// `…/`), so the console works wherever the admin router is nested. The
// admin token is kept in the `token` variable below and nowhere else (no
// storage, no cookies); a new secret lives in `shownSecret` and the secret
// dialog's field until that dialog closes. Everything the API returns is
// written with `textContent`, never parsed as HTML. Every call asks for
// `view=FULL`: the answers then carry the project's extension fields
// (status, enabled flag, controls, reissue links, an operation's kind and
// changes, the scopes' descriptions), which the cloud's shape leaves out.

const API = new URL('../', import.meta.url);
// The resource managers' routes sit at the root, beside `/iam/v1`
// (`/resource-manager/v1/folders`, `/organization-manager/v1/…`).
const ROOT = new URL('../../', API);
const PAGE_SIZE = 20;
const ACCOUNTS_PAGE_SIZE = 50;
const DEFAULTS = { organization: 'defaultorganization0', cloud: 'defaultcloud00000000', folder: 'defaultfolder0000000' };
const HISTORY_PAGE_SIZE = 20;

let token = null;
let scopes = [];
let account = null;
let accountName = null;
let templates = new Map();
// The folder picked, its cloud and organization (ids and names), the
// bindings on that path and the listed service accounts.
const place = { organization: null, cloud: null, folder: null, names: new Map() };
let bindings = [];
const accounts = { list: [], next: '' };
const pages = { tokens: [''], index: 0, next: '' };
const history = { id: null, next: '' };
let shownSecret = null;
let pendingConfirm = null;
let editing = null;

const $ = (id) => document.getElementById(id);

// ----- talking to the API -----

class ApiError extends Error {
  constructor(message, status = 0, code = null) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// google.rpc code 9: an access policy (or the resource's state) refused it.
const FAILED_PRECONDITION = 9;

function explain(status, body, statusText) {
  const message = body && typeof body === 'object'
    ? String(body.message ?? body.detail ?? body.title ?? '')
    : '';
  const said = message ? `: ${message}` : '.';
  // The server names a refusing access policy itself ("refused by access
  // policy `…` bound on …"); other code-9 answers are a key's or a
  // resource's state.
  if (body?.code === FAILED_PRECONDITION && /^refused by access policy /.test(message)) {
    return message[0].toUpperCase() + message.slice(1);
  }
  switch (status) {
    case 400: return `Refused${said}`;
    case 401: return 'The admin token was not accepted. Check it, or sign in again.';
    case 403: return `Forbidden: this admin token may not do that${message ? ` (${message})` : '.'}`;
    case 404: return `Not found${said}`;
    case 409: return `Conflict${said}`;
    case 412: return `Not possible in the key's current state${said}`;
    case 413: return 'Refused: the request is too large.';
    case 429: return `Too many attempts${said}`;
    case 503: return 'The key store is unavailable right now; try again in a moment.';
    default:
      return `The server answered ${status}${statusText ? ` ${statusText}` : ''}${said}`;
  }
}

async function call(method, path, body, base = API) {
  const headers = { Authorization: `Bearer ${token ?? ''}`, Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    const url = new URL(path, base);
    url.searchParams.set('view', 'FULL');
    response = await fetch(url, init);
  } catch {
    throw new ApiError('Network failure: the server could not be reached. Check the connection and try again.');
  }
  const text = await response.text().catch(() => '');
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(explain(response.status, data, response.statusText), response.status, data?.code ?? null);
  }
  return data;
}

const keyPath = (id, suffix = '') => `apiKeys/${encodeURIComponent(id)}${suffix}`;

/// Every item of a listing at `path` (relative to `base`), page by page.
async function listAll(path, field, params, base = API) {
  const all = [];
  let pageToken = '';
  do {
    const query = new URLSearchParams({ ...params, pageSize: '100' });
    if (pageToken) query.set('pageToken', pageToken);
    const data = await call('GET', `${path}?${query}`, undefined, base);
    if (Array.isArray(data?.[field])) all.push(...data[field]);
    pageToken = data?.nextPageToken ?? '';
  } while (pageToken);
  return all;
}

// ----- small DOM helpers -----

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === 'className') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'hidden') node.hidden = value;
    else if (name === 'onClick') node.addEventListener('click', value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function showError(id, error) {
  $(id).textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error?.message ?? error}`;
}

function clearError(id) {
  $(id).textContent = '';
}

/// `2026-12-01T10:42:53.5628Z` → `2026-12-01 10:42:53 UTC` (the clock
/// on a second line in a narrow column).
function when(iso) {
  if (!iso) return el('span', { className: 'muted', text: '—' });
  return el('time', { datetime: iso },
    el('span', { className: 'date', text: iso.slice(0, 10) }), ' ',
    el('span', { className: 'clock', text: `${iso.slice(11, 19)} UTC` }));
}

/// A `datetime-local` value read as UTC → RFC 3339, or null when empty.
function utcFromInput(value) {
  if (!value) return null;
  const withSeconds = value.length === 16 ? `${value}:00` : value;
  return `${withSeconds}Z`;
}

/// RFC 3339 → a `datetime-local` value in UTC.
function inputFromUtc(iso) {
  return iso ? iso.slice(0, 19) : '';
}

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

// ----- sign-in -----

async function signIn(event) {
  event.preventDefault();
  const input = $('admin-token');
  clearError('sign-in-error');
  if (!input.value.trim()) {
    $('sign-in-error').textContent = 'Sign-in failed: enter the admin token.';
    input.focus();
    return;
  }
  token = input.value.trim();
  const button = event.submitter ?? $('sign-in-form').querySelector('button');
  await busy(button, async () => {
    try {
      scopes = await allScopes();
    } catch (error) {
      token = null;
      $('sign-in-error').textContent = `Sign-in failed. ${error instanceof ApiError ? error.message : error}`;
      input.select();
      return;
    }
    input.value = '';
    $('sign-in-section').hidden = true;
    for (const id of ['folder-section', 'accounts-section', 'keys-section']) $(id).hidden = false;
    $('signed-in').hidden = false;
    $('sign-out').hidden = false;
    $('folder-select').focus();
    await loadTemplates();
    await loadOrganizations();
  });
}

/// Every scope (with its description and whether it is a default), page
/// by page.
async function allScopes() {
  const all = [];
  let pageToken = '';
  do {
    const query = new URLSearchParams({ pageSize: '1000' });
    if (pageToken) query.set('pageToken', pageToken);
    const data = await call('GET', `apiKeyScopes?${query}`);
    if (Array.isArray(data?.scopes)) all.push(...data.scopes);
    pageToken = data?.nextPageToken ?? '';
  } while (pageToken);
  return all;
}

function signOut() {
  token = null;
  scopes = [];
  account = null;
  clearSecret();
  for (const dialog of document.querySelectorAll('dialog')) if (dialog.open) dialog.close();
  $('keys-body').replaceChildren();
  $('keys-wrap').hidden = true;
  $('pager').hidden = true;
  $('history-section').hidden = true;
  $('create-open').disabled = true;
  $('list-status').textContent = '';
  clearError('list-error');
  $('keys-section').hidden = true;
  accountName = null;
  $('keys-heading').textContent = 'API keys';
  templates = new Map();
  Object.assign(place, { organization: null, cloud: null, folder: null, names: new Map() });
  bindings = [];
  accounts.list = [];
  accounts.next = '';
  for (const id of ['organization-select', 'cloud-select', 'folder-select', 'policies-body', 'accounts-body']) $(id).replaceChildren();
  for (const id of ['folder-error', 'policies-error', 'accounts-error']) clearError(id);
  $('folder-status').textContent = '';
  $('policies-wrap').hidden = true;
  $('accounts-wrap').hidden = true;
  $('folder-section').hidden = true;
  $('accounts-section').hidden = true;
  $('signed-in').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in-section').hidden = false;
  $('admin-token').focus();
}

// ----- the folder: organization → cloud → folder -----

/// The open account as people read it: its name and id, or the id alone.
function accountLabel() {
  return accountName ? `${accountName} (${account})` : (account ?? '');
}

function option(value, text) {
  const node = el('option', { value, text });
  return node;
}

/// Fills `select` with `items` (id, name), choosing `wanted` when listed,
/// else the default id, else the first; the chosen id or null.
function fillSelect(select, items, wanted, fallback) {
  select.replaceChildren(...items.map((item) => option(item.id, item.name ? `${item.name} (${item.id})` : item.id)));
  if (items.length === 0) select.append(option('', '(none)'));
  select.disabled = items.length === 0;
  for (const item of items) place.names.set(item.id, item.name || item.id);
  const ids = items.map((i) => i.id);
  const chosen = [wanted, fallback].find((id) => id && ids.includes(id)) ?? ids[0] ?? null;
  select.value = chosen ?? '';
  return chosen;
}

async function loadTemplates() {
  try {
    const data = await call('GET', 'accessPolicyTemplates');
    templates = new Map((data?.accessPolicyTemplates ?? []).map((t) => [t.id, t]));
  } catch {
    templates = new Map(); // The bindings still show by id.
  }
}

/// Loads the organizations and everything under the chosen one (`keep`:
/// the ids to choose again where they are still listed).
async function loadOrganizations(keep = {}) {
  clearError('folder-error');
  $('folder-status').textContent = '';
  let items;
  try {
    items = await listAll('organization-manager/v1/organizations', 'organizations', {}, ROOT);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      showError('folder-error', error);
      return;
    }
    // A server without the resource managers' routes: its default folder.
    await defaultFolderOnly();
    return;
  }
  place.organization = fillSelect($('organization-select'), items, keep.organization, DEFAULTS.organization);
  await loadClouds(keep);
}

async function loadClouds(keep = {}) {
  clearError('folder-error');
  let items = [];
  if (place.organization) {
    try {
      items = await listAll('resource-manager/v1/clouds', 'clouds', { organizationId: place.organization }, ROOT);
    } catch (error) {
      showError('folder-error', error);
    }
  }
  place.cloud = fillSelect($('cloud-select'), items, keep.cloud, DEFAULTS.cloud);
  await loadFolders(keep);
}

async function loadFolders(keep = {}) {
  let items = [];
  if (place.cloud) {
    try {
      items = await listAll('resource-manager/v1/folders', 'folders', { cloudId: place.cloud }, ROOT);
    } catch (error) {
      showError('folder-error', error);
    }
  }
  place.folder = fillSelect($('folder-select'), items, keep.folder, DEFAULTS.folder);
  await folderChosen();
}

/// The default organization, cloud and folder as the only choices (the
/// server does not list them), said in words.
async function defaultFolderOnly() {
  place.organization = fillSelect($('organization-select'), [{ id: DEFAULTS.organization }], null, null);
  place.cloud = fillSelect($('cloud-select'), [{ id: DEFAULTS.cloud }], null, null);
  place.folder = fillSelect($('folder-select'), [{ id: DEFAULTS.folder }], null, null);
  $('folder-status').textContent = 'This server does not list organizations, clouds and folders (no /organization-manager/v1 and /resource-manager/v1 routes): showing the default folder.';
  await folderChosen();
}

/// A folder was chosen: its policies and its service accounts.
async function folderChosen() {
  $('account-create-open').disabled = !place.folder;
  const name = place.folder ? place.names.get(place.folder) : null;
  $('accounts-caption').textContent = name ? `Service accounts in folder ${name}` : 'Service accounts';
  await Promise.all([loadPolicies(), loadAccounts(false)]);
}

// ----- access policies on the folder's path -----

const POLICY_ROUTES = {
  folder: 'resource-manager/v1/folders',
  cloud: 'resource-manager/v1/clouds',
  organization: 'organization-manager/v1/organizations',
};

async function loadPolicies() {
  clearError('policies-error');
  bindings = [];
  const path = [['folder', place.folder], ['cloud', place.cloud], ['organization', place.organization]]
    .filter(([, id]) => id);
  try {
    const answers = await Promise.all(path.map(([kind, id]) => call('GET',
      `${POLICY_ROUTES[kind]}/${encodeURIComponent(id)}:listAccessPolicyBindings`, undefined, ROOT)));
    answers.forEach((data, i) => {
      const [kind, id] = path[i];
      for (const b of data?.accessPolicyBindings ?? []) {
        bindings.push({ ...b, on: { kind, id, name: place.names.get(id) ?? id } });
      }
    });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $('policies-error').textContent = 'This server does not list access policy bindings (no …:listAccessPolicyBindings routes): the policies on this path are unknown here.';
    } else {
      showError('policies-error', error);
    }
  }
  $('policies-body').replaceChildren(...bindings.map(policyRow));
  $('policies-wrap').hidden = bindings.length === 0;
  $('policies-status').textContent = !place.folder
    ? 'No folder chosen.'
    : $('policies-error').textContent
      ? ''
    : bindings.length === 0
      ? 'No access policy is bound on this folder, its cloud or its organization.'
      : `${bindings.length} access polic${bindings.length === 1 ? 'y applies' : 'ies apply'} to the service accounts of this folder.`;
}

function policyRow(b) {
  const template = templates.get(b.accessPolicyTemplateId);
  const params = Object.entries(b.parameters ?? {});
  const head = el('th', { scope: 'row' }, el('span', { className: 'mono', text: b.accessPolicyTemplateId }));
  if (template?.description) head.append(el('small', { className: 'hint block', text: template.description }));
  return el('tr', { 'data-template': b.accessPolicyTemplateId, 'data-bound-on': b.on.kind },
    head,
    el('td', { className: 'mono', text: params.length ? params.map(([k, v]) => `${k}=${v}`).join(', ') : '—' }),
    el('td', { text: `${b.on.kind[0].toUpperCase()}${b.on.kind.slice(1)} ${b.on.name} (${b.on.id})` }),
  );
}

// ----- service accounts -----

async function loadAccounts(more) {
  clearError('accounts-error');
  if (!more) {
    accounts.list = [];
    accounts.next = '';
  }
  if (!place.folder) {
    renderAccounts();
    return;
  }
  const query = new URLSearchParams({ folderId: place.folder, pageSize: String(ACCOUNTS_PAGE_SIZE) });
  if (more && accounts.next) query.set('pageToken', accounts.next);
  try {
    const data = await call('GET', `serviceAccounts?${query}`);
    accounts.list.push(...(data?.serviceAccounts ?? []));
    accounts.next = data?.nextPageToken ?? '';
  } catch (error) {
    showError('accounts-error', error);
  }
  renderAccounts();
}

function renderAccounts() {
  $('accounts-body').replaceChildren(...accounts.list.map(accountRow));
  $('accounts-wrap').hidden = accounts.list.length === 0;
  $('accounts-more').hidden = accounts.next === '';
  const name = place.names.get(place.folder) ?? place.folder;
  $('accounts-status').textContent = !place.folder
    ? ''
    : accounts.list.length === 0
      ? `Folder ${name} has no service accounts.`
      : `${accounts.list.length}${accounts.next ? '+' : ''} service account${accounts.list.length === 1 ? '' : 's'} in folder ${name}.`;
  markOpenAccount();
}

function accountRow(sa) {
  return el('tr', { 'data-account-id': sa.id },
    el('th', { scope: 'row', text: sa.name }),
    el('td', { className: 'description', text: sa.description || '—' }),
    el('td', {}, when(sa.createdAt)),
    el('td', { className: 'mono', text: sa.id }),
    el('td', {}, el('button', { type: 'button', 'aria-label': `Open ${sa.name}`, text: 'Open', onClick: () => openAccount(sa) })),
  );
}

/// Marks the open account's row (`aria-current`).
function markOpenAccount() {
  for (const row of $('accounts-body').querySelectorAll('tr')) {
    if (row.dataset.accountId === account) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
  }
}

/// Shows the keys of `sa` in the key table below.
async function openAccount(sa) {
  account = sa.id;
  accountName = sa.name;
  $('service-account').value = sa.id;
  clearError('list-error');
  markOpenAccount();
  pages.tokens = [''];
  pages.index = 0;
  history.id = null;
  $('history-section').hidden = true;
  await loadPage();
  $('keys-heading').focus();
  $('keys-section').scrollIntoView({ block: 'start' });
}

function openAccountCreate() {
  clearError('account-error');
  const name = place.names.get(place.folder);
  $('account-dialog-folder').textContent = name && name !== place.folder ? `${name} (${place.folder})` : place.folder;
  $('account-name').value = '';
  $('account-description').value = '';
  $('account-dialog').showModal();
  $('account-name').focus();
}

async function createAccount(event) {
  event.preventDefault();
  clearError('account-error');
  const name = $('account-name').value.trim();
  if (!name) {
    $('account-error').textContent = 'Enter a name.';
    $('account-name').focus();
    return;
  }
  const body = { folderId: place.folder, name };
  const description = $('account-description').value;
  if (description) body.description = description;
  await busy(event.submitter ?? $('account-create-form').querySelector('[type=submit]'), async () => {
    let op;
    try {
      op = await call('POST', 'serviceAccounts', body);
    } catch (error) {
      showError('account-error', error);
      $('account-name').focus();
      return;
    }
    $('account-dialog').close();
    await loadAccounts(false);
    const made = op?.response;
    if (made?.id) await openAccount(made);
  });
}

// ----- the list -----

async function showKeys(event) {
  event.preventDefault();
  clearError('list-error');
  const name = $('service-account').value.trim();
  if (!name) {
    $('list-error').textContent = 'Enter a service account.';
    $('service-account').focus();
    return;
  }
  account = name;
  accountName = accounts.list.find((sa) => sa.id === name)?.name ?? null;
  markOpenAccount();
  pages.tokens = [''];
  pages.index = 0;
  history.id = null;
  $('history-section').hidden = true;
  await busy(event.submitter ?? $('account-form').querySelector('button'), loadPage);
}

async function loadPage() {
  clearError('list-error');
  const query = new URLSearchParams({ serviceAccountId: account, pageSize: String(PAGE_SIZE) });
  const pageToken = pages.tokens[pages.index];
  if (pageToken) query.set('pageToken', pageToken);
  let data;
  try {
    data = await call('GET', `apiKeys?${query}`);
  } catch (error) {
    showError('list-error', error);
    return;
  }
  const keys = Array.isArray(data?.apiKeys) ? data.apiKeys : [];
  pages.next = data?.nextPageToken ?? '';
  if (keys.length === 0 && pages.index > 0) {
    // The page emptied (its keys were deleted): step back.
    pages.index -= 1;
    await loadPage();
    return;
  }
  renderKeys(keys);
}

/// Where keyboard focus goes after the rows are replaced: the same button
/// if it is still there, else the row's first button, else the table.
function focusTarget() {
  const active = document.activeElement;
  const row = active?.closest?.('#keys-body tr');
  if (!row) return null;
  return { label: active.getAttribute('aria-label'), id: row.dataset.keyId };
}

function restoreFocus(target) {
  if (!target) return;
  const body = $('keys-body');
  const same = [...body.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === target.label);
  const row = [...body.querySelectorAll('tr')].find((r) => r.dataset.keyId === target.id);
  const next = same ?? row?.querySelector('button') ?? ($('keys-wrap').hidden ? $('create-open') : $('keys-wrap'));
  next.focus();
}

function renderKeys(keys) {
  const target = focusTarget();
  $('create-open').disabled = false;
  $('keys-caption').textContent = `API keys of ${accountLabel()}`;
  $('keys-heading').textContent = `API keys of ${accountName ?? account}`;
  $('keys-body').replaceChildren(...keys.map(keyRow));
  if (!target) $('keys-wrap').scrollLeft = 0;
  $('keys-wrap').hidden = keys.length === 0;
  $('list-status').textContent = keys.length === 0
    ? `Service account ${accountLabel()} has no API keys.`
    : `Showing ${keys.length} key${keys.length === 1 ? '' : 's'} of ${accountLabel()}.`;
  const paged = pages.index > 0 || pages.next !== '';
  $('pager').hidden = !paged;
  $('prev-page').disabled = pages.index === 0;
  $('next-page').disabled = pages.next === '';
  $('page-info').textContent = `Page ${pages.index + 1}`;
  restoreFocus(target);
}

function status(key) {
  if (key.enabled === false) return 'disabled';
  if (key.status === 'REVOKED') return 'revoked';
  if (key.expiresAt && Date.parse(key.expiresAt) <= Date.now()) return 'expired';
  return 'active';
}

function keyRow(key) {
  const state = status(key);
  const statusCell = el('td', {}, el('span', { className: `badge ${state}`, text: state }));
  if (key.replacedBy) statusCell.append(el('small', { className: 'muted block', text: `replaced by ${key.replacedBy}` }));
  if (key.reissuedFrom) statusCell.append(el('small', { className: 'muted block', text: `reissue of ${key.reissuedFrom}` }));
  const scopeList = el('ul', { className: 'scope-list' }, ...(key.scopes ?? []).map((s) => el('li', { text: s })));
  return el('tr', { 'data-key-id': key.id },
    el('th', { scope: 'row', className: 'mono', text: key.id }),
    el('td', { className: 'description', text: key.description || '—' }),
    el('td', {}, when(key.createdAt)),
    el('td', {}, when(key.lastUsedAt)),
    el('td', {}, scopeList),
    el('td', {}, when(key.expiresAt)),
    el('td', { className: 'mono', text: key.maskedSecret ?? '' }),
    statusCell,
    el('td', { className: 'row-actions' }, ...rowButtons(key, state)),
  );
}

function rowButton(label, key, handler) {
  return el('button', { type: 'button', 'aria-label': `${label} ${key.id}`, text: label, onClick: () => handler(key) });
}

function rowButtons(key, state) {
  const buttons = [];
  if (state !== 'revoked') {
    buttons.push(rowButton('Edit', key, openEdit));
    if (!key.replacedBy) buttons.push(rowButton('Reissue', key, openReissue));
    buttons.push(rowButton('Revoke', key, openRevoke));
  }
  buttons.push(rowButton('Delete', key, openDelete));
  buttons.push(rowButton('History', key, (k) => openHistory(k.id)));
  return buttons;
}

/// Reloads the page of keys, and the history if it is open.
async function refresh() {
  await loadPage();
  if (history.id) await loadHistory(false);
}

// ----- scopes checkboxes -----

function fillScopes(fieldset, prefix, checked) {
  const grid = fieldset.querySelector('.scope-grid');
  grid.replaceChildren();
  grid.scrollTop = 0;
  for (const scope of scopes) {
    const id = `${prefix}-${scope.id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const hintId = `${id}-hint`;
    const note = [scope.description, scope.default ? 'default' : ''].filter(Boolean).join(' · ');
    const box = el('input', { type: 'checkbox', id, value: scope.id, 'aria-describedby': hintId });
    box.checked = checked.has(scope.id);
    grid.append(el('div', { className: 'scope' },
      box,
      el('label', { for: id, className: 'mono', text: scope.id }),
      el('small', { id: hintId, className: scope.default ? 'hint default' : 'hint', text: note }),
    ));
  }
}

const checkedScopes = (fieldset) => [...fieldset.querySelectorAll('input[type=checkbox]:checked')].map((b) => b.value);

// ----- create -----

function openCreate() {
  clearError('create-error');
  $('create-account').textContent = accountLabel();
  const inFolder = accounts.list.some((sa) => sa.id === account);
  $('create-policies').hidden = !(inFolder && bindings.length > 0);
  $('create-policies').textContent = inFolder && bindings.length > 0
    ? `Access policies on its path: ${bindings.map((b) => `${b.accessPolicyTemplateId} (on ${b.on.kind} ${b.on.name})`).join('; ')}.`
    : '';
  $('create-description').value = '';
  $('create-expires').value = '';
  fillScopes($('create-scopes'), 'create-scope', new Set());
  $('create-dialog').showModal();
  $('create-description').focus();
}

async function create(event) {
  event.preventDefault();
  clearError('create-error');
  const body = { serviceAccountId: account, description: $('create-description').value };
  const chosen = checkedScopes($('create-scopes'));
  if (chosen.length > 0) body.scopes = chosen;
  const expiresAt = utcFromInput($('create-expires').value);
  if (expiresAt) body.expiresAt = expiresAt;
  await busy(event.submitter ?? $('create-form').querySelector('[type=submit]'), async () => {
    let created;
    try {
      created = await call('POST', 'apiKeys', body);
    } catch (error) {
      showError('create-error', error);
      if (error instanceof ApiError && error.code === FAILED_PRECONDITION && bindings.length > 0) {
        const said = $('create-error').textContent;
        $('create-error').textContent = `${said}${/[.!?]$/.test(said) ? '' : '.'} The access policies bound on the folder's path are listed under “Access policies on this folder's path”.`;
      }
      return;
    }
    $('create-dialog').close();
    showSecret(created);
    await loadPage();
  });
}

// ----- the one-time secret -----

function showSecret(created) {
  shownSecret = created?.secret ?? null;
  $('secret-id').value = created?.apiKey?.id ?? '';
  $('secret-value').value = shownSecret ?? '';
  $('secret-copy-status').textContent = shownSecret ? '' : 'The server returned no secret (a repeated request); reissue the key to get one.';
  $('secret-dialog').showModal();
  $('secret-value').focus();
  $('secret-value').select();
}

function clearSecret() {
  shownSecret = null;
  $('secret-value').value = '';
  $('secret-id').value = '';
  $('secret-copy-status').textContent = '';
}

async function copySecret() {
  const field = $('secret-value');
  try {
    await navigator.clipboard.writeText(shownSecret ?? '');
    $('secret-copy-status').textContent = 'Copied to the clipboard.';
  } catch {
    field.focus();
    field.select();
    $('secret-copy-status').textContent = 'Copying is not allowed here: the secret is selected, copy it with Ctrl+C.';
  }
}

// ----- reissue, revoke, delete -----

function openConfirm({ heading, text, grace, run }) {
  clearError('confirm-error');
  $('confirm-heading').textContent = heading;
  $('confirm-text').textContent = text;
  $('grace-field').hidden = !grace;
  $('grace-period').value = '';
  pendingConfirm = run;
  $('confirm-dialog').showModal();
  (grace ? $('grace-period') : $('confirm-button')).focus();
}

function openReissue(key) {
  openConfirm({
    heading: `Reissue ${key.id}?`,
    text: 'A new key with the same scopes, description and expiry replaces this one. Its secret is shown once.',
    grace: true,
    run: async () => {
      const seconds = $('grace-period').value.trim();
      if (seconds && !/^\d+$/.test(seconds)) throw new ApiError('The grace period must be a whole number of seconds.');
      const body = seconds && seconds !== '0' ? { gracePeriod: `${seconds}s` } : {};
      const created = await call('POST', keyPath(key.id, ':reissue'), body);
      return () => showSecret(created);
    },
  });
}

function openRevoke(key) {
  openConfirm({
    heading: `Revoke ${key.id}?`,
    text: 'The key stops working at once and cannot be used again. It stays listed, with its history.',
    grace: false,
    run: async () => { await call('POST', keyPath(key.id, ':revoke'), {}); },
  });
}

function openDelete(key) {
  openConfirm({
    heading: `Delete ${key.id}?`,
    text: 'The key stops working and is removed from the list. Its history is kept.',
    grace: false,
    run: async () => { await call('DELETE', keyPath(key.id)); },
  });
}

async function confirm(event) {
  event.preventDefault();
  clearError('confirm-error');
  const run = pendingConfirm;
  if (!run) return;
  await busy($('confirm-button'), async () => {
    let after;
    try {
      after = await run();
    } catch (error) {
      showError('confirm-error', error);
      return;
    }
    pendingConfirm = null;
    $('confirm-dialog').close();
    if (after) after();
    await refresh();
  });
}

// ----- edit -----

function openEdit(key) {
  editing = key;
  clearError('edit-error');
  $('edit-heading').textContent = `Edit ${key.id}`;
  $('edit-description').value = key.description ?? '';
  $('edit-expires').value = inputFromUtc(key.expiresAt);
  fillScopes($('edit-scopes'), 'edit-scope', new Set(key.scopes ?? []));
  $('edit-dialog').showModal();
  $('edit-description').focus();
}

function sameSet(a, b) {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/// The PATCH body naming only what changed, or null when nothing did.
function changes(key) {
  const body = {};
  const mask = [];
  const description = $('edit-description').value;
  if (description !== (key.description ?? '')) {
    mask.push('description');
    body.description = description;
  }
  const chosen = checkedScopes($('edit-scopes'));
  if (!sameSet(chosen, key.scopes ?? [])) {
    mask.push('scopes');
    body.scopes = chosen;
  }
  // Compared to the second: the field drops `:00` seconds and fractions.
  const at = utcFromInput($('edit-expires').value);
  const was = key.expiresAt ? `${key.expiresAt.slice(0, 19)}Z` : null;
  if (at !== was) {
    mask.push('expiresAt');
    if (at) body.expiresAt = at;
  }
  if (mask.length === 0) return null;
  body.updateMask = mask.join(',');
  return body;
}

async function saveEdit(event) {
  event.preventDefault();
  clearError('edit-error');
  const key = editing;
  if (!key) return;
  const body = changes(key);
  if (!body) {
    $('edit-error').textContent = 'Nothing changed.';
    return;
  }
  if (body.scopes && body.scopes.length === 0) {
    $('edit-error').textContent = 'Choose at least one scope: a key keeps one or more.';
    return;
  }
  await busy(event.submitter ?? $('edit-form').querySelector('[type=submit]'), async () => {
    try {
      await call('PATCH', keyPath(key.id), body);
    } catch (error) {
      showError('edit-error', error);
      return;
    }
    editing = null;
    $('edit-dialog').close();
    await refresh();
  });
}

// ----- history -----

async function openHistory(id) {
  history.id = id;
  $('history-heading').textContent = `History of ${id}`;
  $('history-section').hidden = false;
  await loadHistory(false);
  $('history-heading').scrollIntoView({ block: 'nearest' });
}

/// A changed value as text: `(none)` for a removed one, lists joined,
/// objects (a leak's source and URL, credits) as `name=value` pairs.
function describeValue(value) {
  if (value === null || value === undefined) return '(none)';
  if (Array.isArray(value)) return value.map(describeValue).join(', ');
  if (typeof value === 'object') {
    return Object.entries(value).map(([name, inner]) => `${name}=${describeValue(inner)}`).join(', ');
  }
  return String(value);
}

function describeChanges(changes) {
  if (!changes || typeof changes !== 'object') return '';
  return Object.entries(changes)
    .map(([field, value]) => `${field}: ${describeValue(value)}`)
    .join('; ');
}

async function loadHistory(more) {
  clearError('history-error');
  const query = new URLSearchParams({ pageSize: String(HISTORY_PAGE_SIZE) });
  if (more && history.next) query.set('pageToken', history.next);
  let data;
  try {
    data = await call('GET', `${keyPath(history.id, '/operations')}?${query}`);
  } catch (error) {
    showError('history-error', error);
    return;
  }
  const rows = (data?.operations ?? []).map((op) => el('tr', { 'data-kind': op.metadata?.kind ?? '' },
    el('td', {}, when(op.createdAt)),
    el('td', { text: op.description ?? op.metadata?.kind ?? '' }),
    el('td', { text: op.createdBy ?? '' }),
    el('td', { className: 'changes', text: describeChanges(op.metadata?.changes) }),
  ));
  if (more) $('history-body').append(...rows);
  else $('history-body').replaceChildren(...rows);
  history.next = data?.nextPageToken ?? '';
  $('history-more').hidden = history.next === '';
}

function closeHistory() {
  history.id = null;
  $('history-section').hidden = true;
  $('history-body').replaceChildren();
}

// ----- wiring -----

// Puts a copy of the key-fields template in place of each dialog's
// data-key-fields element, its ids prefixed with the dialog's name.
function placeKeyFields() {
  for (const slot of document.querySelectorAll('[data-key-fields]')) {
    const named = (name) => `${slot.dataset.keyFields}-${name}`;
    const fields = $('key-fields').content.cloneNode(true);
    for (const node of fields.querySelectorAll('[data-id]')) node.id = named(node.dataset.id);
    for (const node of fields.querySelectorAll('[data-for]')) node.htmlFor = named(node.dataset.for);
    for (const node of fields.querySelectorAll('[data-describedby]')) {
      node.setAttribute('aria-describedby', named(node.dataset.describedby));
    }
    for (const node of fields.querySelectorAll('[data-id], [data-for], [data-describedby]')) {
      for (const name of ['data-id', 'data-for', 'data-describedby']) node.removeAttribute(name);
    }
    slot.replaceWith(fields);
  }
}

function wire() {
  placeKeyFields();
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('account-form').addEventListener('submit', showKeys);
  $('create-open').addEventListener('click', openCreate);
  $('create-form').addEventListener('submit', create);
  $('secret-form').addEventListener('submit', (event) => {
    event.preventDefault();
    // Cleared before the dialog hides: its `close` event fires a task later.
    clearSecret();
    $('secret-dialog').close();
  });
  // Escape (`cancel` fires before the dialog hides), or anything else that
  // closes the dialog, clears the secret too.
  $('secret-dialog').addEventListener('cancel', clearSecret);
  $('secret-dialog').addEventListener('close', clearSecret);
  $('secret-copy').addEventListener('click', copySecret);
  $('confirm-form').addEventListener('submit', confirm);
  $('confirm-dialog').addEventListener('close', () => { pendingConfirm = null; });
  $('edit-form').addEventListener('submit', saveEdit);
  $('edit-dialog').addEventListener('close', () => { editing = null; });
  for (const button of document.querySelectorAll('dialog [data-close]')) {
    button.addEventListener('click', () => button.closest('dialog').close());
  }
  $('prev-page').addEventListener('click', async () => {
    if (pages.index === 0) return;
    pages.index -= 1;
    await loadPage();
    ($('prev-page').disabled ? $('next-page') : $('prev-page')).focus();
  });
  $('next-page').addEventListener('click', async () => {
    if (!pages.next) return;
    pages.tokens[pages.index + 1] = pages.next;
    pages.index += 1;
    await loadPage();
    ($('next-page').disabled ? $('prev-page') : $('next-page')).focus();
  });
  $('history-close').addEventListener('click', closeHistory);
  $('organization-select').addEventListener('change', (e) => { place.organization = e.target.value || null; loadClouds(); });
  $('cloud-select').addEventListener('change', (e) => { place.cloud = e.target.value || null; loadFolders(); });
  $('folder-select').addEventListener('change', (e) => { place.folder = e.target.value || null; folderChosen(); });
  $('folder-form').addEventListener('submit', (e) => e.preventDefault());
  $('folder-refresh').addEventListener('click', () => busy($('folder-refresh'), () => loadOrganizations({ ...place })));
  $('account-create-open').addEventListener('click', openAccountCreate);
  $('account-create-form').addEventListener('submit', createAccount);
  $('accounts-more').addEventListener('click', () => busy($('accounts-more'), () => loadAccounts(true)));
  $('history-more').addEventListener('click', () => busy($('history-more'), () => loadHistory(true)));
}

wire();
