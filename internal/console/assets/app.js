// msgrouter operator console (DESIGN §12). Plain JavaScript, no dependencies.
//
// Safety rules kept throughout this file:
// * Every string from the API is rendered with text nodes (h() below), never as
//   HTML: agent addresses, error texts and inbox names are hostile input.
// * The admin key lives in sessionStorage (this tab only) and travels only in the
//   Authorization header of same-origin fetches; no cookies, so no CSRF.

const KEY_STORAGE = 'msgrouter.adminKey';
const STATUSES = ['PENDING', 'DELIVERED', 'REJECTED', 'DEAD_LETTERED'];
const FAILED_REASONS = ['AGENT_NOT_FOUND', 'AGENT_INACTIVE', 'CONFIG_ERROR', 'INVALID_MESSAGE',
  'MAX_ATTEMPTS_EXCEEDED', 'DESTINATION_GONE', 'DESTINATION_FORBIDDEN', 'EXPIRED'];
const PAGE_SIZE = 25;

const view = document.getElementById('view');
const notice = document.getElementById('notice');
const keyPrompt = document.getElementById('key-prompt');
const keyForm = document.getElementById('key-form');
const keyInput = document.getElementById('key-input');
const keyMessage = document.getElementById('key-message');
const forgetKey = document.getElementById('forget-key');

// ---- DOM helpers -----------------------------------------------------------

// h builds an element. Children that are not nodes become text nodes, so nothing
// passed here is ever parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false || c === '') continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (s) => (s ? h('span', { class: 'badge s-' + String(s).replace(/[^A-Z_]/g, '') }, s) : '—');
const fmtTime = (t) => {
  if (!t) return '—';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace('T', ' ').replace('Z', ' UTC');
};
const fmtCount = (n, limit) => (limit && n >= limit ? limit.toLocaleString('en') + '+' : Number(n).toLocaleString('en'));
const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
// table labels every cell with its column's heading, so narrow windows can show
// each row as a stacked card (style.css).
function table(head, rows) {
  for (const tr of rows) {
    [...tr.children].forEach((td, i) => { if (head[i]) td.dataset.label = head[i]; });
  }
  return h('div', { class: 'table-wrap' },
    h('table', {}, h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)));
}
const errorBox = (err) => h('div', { class: 'error', role: 'alert' }, describe(err));
const msgLink = (id) => h('a', { href: '#/messages/' + encodeURIComponent(id) }, id);

function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0) return err.message;
    return `${err.message} (${err.code}, HTTP ${err.status})`;
  }
  return 'Something went wrong in the console: ' + (err && err.message ? err.message : String(err));
}

// say shows a confirmation that outlives the navigation the action causes, and
// is cleared by the one after.
let noticeGen = 0;
function say(text) {
  noticeGen = generation;
  notice.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { notice.textContent = ''; }, 8000);
}

// ---- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = 'Bearer ' + key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit', cache: 'no-store', redirect: 'error',
    });
  } catch (e) {
    throw new ApiError(0, 'NETWORK', 'The router did not answer (is it running, and reachable from this browser?).');
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (resp.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    askForKey(key
      ? 'That key was not accepted: the router answered 401. Enter one of its ADMIN_API_KEYS.'
      : 'This router requires an admin key (ADMIN_API_KEYS is set).');
    throw new ApiError(401, 'UNAUTHORIZED', key ? 'The admin key was not accepted.' : 'An admin key is needed.');
  }
  if (!resp.ok) {
    const code = data && typeof data.errorCode === 'string' ? data.errorCode : 'HTTP_' + resp.status;
    const message = data && typeof data.message === 'string' ? data.message : `The router answered HTTP ${resp.status}.`;
    throw new ApiError(resp.status, code, message);
  }
  return data;
}

const qs = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
};

// ---- key prompt ------------------------------------------------------------

function askForKey(message) {
  keyMessage.textContent = message;
  keyPrompt.hidden = false;
  view.hidden = true;
  keyInput.value = '';
  keyInput.focus();
}

keyForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const k = keyInput.value.trim();
  if (!k) return;
  sessionStorage.setItem(KEY_STORAGE, k);
  keyPrompt.hidden = true;
  view.hidden = false;
  render();
});

forgetKey.addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  say('The key is forgotten in this tab.');
  render();
});

// ---- routing ---------------------------------------------------------------

let generation = 0; // bumped on every navigation; stale async work checks it
let timers = [];

function every(ms, f) {
  const gen = generation;
  const id = setInterval(() => { if (gen === generation && !document.hidden) f(); }, ms);
  timers.push(id);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, params: new URLSearchParams(query || '') };
}

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

async function render() {
  generation++;
  if (noticeGen < generation - 1) notice.textContent = '';
  timers.forEach(clearInterval);
  timers = [];
  forgetKey.hidden = !sessionStorage.getItem(KEY_STORAGE);
  if (!keyPrompt.hidden) return; // waiting for a key
  const { parts, params } = parseHash();
  const page = parts[0] || 'overview';
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const gen = generation;
  const show = (...nodes) => {
    if (gen !== generation) return false;
    view.replaceChildren(...nodes);
    return true;
  };
  try {
    switch (page) {
      case 'overview': await overviewPage(show, gen); break;
      case 'messages':
        if (parts[1]) await messagePage(show, parts[1], gen);
        else await messagesPage(show, params);
        break;
      case 'dead-letters': await deadLettersPage(show, params); break;
      case 'agents':
        if (parts[1] === 'new') agentForm(show, null);
        else if (parts[1]) await agentEditPage(show, parts[1]);
        else await agentsPage(show, params);
        break;
      default:
        show(h('h1', {}, 'Not found'), h('p', {}, 'There is no console page here. '), h('a', { href: '#/' }, 'Go to the overview'));
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    show(h('h1', { tabindex: '-1' }, 'Error'), errorBox(err));
  }
  const h1 = view.querySelector('h1');
  if (h1 && document.activeElement === document.body) { h1.tabIndex = -1; h1.focus({ preventScroll: true }); }
}

window.addEventListener('hashchange', render);

// ---- overview --------------------------------------------------------------

async function overviewPage(show, gen) {
  let prev = null;
  const cards = h('div', { class: 'cards' });
  const rates = h('p', { class: 'hint' });
  const breakers = h('div');
  const updated = h('p', { class: 'hint' });
  const problem = h('div');
  const card = (label, value, href) => h('div', { class: 'card' },
    href ? h('a', { href }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value))
      : [h('div', { class: 'label' }, label), h('div', { class: 'value' }, value)]);
  const refresh = async () => {
    let o;
    try {
      o = await api('GET', '/v1/overview');
    } catch (err) {
      if (gen === generation && !(err instanceof ApiError && err.status === 401)) problem.replaceChildren(errorBox(err));
      return;
    }
    if (gen !== generation) return;
    problem.replaceChildren();
    let delivered = '…';
    if (prev && prev.replica === o.replica) {
      const secs = (new Date(o.at) - new Date(prev.at)) / 1000;
      if (secs > 0) delivered = ((o.counters.delivered - prev.counters.delivered) / secs).toFixed(1);
    }
    prev = o;
    cards.replaceChildren(
      card('Intake (msgs/s, all routers, last 10 s)', (o.receivedLast10s / 10).toFixed(1)),
      card('Delivered (msgs/s, this router)', delivered),
      card('Waiting in JetStream (not yet taken over)', o.streamPending === null || o.streamPending === undefined ? 'unknown' : fmtCount(o.streamPending)),
      card('Pending', fmtCount(o.pending, o.countLimit), '#/messages?status=PENDING'),
      card('Held (agent inactive)', fmtCount(o.held, o.countLimit), '#/messages?status=PENDING'),
      card('Dead-lettered', fmtCount(o.deadLettered, o.countLimit), '#/dead-letters?status=DEAD_LETTERED'),
      card('Rejected', fmtCount(o.rejected, o.countLimit), '#/dead-letters?status=REJECTED'),
    );
    rates.textContent = `Since this router started (${fmtTime(o.startedAt)}): ${o.counters.takenOver} taken over, ` +
      `${o.counters.delivered} delivered, ${o.counters.deadLettered} dead-lettered, ${o.counters.attempts} delivery attempts.`;
    breakers.replaceChildren(o.breakers.length === 0
      ? h('p', {}, 'All circuit breakers of this router are closed.')
      : table(['Breaker', 'State'], o.breakers.map((b) => h('tr', {}, h('td', {}, b.name), h('td', {}, badge(b.state))))));
    updated.textContent = 'Updated ' + fmtTime(o.at) + ' (every 2 s).';
  };
  await refresh();
  show(h('h1', {}, 'Overview'), problem, cards, rates, h('h2', {}, 'Circuit breakers'), breakers, updated);
  every(2000, refresh);
}

// ---- messages --------------------------------------------------------------

function filterForm(fields, onSubmit, submitLabel) {
  const form = h('form', { class: 'filters', role: 'search' }, fields, h('button', { type: 'submit' }, submitLabel || 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    onSubmit(new FormData(form));
  });
  return form;
}

const field = (label, name, value, attrs) => h('label', {}, label, h('input', { name, value: value || '', ...attrs }));
const selectField = (label, name, value, options) => h('label', {}, label,
  h('select', { name }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text))));

async function messagesPage(show, params) {
  const f = { status: params.get('status') || '', aiAgentAddress: params.get('agent') || '', orderingKey: params.get('orderingKey') || '' };
  const cursor = params.get('cursor') || '';
  const form = filterForm([
    field('Message id', 'id', '', { placeholder: 'uuid', spellcheck: 'false', size: 38 }),
    field('Agent address', 'agent', f.aiAgentAddress, { spellcheck: 'false' }),
    selectField('Status', 'status', f.status, [['', 'Any'], ...STATUSES.map((s) => [s, s])]),
    field('Ordering key', 'orderingKey', f.orderingKey, { spellcheck: 'false' }),
  ], (d) => {
    const id = String(d.get('id') || '').trim();
    if (id) return go('#/messages/' + encodeURIComponent(id));
    go('#/messages' + qs({ agent: String(d.get('agent')).trim(), status: d.get('status'), orderingKey: String(d.get('orderingKey')).trim() }));
  });
  const data = await api('GET', '/v1/messages' + qs({ ...f, limit: PAGE_SIZE, cursor }));
  let items = data.items || [];
  // A router without ordering keys ignores the filter: keep only real matches.
  if (f.orderingKey) items = items.filter((m) => m.orderingKey === f.orderingKey);
  const withKey = items.some((m) => m.orderingKey);
  const head = ['Received', 'Message id', 'Agent', 'Status', 'Reason', 'Attempts'];
  if (withKey) head.push('Ordering key');
  const rows = items.map((m) => h('tr', {},
    h('td', {}, fmtTime(m.receivedAt)), h('td', { class: 'id' }, msgLink(m.messageId)), h('td', {}, m.aiAgentAddress),
    h('td', {}, badge(m.status)), h('td', {}, m.reason || ''), h('td', {}, m.attempts),
    withKey ? h('td', { class: 'mono' }, m.orderingKey || '') : null));
  const base = { agent: f.aiAgentAddress, status: f.status, orderingKey: f.orderingKey };
  const pager = h('div', { class: 'pager' },
    cursor ? h('a', { href: '#/messages' + qs(base) }, '← Newest') : null,
    data.nextCursor ? h('a', { href: '#/messages' + qs({ ...base, cursor: data.nextCursor }) }, 'Older →') : null);
  show(h('h1', {}, 'Messages'), form,
    items.length ? table(head, rows) : h('p', {}, 'No messages match.'),
    h('p', { class: 'hint' }, 'Newest first, ' + PAGE_SIZE + ' a page.'), pager);
}

async function messagePage(show, id, gen) {
  const box = h('div');
  const status = h('div');
  const load = async () => {
    let m;
    try {
      m = await api('GET', '/v1/messages/' + encodeURIComponent(id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        box.replaceChildren(h('div', { class: 'error', role: 'alert' }, `No message with id ${id}: ${err.message}.`));
        return null;
      }
      throw err;
    }
    if (gen !== generation) return m;
    box.replaceChildren(...messageDetail(m, async (btn) => {
      btn.disabled = true;
      try {
        await api('POST', '/v1/messages/' + encodeURIComponent(m.messageId) + '/replay');
        say('Replayed: the message is routed afresh.');
        await load();
      } catch (err) {
        status.replaceChildren(errorBox(err));
        btn.disabled = false;
      }
    }));
    return m;
  };
  const m = await load();
  show(h('h1', {}, 'Message ', h('span', { class: 'mono' }, id)), status, box, h('p', {}, h('a', { href: '#/messages' }, '← All messages')));
  if (m) every(1500, async () => {
    const cur = box.querySelector('[data-status]');
    if (cur && cur.dataset.status === 'PENDING') await load().catch((err) => status.replaceChildren(errorBox(err)));
  });
}

function messageDetail(m, onReplay) {
  const row = (k, v) => (v === undefined || v === null || v === '' ? null : [h('dt', {}, k), h('dd', {}, v)]);
  const dest = m.destination ? [m.destination.type, ' ', h('span', { class: 'mono' }, m.destination.name)] : 'not routed';
  const replayable = m.status === 'REJECTED' || m.status === 'DEAD_LETTERED';
  const history = m.history || [];
  return [
    h('div', { class: 'toolbar' },
      h('span', { 'data-status': m.status }, badge(m.status)),
      m.reason ? h('span', {}, m.reason) : null,
      replayable ? h('button', { type: 'button', id: 'replay', onclick: (e) => onReplay(e.currentTarget) }, 'Replay') : null,
      m.status === 'PENDING' ? h('span', { class: 'hint' }, 'Pending: refreshing every 1.5 s.') : null),
    h('dl', { class: 'attrs' },
      row('Agent', m.aiAgentAddress ? h('a', { href: agentHref(m.aiAgentAddress) }, m.aiAgentAddress) : null), row('Destination', dest), row('Attempts since last replay', m.attempts),
      row('Last error', m.lastError), row('Received', fmtTime(m.receivedAt)),
      row('Published (accepted)', m.timestampPublished ? fmtTime(m.timestampPublished) : null),
      row('Delivered', m.deliveredAt ? fmtTime(m.deliveredAt) : null), row('Finished', m.finishedAt ? fmtTime(m.finishedAt) : null),
      row('Sender', m.senderId), row('Correlation id', m.correlationId), row('Sender message id', m.senderProvidedMessageId),
      row('Ordering key', m.orderingKey), row('Expires', m.expiresAt ? fmtTime(m.expiresAt) : null),
      row('Raw message', m.rawMessageBase64 ? h('span', { class: 'mono' }, m.rawMessageBase64.slice(0, 400)) : null)),
    h('h2', {}, 'Attempt history'),
    history.length === 0 ? h('p', {}, 'No delivery attempts yet.') : table(['#', 'At', 'Outcome', 'Duration', 'Error'],
      history.map((a) => h('tr', {}, h('td', {}, a.attempt), h('td', {}, fmtTime(a.at)), h('td', {}, badge(a.outcome)),
        h('td', {}, a.durationMs + ' ms'), h('td', { class: 'err' }, a.error || '')))),
  ];
}

// ---- dead letters ----------------------------------------------------------

function sinceToISO(v) {
  if (!v) return '';
  const d = new Date(v);
  return isNaN(d) ? null : d.toISOString();
}

async function deadLettersPage(show, params) {
  const f = { status: params.get('status') || '', aiAgentAddress: params.get('agent') || '', reason: params.get('reason') || '', since: params.get('since') || '' };
  const cursor = params.get('cursor') || '';
  const sinceLocal = f.since ? toLocalInput(f.since) : '';
  const problem = h('div');
  const form = filterForm([
    selectField('Status', 'status', f.status, [['', 'Dead-lettered and rejected'], ['DEAD_LETTERED', 'DEAD_LETTERED'], ['REJECTED', 'REJECTED']]),
    field('Agent address', 'agent', f.aiAgentAddress, { spellcheck: 'false' }),
    selectField('Reason', 'reason', f.reason, [['', 'Any'], ...FAILED_REASONS.map((r) => [r, r])]),
    field('Failed since (your local time)', 'since', sinceLocal, { type: 'datetime-local', step: 1 }),
  ], (d) => {
    const since = sinceToISO(d.get('since'));
    if (since === null) { problem.replaceChildren(h('div', { class: 'error', role: 'alert' }, 'The "since" time is not a valid date and time.')); return; }
    go('#/dead-letters' + qs({ status: d.get('status'), agent: String(d.get('agent')).trim(), reason: d.get('reason'), since }));
  }, 'Filter');
  const data = await api('GET', '/v1/dead-letters' + qs({ ...f, limit: PAGE_SIZE, cursor }));
  const items = data.items || [];
  const replayOne = async (btn, id) => {
    btn.disabled = true;
    try {
      await api('POST', '/v1/messages/' + encodeURIComponent(id) + '/replay');
      say(`Replayed ${id}.`);
      render();
    } catch (err) {
      problem.replaceChildren(errorBox(err));
      btn.disabled = false;
    }
  };
  const rows = items.map((m) => h('tr', {},
    h('td', {}, fmtTime(m.failedAt)), h('td', { class: 'id' }, msgLink(m.messageId)), h('td', {}, m.aiAgentAddress),
    h('td', {}, badge(m.status)), h('td', {}, m.reason), h('td', { class: 'err' }, m.lastError || ''),
    h('td', {}, h('button', { type: 'button', class: 'secondary', 'aria-label': 'Replay ' + m.messageId, onclick: (e) => replayOne(e.currentTarget, m.messageId) }, 'Replay'))));
  const confirmBox = h('div');
  const n = data.count;
  const countText = fmtCount(n, data.countLimit);
  const bulk = n > 0 ? h('button', {
    type: 'button', id: 'bulk-replay', onclick: () => {
      const yes = h('button', { type: 'button', class: 'danger', id: 'confirm-replay' }, n === 1 ? 'Replay 1 message' : `Replay ${countText} messages`);
      const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
      no.addEventListener('click', () => { confirmBox.replaceChildren(); document.getElementById('bulk-replay')?.focus(); });
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        no.disabled = true;
        try {
          const body = {};
          if (f.status) body.status = f.status;
          if (f.aiAgentAddress) body.aiAgentAddress = f.aiAgentAddress;
          if (f.reason) body.reason = f.reason;
          if (f.since) body.since = f.since;
          const r = await api('POST', '/v1/dead-letters/replay', body);
          say(`Replayed ${plural(r.replayed, 'message', 'messages')}.`);
          render();
        } catch (err) {
          confirmBox.replaceChildren(errorBox(err));
        }
      });
      confirmBox.replaceChildren(h('div', {
        class: 'confirm', role: 'alertdialog', 'aria-labelledby': 'confirm-text',
        onkeydown: (e) => { if (e.key === 'Escape' && !no.disabled) no.click(); },
      },
        h('p', { id: 'confirm-text' }, `Replay ${n === 1 ? 'this 1 message' : 'these ' + countText + ' messages'}? ` +
          'Each is routed afresh (a new CAMS lookup) and its attempts restart at 0; messages that fail after you confirm are not included.'),
        h('div', { class: 'actions' }, yes, no)));
      yes.focus();
    },
  }, `Replay all ${countText} matching…`) : null;
  const base = { status: f.status, agent: f.aiAgentAddress, reason: f.reason, since: f.since };
  const pager = h('div', { class: 'pager' },
    cursor ? h('a', { href: '#/dead-letters' + qs(base) }, '← Newest') : null,
    data.nextCursor ? h('a', { href: '#/dead-letters' + qs({ ...base, cursor: data.nextCursor }) }, 'Older →') : null);
  show(h('h1', {}, 'Dead letters and rejections'), form, problem,
    h('div', { class: 'toolbar' }, h('span', { id: 'match-count' }, `${countText} failed ${n === 1 ? 'message matches' : 'messages match'}.`), bulk),
    confirmBox,
    items.length ? table(['Failed', 'Message id', 'Agent', 'Status', 'Reason', 'Last error', ''], rows) : h('p', {}, 'Nothing has failed that matches.'),
    pager);
}

function toLocalInput(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return '';
  const p = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// ---- agents ----------------------------------------------------------------

const secretsText = (a) => (a.signingSecretsSet ? `set (${a.signingSecretsCount})` : 'not set');
const authText = (a) => (a.inboxAuthSet ? `set${a.inboxAuthType ? ' (' + a.inboxAuthType + ')' : ''}` : 'not set');
const agentHref = (addr) => '#/agents/' + encodeURIComponent(addr);

async function agentsPage(show, params) {
  const cursor = params.get('cursor') || '';
  const problem = h('div');
  const data = await api('GET', '/v1/agents' + qs({ limit: 50, cursor }));
  const setStatus = async (btn, a, to) => {
    btn.disabled = true;
    try {
      await api('PUT', '/v1/agents/' + encodeURIComponent(a.aiAgentAddress), { status: to });
      say(`${a.aiAgentAddress} is now ${to}.`);
      render();
    } catch (err) {
      problem.replaceChildren(errorBox(err));
      btn.disabled = false;
    }
  };
  const rows = (data.items || []).map((a) => h('tr', {},
    h('td', {}, h('a', { href: agentHref(a.aiAgentAddress) }, a.aiAgentAddress)),
    h('td', {}, a.inboxDestinationType), h('td', { class: 'mono' }, a.inboxName), h('td', {}, badge(a.status)),
    h('td', {}, a.ownerTeam || ''), h('td', {}, secretsText(a)), h('td', {}, authText(a)),
    h('td', {}, a.status === 'ACTIVE'
      ? h('button', { type: 'button', class: 'secondary', 'aria-label': 'Mark ' + a.aiAgentAddress + ' inactive', onclick: (e) => setStatus(e.currentTarget, a, 'INACTIVE') }, 'Mark inactive')
      : h('button', { type: 'button', class: 'secondary', 'aria-label': 'Mark ' + a.aiAgentAddress + ' active', onclick: (e) => setStatus(e.currentTarget, a, 'ACTIVE') }, 'Mark active'))));
  const pager = h('div', { class: 'pager' },
    cursor ? h('a', { href: '#/agents' }, '← First page') : null,
    data.nextCursor ? h('a', { href: '#/agents' + qs({ cursor: data.nextCursor }) }, 'Next page →') : null);
  show(h('h1', {}, 'Agents'), problem,
    h('div', { class: 'toolbar' }, h('a', { href: '#/agents/new', id: 'new-agent' }, 'Register an agent')),
    rows.length ? table(['Address', 'Type', 'Inbox', 'Status', 'Owner team', 'Signing secrets', 'Inbox credentials', ''], rows)
      : h('p', {}, 'No agents are registered.'),
    pager);
}

async function agentEditPage(show, address) {
  let a;
  try {
    a = await api('GET', '/v1/agents/' + encodeURIComponent(address));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      show(h('h1', {}, 'Agent not found'), h('div', { class: 'error', role: 'alert' }, err.message), h('p', {}, h('a', { href: '#/agents' }, '← Agents')));
      return;
    }
    throw err;
  }
  agentForm(show, a);
}

function agentForm(show, a) {
  const editing = !!a;
  a = a || { aiAgentAddress: '', inboxDestinationType: 'NATS_SUBJECT', inboxName: '', status: 'ACTIVE', description: '', ownerTeam: '' };
  const problem = h('div');
  const form = h('form', { class: 'edit', novalidate: true },
    h('label', {}, 'Agent address', h('input', { name: 'aiAgentAddress', value: a.aiAgentAddress, required: true, readonly: editing, spellcheck: 'false' })),
    h('label', {}, 'Inbox type', h('select', { name: 'inboxDestinationType' },
      ['NATS_SUBJECT', 'HTTP_ENDPOINT'].map((t) => h('option', { value: t, selected: t === a.inboxDestinationType }, t)))),
    h('label', {}, 'Inbox (a NATS subject, or an http(s) URL)', h('input', { name: 'inboxName', value: a.inboxName, required: true, spellcheck: 'false' })),
    h('label', {}, 'Status', h('select', { name: 'status' },
      ['ACTIVE', 'INACTIVE'].map((s) => h('option', { value: s, selected: s === a.status }, s)))),
    h('label', {}, 'Description', h('input', { name: 'description', value: a.description || '' })),
    h('label', {}, 'Owner team', h('input', { name: 'ownerTeam', value: a.ownerTeam || '' })),
    h('label', {}, 'New signing secrets (whsec_…, one a line; leave empty to keep ' + (editing ? 'the current ones' : 'none') + ')',
      h('textarea', { name: 'signingSecrets', spellcheck: 'false', autocomplete: 'off' })),
    editing ? h('p', { class: 'hint' }, `Signing secrets: ${secretsText(a)}. Inbox credentials: ${authText(a)}. Secrets are never shown.`) : null,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, editing ? 'Save changes' : 'Register agent'),
      h('a', { href: '#/agents' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const d = new FormData(form);
    const body = {};
    for (const k of ['aiAgentAddress', 'inboxDestinationType', 'inboxName', 'status', 'description', 'ownerTeam']) {
      const v = String(d.get(k) || '').trim();
      // On edit send only what changed: a partial update (DESIGN §4 PUT).
      if (editing ? v !== String(a[k] || '') && k !== 'aiAgentAddress' : v !== '') body[k] = v;
    }
    const secrets = String(d.get('signingSecrets') || '').split('\n').map((s) => s.trim()).filter(Boolean);
    if (secrets.length) body.signingSecrets = secrets;
    if (!editing && (!body.aiAgentAddress || !body.inboxName)) {
      problem.replaceChildren(h('div', { class: 'error', role: 'alert' }, 'The agent address and the inbox are required.'));
      return;
    }
    if (editing && Object.keys(body).length === 0) {
      problem.replaceChildren(h('div', { class: 'error', role: 'alert' }, 'Nothing changed.'));
      return;
    }
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const out = editing
        ? await api('PUT', '/v1/agents/' + encodeURIComponent(a.aiAgentAddress), body)
        : await api('POST', '/v1/agents', body);
      say(`${editing ? 'Saved' : 'Registered'} ${out.aiAgentAddress}.`);
      go('#/agents');
    } catch (err) {
      problem.replaceChildren(errorBox(err));
      btn.disabled = false;
    }
  });
  show(h('h1', {}, editing ? 'Edit agent ' + a.aiAgentAddress : 'Register an agent'), problem, form);
}

render();
