/* console.js — the Warren web console: one page over the management HTTP API only (fetch with
 * basic auth and X-Requested-With, so a refused login is a 401 without a browser dialog).
 * Owns the page's DOM, the credentials in sessionStorage (or localStorage when remembered) and
 * the overview's rate history (the last 10 minutes of /api/overview, polled every 5 s while
 * logged in). Keeps nothing on the server. Invariant: every view checks that it is still the
 * current one before it touches the page after an await, and its timers die with it. */
'use strict';
(function () {
  const KEY = 'warren-console-auth';
  const POLL_MS = 5000;
  const HISTORY_MS = 10 * 60 * 1000;
  const main = document.getElementById('main');
  const flashBox = document.getElementById('flash');

  /* ---- DOM --------------------------------------------------------------------------------- */

  const SVG = new Set(['svg', 'polyline', 'line', 'text', 'g', 'title']);
  function h(tag, attrs, ...kids) {
    const svg = SVG.has(tag);
    const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag)
      : document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'value') value = v;
      else if (k === 'checked' || k === 'disabled' || k === 'hidden' || k === 'required') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    add(el, kids);
    if (value !== undefined) el.value = value;
    return el;
  }
  function add(el, ...kids) {
    for (const k of kids.flat(Infinity))
      if (k !== null && k !== undefined && k !== false) el.append(k instanceof Node ? k : String(k));
    return el;
  }
  const enc = encodeURIComponent;
  const fmtInt = (n) => (n === undefined || n === null) ? '–' : Number(n).toLocaleString('en');
  function fmtRate(r) {
    if (r === undefined || r === null) return '–';
    return (r >= 100 ? Math.round(r).toLocaleString('en') : r >= 10 ? r.toFixed(1) : r.toFixed(2)) + '/s';
  }
  function fmtBytes(b) {
    if (b === undefined || b === null) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + ' ' + u[i];
  }
  function fmtDuration(ms) {
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    return (d ? d + 'd ' : '') + (d || hh ? hh + 'h ' : '') + m + 'm ' + s + 's';
  }
  const rate = (o, k) => (o && o.message_stats && o.message_stats[k + '_details'])
    ? o.message_stats[k + '_details'].rate : 0;
  function kvTable(rows) {
    return h('table', { class: 'kv' }, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v))));
  }
  function jsonText(v) { return h('pre', {}, JSON.stringify(v, null, 1)); }
  function argsView(args) {
    const keys = Object.keys(args || {});
    if (!keys.length) return h('span', { class: 'muted' }, 'none');
    return kvTable(keys.map((k) => [k, typeof args[k] === 'object' ? JSON.stringify(args[k]) : String(args[k])]));
  }
  function tags(list) {
    const a = Array.isArray(list) ? list : String(list || '').split(',').filter(Boolean);
    return a.length ? a.map((t) => h('span', { class: 'tag' }, t)) : h('span', { class: 'muted' }, 'none');
  }

  /* "key = value" lines to an object: a value that is JSON (10, true, "x", [..], {..}) is taken as
   * such, anything else as a string. */
  function parseLines(text, what) {
    const o = {};
    for (const raw of String(text || '').split('\n')) {
      const line = raw.trim();
      if (!line) continue;
      const eq = line.indexOf('=');
      if (eq < 1) throw new Error(`${what}: "${line}" is not "key = value"`);
      const k = line.slice(0, eq).trim(), v = line.slice(eq + 1).trim();
      try { o[k] = JSON.parse(v); } catch (e) { o[k] = v; }
    }
    return o;
  }

  /* ---- messages ----------------------------------------------------------------------------- */

  function flash(text, kind) {
    const box = h('div', { class: 'msg ' + (kind || 'error'), role: kind === 'ok' ? 'status' : 'alert' },
      h('span', { class: 'text' }, text),
      h('button', { type: 'button', 'aria-label': 'Dismiss', on: { click: () => box.remove() } }, '×'));
    flashBox.replaceChildren(box);
    return box;
  }
  const ok = (text) => flash(text, 'ok');

  class ApiError extends Error {
    constructor(status, error, reason) {
      super(reason || error);
      this.status = status; this.error = error; this.reason = reason;
    }
  }
  const WORDS = {
    400: 'the broker refused the request', 401: 'not allowed', 403: 'access refused',
    404: 'not found', 405: 'not supported', 409: 'conflict', 413: 'too large',
    500: 'the broker failed', 503: 'unavailable',
  };
  /* An error in words: what was attempted, what the API said and its status. */
  function describe(e, doing) {
    let s;
    if (e instanceof ApiError) {
      s = e.status === 0 ? e.reason
        : `${WORDS[e.status] || 'error'} (HTTP ${e.status}${e.error && e.error !== e.reason ? ' ' + e.error : ''})` +
          (e.reason ? ': ' + e.reason : '');
    } else {
      s = e && e.message ? e.message : String(e);
    }
    return doing ? `Could not ${doing}: ${s}` : s.charAt(0).toUpperCase() + s.slice(1);
  }
  async function attempt(doing, fn) {
    try {
      return await fn();
    } catch (e) {
      if (auth) flash(describe(e, doing));
      return undefined;
    }
  }

  /* ---- the API -------------------------------------------------------------------------- */

  let auth = null; /* "Basic ..." */
  let me = null;   /* /api/whoami */

  async function api(method, path, body, headers) {
    const hd = Object.assign({ 'X-Requested-With': 'XMLHttpRequest', Accept: 'application/json' }, headers || {});
    if (auth) hd.Authorization = auth;
    if (body !== undefined) hd['Content-Type'] = 'application/json';
    let r;
    try {
      r = await fetch('api' + path, {
        method, headers: hd, cache: 'no-store', credentials: 'omit',
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'the broker did not answer (' + (e.message || e) + ')');
    }
    const text = await r.text();
    let j = null;
    try { j = text ? JSON.parse(text) : null; } catch (e) { j = null; }
    if (!r.ok) {
      const err = new ApiError(r.status, j && j.error ? j.error : r.statusText,
        j && j.reason ? j.reason : (j ? '' : text.slice(0, 200)));
      /* The credentials stopped working (user deleted, password changed): back to the log-in. */
      if (r.status === 401 && err.error === 'not_authorized' && me && path !== '/whoami') {
        logout('Your session ended: the broker no longer accepts these credentials. Log in again.');
      }
      throw err;
    }
    return j;
  }
  const isAdmin = () => me && tagList(me.tags).includes('administrator');
  const tagList = (t) => Array.isArray(t) ? t : String(t || '').split(',').filter(Boolean);

  function credentials(user, pass) {
    const bytes = new TextEncoder().encode(user + ':' + pass);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return 'Basic ' + btoa(bin);
  }

  /* ---- session ---------------------------------------------------------------------------- */

  function logout(message, kind) {
    sessionStorage.removeItem(KEY);
    localStorage.removeItem(KEY);
    auth = null;
    me = null;
    samples.length = 0;
    clearTimeout(pollTimer);
    document.getElementById('top').hidden = true;
    go('#/login', message, kind || 'error');
  }
  document.getElementById('logout').addEventListener('click', () => logout('You are logged out.', 'ok'));

  async function start() {
    auth = sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
    if (auth) {
      try {
        me = await api('GET', '/whoami');
      } catch (e) {
        auth = null;
        sessionStorage.removeItem(KEY);
        localStorage.removeItem(KEY);
        return go('#/login', e.status === 401 ? 'Your saved log-in is no longer accepted. Log in again.' : describe(e));
      }
      loggedIn();
    }
    render();
  }

  function loggedIn() {
    document.getElementById('top').hidden = false;
    document.getElementById('who').textContent = `${me.name} (${tagList(me.tags).join(', ') || 'no tags'})`;
    document.getElementById('nav-admin').hidden = !isAdmin();
    poll();
  }

  /* ---- rate history (overview charts) ------------------------------------------------------- */

  const samples = []; /* {t, publish, deliver_get, ack, confirm, redeliver, ready, unacked} */
  let pollTimer = null, lastOverview = null;
  const overviewListeners = new Set();
  async function poll() {
    clearTimeout(pollTimer);
    if (!auth) return;
    try {
      const ov = await api('GET', '/overview');
      lastOverview = ov;
      const q = ov.queue_totals || {};
      samples.push({
        t: Date.now(), publish: rate(ov, 'publish'), deliver_get: rate(ov, 'deliver_get'),
        ack: rate(ov, 'ack'), confirm: rate(ov, 'confirm'), redeliver: rate(ov, 'redeliver'),
        ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0,
      });
      while (samples.length && samples[0].t < Date.now() - HISTORY_MS) samples.shift();
      document.getElementById('foot').textContent =
        `${ov.product_name || 'Warren'} ${ov.product_version || ''} · RabbitMQ ${ov.rabbitmq_version || ''} API · ${ov.node || ''}`;
      for (const fn of overviewListeners) fn(ov);
    } catch (e) {
      for (const fn of overviewListeners) fn(null, e);
    }
    if (auth) pollTimer = setTimeout(poll, POLL_MS);
  }

  /* A line chart of series over the last windowMs of history, in SVG. */
  function chart(series, label) {
    const W = 640, H = 180, L = 56, R = 8, T = 10, B = 22;
    const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    const legend = h('ul', { class: 'legend' });
    const el = h('div', { class: 'chart' }, svg, legend);
    let windowMs = 60 * 1000; /* as RabbitMQ's charts: the last minute unless asked */
    function draw() {
      const now = Date.now(), from = now - windowMs;
      const pts = samples.filter((s) => s.t >= from);
      let max = 0;
      for (const s of pts) for (const [k] of series) max = Math.max(max, s[k]);
      const top = max <= 0 ? 1 : niceMax(max);
      const x = (t) => L + (W - L - R) * (t - from) / windowMs;
      const y = (v) => T + (H - T - B) * (1 - v / top);
      const kids = [
        h('line', { class: 'axis', x1: L, y1: y(0), x2: W - R, y2: y(0) }),
        h('line', { class: 'axis', x1: L, y1: y(top), x2: W - R, y2: y(top) }),
        h('line', { class: 'axis', x1: L, y1: y(top / 2), x2: W - R, y2: y(top / 2) }),
        h('text', { x: L - 6, y: y(top) + 4, 'text-anchor': 'end' }, fmtAxis(top)),
        h('text', { x: L - 6, y: y(top / 2) + 4, 'text-anchor': 'end' }, fmtAxis(top / 2)),
        h('text', { x: L - 6, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
        h('text', { x: L, y: H - 5 }, `−${Math.round(windowMs / 60000)} min`),
        h('text', { x: W - R, y: H - 5, 'text-anchor': 'end' }, 'now'),
      ];
      series.forEach(([k, name], i) => {
        kids.push(h('polyline', {
          class: 's' + (i + 1), 'data-series': k,
          points: pts.map((s) => `${x(s.t).toFixed(1)},${y(s[k]).toFixed(1)}`).join(' '),
        }, h('title', {}, name)));
      });
      svg.replaceChildren(...kids);
      svg.setAttribute('data-samples', String(pts.length));
      const last = pts[pts.length - 1];
      legend.replaceChildren(...series.map(([k, name, isRate], i) => h('li', { 'data-series': k },
        h('span', { class: 'sw s' + (i + 1) }), name + ': ',
        h('strong', {}, last ? (isRate ? fmtRate(last[k]) : fmtInt(last[k])) : '–'))));
    }
    const pick = h('select', {
      'aria-label': label + ': time window', value: String(windowMs),
      on: { change: (e) => { windowMs = Number(e.target.value); draw(); } },
    }, [[60000, 'last minute'], [300000, 'last 5 minutes'], [600000, 'last 10 minutes']]
      .map(([v, t]) => h('option', { value: String(v) }, t)));
    return { el, draw, pick };
  }
  function niceMax(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  function fmtAxis(v) {
    return v >= 1e6 ? (v / 1e6) + 'M' : v >= 1e3 ? (v / 1e3) + 'k' : String(+v.toFixed(2));
  }

  /* ---- views and routing -------------------------------------------------------------------- */

  let current = null;
  /* A view: its element, whether it is still shown, and timers that stop when it goes. */
  function newView() {
    if (current) current.close();
    const timers = [];
    const v = {
      el: h('div'), alive: true, cleanup: [],
      /* fn every ms, or after the delay fn returns when that is longer. */
      every(ms, fn) {
        const loop = async () => {
          if (!v.alive) return;
          const next = await fn();
          if (v.alive) timers.push(setTimeout(loop, Math.max(ms, Number(next) || 0)));
        };
        timers.push(setTimeout(loop, ms));
      },
      close() { v.alive = false; timers.forEach(clearTimeout); v.cleanup.forEach((f) => f()); },
    };
    current = v;
    main.replaceChildren(v.el);
    return v;
  }

  const routes = [
    [/^\/login$/, loginView],
    [/^\/?$/, overviewView, 'overview'],
    [/^\/connections$/, connectionsView, 'connections'],
    [/^\/connections\/([^/]+)$/, connectionView, 'connections'],
    [/^\/channels$/, channelsView, 'channels'],
    [/^\/exchanges$/, exchangesView, 'exchanges'],
    [/^\/exchanges\/([^/]+)\/([^/]*)$/, exchangeView, 'exchanges'],
    [/^\/queues$/, queuesView, 'queues'],
    [/^\/queues\/([^/]+)\/([^/]+)$/, queueView, 'queues'],
    [/^\/admin(?:\/users)?$/, usersView, 'admin'],
    [/^\/admin\/users\/([^/]+)$/, userView, 'admin'],
    [/^\/admin\/vhosts$/, vhostsView, 'admin'],
    [/^\/admin\/permissions$/, permissionsView, 'admin'],
    [/^\/admin\/policies$/, policiesView, 'admin'],
    [/^\/admin\/definitions$/, definitionsView, 'admin'],
  ];

  /* Goes to hash, showing text (kind 'ok' or 'error') on the page it arrives at. */
  let pending = null;
  function go(hash, text, kind) {
    pending = text ? { text, kind } : null;
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  async function render() {
    const path = location.hash.replace(/^#/, '') || '/';
    if (!auth && path !== '/login') return go('#/login', pending && pending.text, pending && pending.kind);
    if (auth && path === '/login') return go('#/');
    if (pending) flash(pending.text, pending.kind);
    else flashBox.replaceChildren();
    pending = null;
    for (const [re, fn, section] of routes) {
      const m = path.match(re);
      if (!m) continue;
      for (const a of document.querySelectorAll('#nav a'))
        if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
      const v = newView();
      if (section === 'admin' && !isAdmin()) {
        add(v.el, h('h1', {}, 'Admin'),
          h('p', { class: 'msg error', id: 'not-admin' },
            'These pages are for administrators: the user ' + me.name + ' is not tagged administrator.'));
        v.el.setAttribute('data-ready', '');
        return;
      }
      try {
        await fn(v, ...m.slice(1).map(decodeURIComponent));
      } catch (e) {
        if (v.alive) add(v.el, h('p', { class: 'msg error' }, describe(e, 'show this page')));
      }
      v.el.setAttribute('data-ready', ''); /* the first load is in (tests wait for it) */
      if (v.alive && section) main.focus({ preventScroll: true });
      return;
    }
    const v = newView();
    add(v.el, h('h1', {}, 'Not found'), h('p', {}, 'There is no page ', h('code', {}, path), '. ',
      h('a', { href: '#/' }, 'Overview')));
  }
  window.addEventListener('hashchange', () => render());

  /* ---- log-in ------------------------------------------------------------------------------- */

  function loginView(v, message) {
    const user = h('input', { type: 'text', id: 'login-user', name: 'username', autocomplete: 'username', required: true });
    const pass = h('input', { type: 'password', id: 'login-pass', name: 'password', autocomplete: 'current-password' });
    const remember = h('input', { type: 'checkbox', id: 'login-remember' });
    const err = h('p', { id: 'login-error', class: 'msg error', role: 'alert', hidden: true });
    const button = h('button', { type: 'submit', id: 'login-submit' }, 'Log in');
    const form = h('form', {
      class: 'f', on: {
        submit: async (e) => {
          e.preventDefault();
          err.hidden = true;
          button.disabled = true;
          auth = credentials(user.value, pass.value);
          try {
            me = await api('GET', '/whoami');
          } catch (x) {
            auth = null;
            button.disabled = false;
            err.textContent = x.status === 401 && x.error === 'not_authorised'
              ? `Login refused: the user ${user.value} may not use the management console (it needs the management, policymaker, monitoring or administrator tag).`
              : x.status === 401 ? 'Login failed: wrong user name or password.'
                : describe(x, 'log in');
            err.hidden = false;
            pass.focus();
            return;
          }
          (remember.checked ? localStorage : sessionStorage).setItem(KEY, auth);
          loggedIn();
          go('#/');
        },
      },
    }, h('label', { for: 'login-user' }, 'User name'), user,
      h('label', { for: 'login-pass' }, 'Password'), pass,
      h('label', { class: 'row' }, remember, ' Remember me on this computer'),
      button);
    add(v.el, h('section', { class: 'login' }, h('h1', {}, 'Warren'),
      h('p', { class: 'muted' }, 'Log in with a broker user tagged management, policymaker, monitoring or administrator.'),
      err, form));
    document.getElementById('top').hidden = true;
    user.focus();
  }

  /* ---- overview ------------------------------------------------------------------------------ */

  function overviewView(v) {
    const cards = h('div', { class: 'cards', id: 'totals' });
    const queued = chart([['ready', 'Ready'], ['unacked', 'Unacked']], 'Queued messages');
    const rates = chart([['publish', 'Publish', true], ['deliver_get', 'Deliver / get', true],
      ['ack', 'Acknowledge', true], ['confirm', 'Confirm', true], ['redeliver', 'Redelivered', true]],
      'Message rates');
    const node = h('div', { id: 'node' }, h('p', { class: 'muted' }, 'Loading…'));
    const listeners = h('div', { id: 'listeners' });
    add(v.el, h('h1', {}, 'Overview'), cards,
      h('div', { class: 'grid2' },
        h('section', { id: 'chart-queued' }, h('div', { class: 'row' }, h('h2', {}, 'Queued messages'), queued.pick), queued.el),
        h('section', { id: 'chart-rates' }, h('div', { class: 'row' }, h('h2', {}, 'Message rates'), rates.pick), rates.el)),
      h('div', { class: 'grid2' },
        h('section', {}, h('h2', {}, 'Node'), node),
        h('section', {}, h('h2', {}, 'Listeners'), listeners)));
    async function update(ov, e) {
      if (!v.alive) return;
      if (!ov) {
        flash(describe(e, 'read the overview'));
        return;
      }
      const t = ov.object_totals || {}, q = ov.queue_totals || {};
      cards.replaceChildren(...[['Connections', t.connections], ['Channels', t.channels],
        ['Exchanges', t.exchanges], ['Queues', t.queues], ['Consumers', t.consumers],
        ['Messages', q.messages], ['Ready', q.messages_ready], ['Unacked', q.messages_unacknowledged]]
        .map(([l, n]) => h('div', { class: 'card', 'data-total': l.toLowerCase() }, h('span', { class: 'n' }, fmtInt(n)), h('span', { class: 'l' }, l))));
      queued.draw();
      rates.draw();
      listeners.replaceChildren(h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Protocol'), h('th', {}, 'Address'), h('th', { class: 'num' }, 'Port'))),
        h('tbody', {}, (ov.listeners || []).map((l) => h('tr', {}, h('td', {}, l.protocol),
          h('td', {}, l.ip_address), h('td', { class: 'num' }, l.port)))))));
      let n;
      try {
        n = (await api('GET', '/nodes'))[0];
      } catch (x) {
        node.replaceChildren(h('p', { class: 'muted' }, describe(x, 'read the node')));
        return;
      }
      if (!v.alive || !n) return;
      const alarms = [n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean);
      node.replaceChildren(kvTable([
        ['Name', n.name], ['Version', `${ov.product_name || 'Warren'} ${ov.product_version || ''} (RabbitMQ ${ov.rabbitmq_version} compatible)`],
        ['Uptime', fmtDuration(n.uptime || 0)],
        ['Memory', `${fmtBytes(n.mem_used)} of ${fmtBytes(n.mem_limit)} high watermark`],
        ['Disk free', n.disk_free !== undefined ? `${fmtBytes(n.disk_free)} (limit ${fmtBytes(n.disk_free_limit)})` : '–'],
        ['Alarms', alarms.length ? h('span', { class: 'alarm', id: 'alarms' }, 'Resource alarm: ' + alarms.join(', ') + ' (publishers are blocked)')
          : h('span', { id: 'alarms' }, 'none')],
        ['File descriptors', fmtInt(n.fd_total)], ['Processors', n.processors],
      ]));
    }
    overviewListeners.add(update);
    v.cleanup.push(() => overviewListeners.delete(update));
    if (lastOverview) update(lastOverview);
  }

  /* ---- tables with paging, sorting and a name filter (the API's own parameters) -------------- */

  /* cols: [title, sortKey or null, cell(row), numeric]. load(params) -> the API's paged answer. */
  function pagedTable(v, opts) {
    const st = { page: 1, size: 50, name: '', regex: false, sort: opts.sort || '', reverse: false };
    const saved = sessionStorage.getItem('warren-table-' + opts.id);
    if (saved) try { Object.assign(st, JSON.parse(saved)); } catch (e) { /* ignore */ }
    const body = h('tbody');
    const info = h('span', { class: 'muted', id: opts.id + '-count' });
    const pageLabel = h('span', { id: opts.id + '-page' });
    const prev = h('button', { type: 'button', class: 'secondary', on: { click: () => { st.page--; load(); } } }, '← Previous');
    const next = h('button', { type: 'button', class: 'secondary', on: { click: () => { st.page++; load(); } } }, 'Next →');
    const filter = h('input', { type: 'search', id: opts.id + '-filter', placeholder: 'Filter by name', 'aria-label': 'Filter by name', value: st.name });
    const regex = h('input', { type: 'checkbox', id: opts.id + '-regex', checked: st.regex });
    const size = h('select', { 'aria-label': 'Rows per page', value: String(st.size) },
      [20, 50, 100, 500].map((n) => h('option', { value: String(n) }, n + ' per page')));
    let debounce = null;
    filter.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { st.name = filter.value; st.page = 1; load(); }, 300);
    });
    regex.addEventListener('change', () => { st.regex = regex.checked; st.page = 1; load(); });
    size.addEventListener('change', () => { st.size = Number(size.value); st.page = 1; load(); });
    const heads = opts.cols.map(([title, key, , num]) => {
      const th = h('th', { scope: 'col', class: num ? 'num' : null });
      if (key) {
        add(th, h('button', {
          type: 'button', class: 'sort', on: {
            click: () => {
              st.reverse = st.sort === key ? !st.reverse : false;
              st.sort = key;
              load();
            },
          },
        }, title));
        th.dataset.key = key;
      } else {
        add(th, title);
      }
      return th;
    });
    const table = h('table', { id: opts.id }, h('thead', {}, h('tr', {}, heads)), body);
    const el = h('div', {},
      h('div', { class: 'row' }, opts.controls || null, filter, h('label', { for: opts.id + '-regex' }, regex, ' regex'), size),
      h('div', { class: 'scroll' }, table),
      h('div', { class: 'pager' }, prev, pageLabel, next, info));
    /* Returns when to refresh next: a request that took the broker long (sorting 100,000
     * queues by depth) is repeated 20 times as far apart, so a tab left open costs the broker's
     * loop at most 5% of its time. */
    async function load() {
      const began = performance.now();
      await loadPage();
      return 20 * (performance.now() - began);
    }
    async function loadPage() {
      sessionStorage.setItem('warren-table-' + opts.id, JSON.stringify(st));
      const p = new URLSearchParams({ page: st.page, page_size: st.size });
      if (st.name) { p.set('name', st.name); p.set('use_regex', st.regex ? 'true' : 'false'); }
      if (st.sort) { p.set('sort', st.sort); p.set('sort_reverse', st.reverse ? 'true' : 'false'); }
      let r;
      try {
        r = await opts.load(p.toString());
      } catch (e) {
        if (v.alive) flash(describe(e, 'list ' + opts.what));
        return;
      }
      if (!v.alive) return;
      if (r.page_count && st.page > r.page_count) { st.page = r.page_count; return loadPage(); }
      for (const th of heads)
        if (th.dataset.key === st.sort) th.setAttribute('aria-sort', st.reverse ? 'descending' : 'ascending');
        else th.removeAttribute('aria-sort');
      body.replaceChildren(...r.items.map((row) => h('tr', {},
        opts.cols.map(([, , cell, num]) => h('td', { class: num ? 'num' : null }, cell(row))))));
      if (!r.items.length)
        body.append(h('tr', {}, h('td', { colspan: opts.cols.length, class: 'muted' },
          st.name ? `No ${opts.what} match “${st.name}”.` : `No ${opts.what}.`)));
      pageLabel.textContent = `Page ${r.page} of ${Math.max(1, r.page_count)}`;
      info.textContent = `${fmtInt(r.filtered_count)} of ${fmtInt(r.total_count)} ${opts.what}` +
        (r.filtered_count !== r.total_count ? ' match' : '');
      prev.disabled = r.page <= 1;
      next.disabled = r.page >= r.page_count;
    }
    return { el, load, st };
  }

  /* A vhost picker: "All virtual hosts" (value "") and each vhost the user sees. */
  async function vhostSelect(id, withAll, onChange) {
    const list = await api('GET', '/vhosts');
    const keep = sessionStorage.getItem('warren-vhost') || '';
    const sel = h('select', { id, 'aria-label': 'Virtual host' },
      withAll ? h('option', { value: '' }, 'All virtual hosts') : null,
      list.map((x) => h('option', { value: x.name }, x.name)));
    if (withAll && list.some((x) => x.name === keep)) sel.value = keep;
    if (!withAll && list.some((x) => x.name === '/')) sel.value = '/';
    if (onChange) sel.addEventListener('change', () => { sessionStorage.setItem('warren-vhost', sel.value); onChange(); });
    return sel;
  }

  /* A button that asks again before it acts (no modal dialog: the question replaces it). */
  function confirmButton(label, question, fn, id) {
    const wrap = h('span', { class: 'row' });
    const first = h('button', { type: 'button', class: 'danger', id, on: { click: () => ask() } }, label);
    function ask() {
      const yes = h('button', {
        type: 'button', class: 'danger', id: id ? id + '-confirm' : null,
        on: { click: async () => { yes.disabled = true; await fn(); wrap.replaceChildren(first); } },
      }, 'Yes, ' + label.toLowerCase());
      const no = h('button', { type: 'button', class: 'secondary', on: { click: () => { wrap.replaceChildren(first); first.focus(); } } }, 'Cancel');
      wrap.replaceChildren(h('span', {}, question), yes, no);
      yes.focus();
    }
    wrap.append(first);
    return wrap;
  }

  /* ---- queues ------------------------------------------------------------------------------- */

  const qLink = (q) => h('a', { href: `#/queues/${enc(q.vhost)}/${enc(q.name)}` }, q.name);
  const xLink = (vh, name) => h('a', { href: `#/exchanges/${enc(vh)}/${enc(name)}` }, name || '(AMQP default)');

  function features(o) {
    const f = [];
    if (o.durable) f.push('D');
    if (o.auto_delete) f.push('AD');
    if (o.exclusive) f.push('Excl');
    if (o.internal) f.push('I');
    for (const k of Object.keys(o.arguments || {})) f.push(k.replace(/^x-/, ''));
    return f.map((t) => h('span', { class: 'tag', title: t === 'D' ? 'durable' : t === 'AD' ? 'auto-delete' : t }, t));
  }

  async function queuesView(v) {
    const vsel = await vhostSelect('queues-vhost', true, () => t.load());
    if (!v.alive) return;
    const t = pagedTable(v, {
      id: 'queues', what: 'queues', controls: vsel,
      load: (p) => api('GET', '/queues' + (vsel.value ? '/' + enc(vsel.value) : '') + '?' + p),
      cols: [
        ['Virtual host', 'vhost', (q) => q.vhost],
        ['Name', 'name', qLink],
        ['Type', 'type', (q) => q.type || 'classic'],
        ['Features', null, features],
        ['Policy', 'policy', (q) => q.policy || ''],
        ['State', 'state', (q) => q.state],
        ['Ready', 'messages_ready', (q) => fmtInt(q.messages_ready), true],
        ['Unacked', 'messages_unacknowledged', (q) => fmtInt(q.messages_unacknowledged), true],
        ['Total', 'messages', (q) => fmtInt(q.messages), true],
        ['Consumers', 'consumers', (q) => fmtInt(q.consumers), true],
        ['Incoming', null, (q) => fmtRate(rate(q, 'publish')), true],
        ['Deliver / get', null, (q) => fmtRate(rate(q, 'deliver_get')), true],
        ['Ack', null, (q) => fmtRate(rate(q, 'ack')), true],
      ],
    });
    add(v.el, h('h1', {}, 'Queues'), h('section', {}, t.el), await addQueueForm(v, () => t.load()));
    await t.load();
    v.every(POLL_MS, t.load);
  }

  async function addQueueForm(v, done) {
    const vsel = await vhostSelect('new-queue-vhost', false);
    const name = h('input', { type: 'text', id: 'new-queue-name', required: true });
    const durable = h('select', { id: 'new-queue-durable' }, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
    const autoDelete = h('select', { id: 'new-queue-autodelete' }, h('option', { value: 'false' }, 'No'), h('option', { value: 'true' }, 'Yes'));
    const args = h('textarea', { id: 'new-queue-args', placeholder: 'x-max-length = 1000\nx-message-ttl = 60000\nx-dead-letter-exchange = dlx' });
    return h('details', { class: 'panel', id: 'add-queue' }, h('summary', {}, 'Add a queue'),
      h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`declare the queue ${name.value}`, async () => {
              const body = { durable: durable.value === 'true', auto_delete: autoDelete.value === 'true', arguments: parseLines(args.value, 'Arguments') };
              await api('PUT', `/queues/${enc(vsel.value)}/${enc(name.value)}`, body);
              ok(`Queue ${name.value} declared in virtual host ${vsel.value}.`);
              name.value = '';
              if (v.alive) await done();
            });
          },
        },
      }, h('label', { for: 'new-queue-vhost' }, 'Virtual host'), vsel,
        h('label', { for: 'new-queue-name' }, 'Name'), name,
        h('label', { for: 'new-queue-durable' }, 'Durability'), durable,
        h('label', { for: 'new-queue-autodelete' }, 'Auto delete'), autoDelete,
        h('label', { for: 'new-queue-args' }, 'Arguments'), args,
        h('span'), h('button', { type: 'submit', id: 'new-queue-submit' }, 'Add queue')));
  }

  async function queueView(v, vhost, name) {
    const path = `/queues/${enc(vhost)}/${enc(name)}`;
    const stats = h('div', { id: 'queue-stats' });
    const consumers = h('div', { id: 'queue-consumers' });
    const bindings = h('div', { id: 'queue-bindings' });
    async function refresh() {
      let q;
      try {
        q = await api('GET', path);
      } catch (e) {
        if (v.alive) stats.replaceChildren(h('p', { class: 'msg error' }, describe(e, `read the queue ${name}`)));
        return;
      }
      if (!v.alive) return;
      stats.replaceChildren(h('div', { class: 'cards' },
        [['Ready', q.messages_ready], ['Unacked', q.messages_unacknowledged], ['Total', q.messages],
          ['Consumers', q.consumers]].map(([l, n]) => h('div', { class: 'card', 'data-total': l.toLowerCase() }, h('span', { class: 'n' }, fmtInt(n)), h('span', { class: 'l' }, l)))),
      kvTable([
        ['Virtual host', q.vhost], ['Type', q.type || 'classic'], ['State', q.state],
        ['Features', features(q)],
        ['Arguments', argsView(q.arguments)],
        ['Policy', q.policy || h('span', { class: 'muted' }, 'none')],
        ['Operator policy', q.operator_policy || h('span', { class: 'muted' }, 'none')],
        ['Effective policy definition', argsView(q.effective_policy_definition)],
        ['Message bytes', fmtBytes(q.message_bytes)],
        ['Rates', `publish ${fmtRate(rate(q, 'publish'))}, deliver/get ${fmtRate(rate(q, 'deliver_get'))}, ack ${fmtRate(rate(q, 'ack'))}, redeliver ${fmtRate(rate(q, 'redeliver'))}`],
        q.exclusive_consumer_tag && ['Exclusive consumer', q.exclusive_consumer_tag],
        q.idle_since && ['Idle since', q.idle_since],
      ]));
      try {
        const all = await api('GET', `/consumers/${enc(vhost)}`);
        const mine = all.filter((c) => c.queue && c.queue.name === name);
        if (!v.alive) return;
        consumers.replaceChildren(mine.length ? h('div', { class: 'scroll' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Channel', 'Consumer tag', 'Ack required', 'Exclusive', 'Prefetch', 'Status'].map((x) => h('th', { scope: 'col' }, x)))),
          h('tbody', {}, mine.map((c) => h('tr', {},
            h('td', {}, h('a', { href: '#/connections/' + enc(c.channel_details.connection_name) }, c.channel_details.name)),
            h('td', {}, c.consumer_tag), h('td', {}, c.ack_required ? 'yes' : 'no'),
            h('td', {}, c.exclusive ? 'yes' : 'no'), h('td', {}, fmtInt(c.prefetch_count)),
            h('td', {}, c.activity_status || (c.active ? 'up' : 'waiting'))))))) : h('p', { class: 'muted' }, 'No consumers.'));
      } catch (e) {
        consumers.replaceChildren(h('p', { class: 'muted' }, describe(e, 'list the consumers')));
      }
    }
    async function loadBindings() {
      let list;
      try {
        list = await api('GET', path + '/bindings');
      } catch (e) {
        bindings.replaceChildren(h('p', { class: 'msg error' }, describe(e, 'list the bindings')));
        return;
      }
      if (!v.alive) return;
      bindings.replaceChildren(bindingTable(list, 'source', vhost, loadBindings));
    }
    add(v.el, h('p', { class: 'muted' }, h('a', { href: '#/queues' }, 'Queues'), ' / ', vhost),
      h('h1', {}, 'Queue ', h('span', { id: 'queue-name' }, name)),
      h('section', {}, h('h2', {}, 'Details'), stats),
      h('section', {}, h('h2', {}, 'Consumers'), consumers),
      h('section', {}, h('h2', {}, 'Bindings'), bindings,
        bindForm(vhost, 'from', (src, rk, args) => api('POST', `/bindings/${enc(vhost)}/e/${enc(src)}/q/${enc(name)}`, { routing_key: rk, arguments: args }), loadBindings)),
      getMessagesPanel(vhost, name, refresh),
      publishPanel(vhost, '', name, false, refresh),
      h('section', {}, h('h2', {}, 'Purge and delete'),
        h('div', { class: 'row' },
          confirmButton('Purge', `Remove every ready message of ${name}?`, () => attempt(`purge ${name}`, async () => {
            await api('DELETE', path + '/contents');
            ok(`Queue ${name} purged.`);
            await refresh();
          }), 'queue-purge'),
          confirmButton('Delete', `Delete the queue ${name} and its messages?`, () => attempt(`delete ${name}`, async () => {
            await api('DELETE', path);
            go('#/queues', `Queue ${name} deleted.`, 'ok');
          }), 'queue-delete'))));
    await Promise.all([refresh(), loadBindings()]);
    v.every(POLL_MS, refresh);
  }

  /* Bindings of a queue (other = 'source') or of an exchange's side. */
  function bindingTable(list, other, vhost, reload) {
    if (!list.length) return h('p', { class: 'muted' }, 'No bindings.');
    return h('div', { class: 'scroll' }, h('table', { class: 'bindings' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, other === 'source' ? 'From exchange' : 'To'), h('th', { scope: 'col' }, 'Routing key'), h('th', { scope: 'col' }, 'Arguments'), h('th', {}, ''))),
      h('tbody', {}, list.map((b) => {
        const isDefault = b.source === '';
        const target = other === 'source' ? xLink(vhost, b.source)
          : b.destination_type === 'queue' ? qLink({ vhost, name: b.destination })
            : h('span', {}, 'exchange ', xLink(vhost, b.destination));
        return h('tr', {}, h('td', {}, target), h('td', {}, h('code', {}, b.routing_key)),
          h('td', {}, Object.keys(b.arguments || {}).length ? h('code', {}, JSON.stringify(b.arguments)) : ''),
          h('td', {}, isDefault ? h('span', { class: 'muted' }, 'default binding') : h('button', {
            type: 'button', class: 'secondary', on: {
              click: () => attempt('remove the binding', async () => {
                await api('DELETE', `/bindings/${enc(vhost)}/e/${enc(b.source)}/${b.destination_type === 'queue' ? 'q' : 'e'}/${enc(b.destination)}/${enc(b.properties_key)}`);
                ok('Binding removed.');
                await reload();
              }),
            },
          }, 'Unbind')));
      }))));
  }

  /* A form that binds: "from" asks for the source exchange, "to" for a destination. */
  function bindForm(vhost, dir, bind, reload) {
    const kind = h('select', { 'aria-label': 'Destination type' }, h('option', { value: 'q' }, 'To queue'), h('option', { value: 'e' }, 'To exchange'));
    const other = h('input', { type: 'text', id: 'bind-' + dir, required: true, 'aria-label': dir === 'from' ? 'Source exchange' : 'Destination name' });
    const rk = h('input', { type: 'text', id: 'bind-key' });
    const args = h('textarea', { id: 'bind-args', placeholder: 'x-match = all' });
    return h('details', { class: 'panel' }, h('summary', {}, dir === 'from' ? 'Add a binding to this queue' : 'Add a binding from this exchange'),
      h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt('bind', async () => {
              await bind(other.value, rk.value, parseLines(args.value, 'Arguments'), kind.value);
              ok('Bound.');
              await reload();
            });
          },
        },
      }, dir === 'from' ? [h('label', { for: 'bind-from' }, 'From exchange'), other]
        : [kind, other],
      h('label', { for: 'bind-key' }, 'Routing key'), rk,
      h('label', { for: 'bind-args' }, 'Arguments'), args,
      h('span'), h('button', { type: 'submit', id: 'bind-submit' }, 'Bind')));
  }

  function getMessagesPanel(vhost, name, refresh) {
    const mode = h('select', { id: 'get-ackmode' },
      h('option', { value: 'ack_requeue_true' }, 'Nack, requeue (messages stay)'),
      h('option', { value: 'reject_requeue_true' }, 'Reject, requeue'),
      h('option', { value: 'ack_requeue_false' }, 'Ack, remove from the queue'),
      h('option', { value: 'reject_requeue_false' }, 'Reject, do not requeue'));
    const encoding = h('select', { id: 'get-encoding' }, h('option', { value: 'auto' }, 'Text when possible, else base64'), h('option', { value: 'base64' }, 'Base64'));
    const count = h('input', { type: 'number', id: 'get-count', min: 1, max: 1000, value: '1' });
    const out = h('div', { id: 'get-result', 'aria-live': 'polite' });
    return h('details', { class: 'panel', id: 'get-messages' }, h('summary', {}, 'Get messages'),
      h('p', { class: 'muted' }, 'Getting a message is destructive unless it is requeued: it takes the message from the queue and puts it back at the head.'),
      h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt('get messages', async () => {
              const list = await api('POST', `/queues/${enc(vhost)}/${enc(name)}/get`,
                { count: Number(count.value), ackmode: mode.value, encoding: encoding.value, truncate: 50000 });
              out.replaceChildren(...(list.length ? list.map((m, i) => h('div', { class: 'message' },
                h('h3', {}, `Message ${i + 1}`),
                kvTable([['Exchange', m.exchange || '(AMQP default)'], ['Routing key', m.routing_key],
                  ['Redelivered', m.redelivered ? 'yes' : 'no'], ['Remaining in queue', fmtInt(m.message_count)],
                  ['Properties', Array.isArray(m.properties) && !m.properties.length ? h('span', { class: 'muted' }, 'none') : argsView(m.properties)],
                  ['Payload', h('span', {}, `${fmtInt(m.payload_bytes)} bytes, encoding ${m.payload_encoding}`)]]),
                h('pre', { class: 'payload' }, m.payload))) : [h('p', { class: 'muted', id: 'get-empty' }, 'The queue is empty.')]));
              await refresh();
            });
          },
        },
      }, h('label', { for: 'get-ackmode' }, 'Ack mode'), mode,
        h('label', { for: 'get-encoding' }, 'Encoding'), encoding,
        h('label', { for: 'get-count' }, 'Messages'), count,
        h('span'), h('button', { type: 'submit', id: 'get-submit' }, 'Get messages')), out);
  }

  /* Publish to exchange (the default one for a queue, with the queue's name as routing key). */
  function publishPanel(vhost, exchange, fixedKey, open, after) {
    const rk = h('input', { type: 'text', id: 'pub-key', value: fixedKey || '' });
    const mode = h('select', { id: 'pub-mode' }, h('option', { value: '2' }, '2 – persistent'), h('option', { value: '1' }, '1 – non-persistent'));
    const headers = h('textarea', { id: 'pub-headers', placeholder: 'tenant = acme\nattempt = 1' });
    const props = h('textarea', { id: 'pub-props', placeholder: 'content_type = text/plain\ncorrelation_id = 42\nmessage_id = m-1\nexpiration = 60000\npriority = 5\nreply_to = replies' });
    const enc64 = h('select', { id: 'pub-encoding' }, h('option', { value: 'string' }, 'String'), h('option', { value: 'base64' }, 'Base64'));
    const payload = h('textarea', { id: 'pub-payload' });
    return h('details', { class: 'panel', id: 'publish', open: open || null }, h('summary', {}, 'Publish a message'),
      h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt('publish', async () => {
              const properties = parseLines(props.value, 'Properties');
              properties.delivery_mode = Number(mode.value);
              const hd = parseLines(headers.value, 'Headers');
              if (Object.keys(hd).length) properties.headers = hd;
              for (const k of ['correlation_id', 'message_id', 'expiration', 'reply_to', 'type', 'user_id', 'app_id'])
                if (k in properties) properties[k] = String(properties[k]);
              const r = await api('POST', `/exchanges/${enc(vhost)}/${enc(exchange || 'amq.default')}/publish`,
                { properties, routing_key: rk.value, payload: payload.value, payload_encoding: enc64.value });
              if (r && r.routed) ok('Message published and routed.');
              else flash('Message published, but not routed: no queue is bound with that routing key.');
              if (after) await after();
            });
          },
        },
      }, fixedKey !== undefined && exchange === '' && fixedKey
        ? [h('label', {}, 'Routing key'), h('span', {}, h('code', {}, fixedKey), ' (the default exchange)')]
        : [h('label', { for: 'pub-key' }, 'Routing key'), rk],
      h('label', { for: 'pub-mode' }, 'Delivery mode'), mode,
      h('label', { for: 'pub-headers' }, 'Headers'), headers,
      h('label', { for: 'pub-props' }, 'Properties'), props,
      h('label', { for: 'pub-encoding' }, 'Payload encoding'), enc64,
      h('label', { for: 'pub-payload' }, 'Payload'), payload,
      h('span'), h('button', { type: 'submit', id: 'pub-submit' }, 'Publish message')));
  }

  /* ---- exchanges --------------------------------------------------------------------------- */

  async function exchangesView(v) {
    const vsel = await vhostSelect('exchanges-vhost', true, () => t.load());
    if (!v.alive) return;
    const t = pagedTable(v, {
      id: 'exchanges', what: 'exchanges', controls: vsel,
      load: (p) => api('GET', '/exchanges' + (vsel.value ? '/' + enc(vsel.value) : '') + '?' + p),
      cols: [
        ['Virtual host', 'vhost', (x) => x.vhost],
        ['Name', 'name', (x) => xLink(x.vhost, x.name)],
        ['Type', 'type', (x) => x.type],
        ['Features', null, features],
        ['Policy', 'policy', (x) => x.policy || ''],
        ['In', null, (x) => fmtRate(rate(x, 'publish_in')), true],
        ['Out', null, (x) => fmtRate(rate(x, 'publish_out')), true],
      ],
    });
    const xv = await vhostSelect('new-exchange-vhost', false);
    const name = h('input', { type: 'text', id: 'new-exchange-name', required: true });
    const type = h('select', { id: 'new-exchange-type' }, ['direct', 'fanout', 'topic', 'headers'].map((x) => h('option', { value: x }, x)));
    const durable = h('select', { id: 'new-exchange-durable' }, h('option', { value: 'true' }, 'Durable'), h('option', { value: 'false' }, 'Transient'));
    const internal = h('select', { id: 'new-exchange-internal' }, h('option', { value: 'false' }, 'No'), h('option', { value: 'true' }, 'Yes'));
    const args = h('textarea', { id: 'new-exchange-args', placeholder: 'alternate-exchange = unrouted' });
    add(v.el, h('h1', {}, 'Exchanges'), h('section', {}, t.el),
      h('details', { class: 'panel' }, h('summary', {}, 'Add an exchange'), h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`declare the exchange ${name.value}`, async () => {
              await api('PUT', `/exchanges/${enc(xv.value)}/${enc(name.value)}`, { type: type.value, durable: durable.value === 'true', internal: internal.value === 'true', auto_delete: false, arguments: parseLines(args.value, 'Arguments') });
              ok(`Exchange ${name.value} declared.`);
              name.value = '';
              await t.load();
            });
          },
        },
      }, h('label', { for: 'new-exchange-vhost' }, 'Virtual host'), xv,
      h('label', { for: 'new-exchange-name' }, 'Name'), name,
      h('label', { for: 'new-exchange-type' }, 'Type'), type,
      h('label', { for: 'new-exchange-durable' }, 'Durability'), durable,
      h('label', { for: 'new-exchange-internal' }, 'Internal'), internal,
      h('label', { for: 'new-exchange-args' }, 'Arguments'), args,
      h('span'), h('button', { type: 'submit', id: 'new-exchange-submit' }, 'Add exchange'))));
    await t.load();
    v.every(POLL_MS, t.load);
  }

  async function exchangeView(v, vhost, name) {
    const xname = name || 'amq.default';
    const path = `/exchanges/${enc(vhost)}/${enc(xname)}`;
    const x = await api('GET', path);
    if (!v.alive) return;
    const out = h('div', { id: 'exchange-bindings' });
    const inc = h('div');
    async function loadBindings() {
      try {
        const [src, dst] = await Promise.all([api('GET', path + '/bindings/source'), api('GET', path + '/bindings/destination')]);
        if (!v.alive) return;
        out.replaceChildren(bindingTable(src, 'destination', vhost, loadBindings));
        inc.replaceChildren(dst.length ? bindingTable(dst, 'source', vhost, loadBindings) : h('p', { class: 'muted' }, 'No exchange is bound to this one.'));
      } catch (e) {
        out.replaceChildren(h('p', { class: 'msg error' }, describe(e, 'list the bindings')));
      }
    }
    add(v.el, h('p', { class: 'muted' }, h('a', { href: '#/exchanges' }, 'Exchanges'), ' / ', vhost),
      h('h1', {}, 'Exchange ', h('span', { id: 'exchange-name' }, name || '(AMQP default)')),
      h('section', {}, h('h2', {}, 'Details'), kvTable([
        ['Virtual host', x.vhost], ['Type', x.type], ['Features', features(x)],
        ['Arguments', argsView(x.arguments)], ['Policy', x.policy || h('span', { class: 'muted' }, 'none')],
        ['Rates', `in ${fmtRate(rate(x, 'publish_in'))}, out ${fmtRate(rate(x, 'publish_out'))}`],
      ])),
      name ? [h('section', {}, h('h2', {}, 'Bindings from this exchange'), out,
        bindForm(vhost, 'to', (dest, rk, args, kind) => api('POST', `/bindings/${enc(vhost)}/e/${enc(name)}/${kind}/${enc(dest)}`, { routing_key: rk, arguments: args }), loadBindings)),
      h('section', {}, h('h2', {}, 'Bindings to this exchange'), inc)] : null,
      publishPanel(vhost, xname, undefined, true),
      name && !name.startsWith('amq.') ? h('section', {}, h('h2', {}, 'Delete'),
        confirmButton('Delete', `Delete the exchange ${name} and its bindings?`, () => attempt(`delete ${name}`, async () => {
          await api('DELETE', path);
          go('#/exchanges', `Exchange ${name} deleted.`, 'ok');
        }), 'exchange-delete')) : null);
    if (name) await loadBindings();
  }

  /* ---- connections and channels ---------------------------------------------------------- */

  /* Client-side rates from two readings of a channel's message counts (the API has counts
   * only for channels). */
  const chanCounts = new Map();
  function channelRates(c) {
    const now = Date.now(), prev = chanCounts.get(c.name), ms = c.message_stats || {};
    chanCounts.set(c.name, { t: now, publish: ms.publish || 0, deliver: ms.deliver_get || 0 });
    if (chanCounts.size > 5000) chanCounts.delete(chanCounts.keys().next().value);
    if (!prev || now - prev.t < 500) return null;
    const dt = (now - prev.t) / 1000;
    return { publish: Math.max(0, ((ms.publish || 0) - prev.publish) / dt), deliver: Math.max(0, ((ms.deliver_get || 0) - prev.deliver) / dt) };
  }

  /* Client-side rates from the octet counters between two refreshes. */
  const octets = new Map();
  function octetRates(c) {
    const now = Date.now(), prev = octets.get(c.name);
    octets.set(c.name, { t: now, recv: c.recv_oct, send: c.send_oct });
    if (octets.size > 5000) octets.delete(octets.keys().next().value);
    if (!prev || now - prev.t < 500) return null;
    const dt = (now - prev.t) / 1000;
    return { recv: Math.max(0, (c.recv_oct - prev.recv) / dt), send: Math.max(0, (c.send_oct - prev.send) / dt) };
  }
  const tls = (c) => c.ssl ? `${c.ssl_protocol || 'TLS'}${c.ssl_cipher ? ' ' + c.ssl_cipher : ''}` : 'no';
  const client = (c) => {
    const p = c.client_properties || {};
    return [p.product, p.version].filter(Boolean).join(' ') || '–';
  };

  async function connectionsView(v) {
    const t = pagedTable(v, {
      id: 'connections', what: 'connections',
      load: (p) => api('GET', '/connections?' + p),
      cols: [
        ['Name', 'name', (c) => h('a', { href: '#/connections/' + enc(c.name) }, c.user_provided_name ? `${c.user_provided_name} (${c.name})` : c.name)],
        ['User', 'user', (c) => c.user],
        ['Virtual host', 'vhost', (c) => c.vhost],
        ['Client', null, client],
        ['TLS', 'ssl', tls],
        ['Protocol', 'protocol', (c) => c.protocol],
        ['State', 'state', (c) => c.state],
        ['Channels', 'channels', (c) => fmtInt(c.channels), true],
        ['From client', null, (c) => { const r = octetRates(c); c._r = r; return r ? fmtBytes(Math.round(r.recv)) + '/s' : '–'; }, true],
        ['To client', null, (c) => c._r ? fmtBytes(Math.round(c._r.send)) + '/s' : '–', true],
      ],
    });
    add(v.el, h('h1', {}, 'Connections'), h('section', {}, t.el));
    await t.load();
    v.every(POLL_MS, t.load);
  }

  async function connectionView(v, name) {
    const path = '/connections/' + enc(name);
    const details = h('div'), chans = h('div');
    async function refresh() {
      let c, ch;
      try {
        [c, ch] = await Promise.all([api('GET', path), api('GET', path + '/channels')]);
      } catch (e) {
        if (v.alive) details.replaceChildren(h('p', { class: 'msg error' }, describe(e, 'read the connection')));
        return;
      }
      if (!v.alive) return;
      const r = octetRates(c);
      details.replaceChildren(kvTable([
        ['User', c.user], ['Virtual host', c.vhost], ['State', c.state], ['Protocol', c.protocol],
        ['Authentication', c.auth_mechanism], ['Client address', `${c.peer_host}:${c.peer_port}`],
        ['Server address', `${c.host}:${c.port}`], ['TLS', tls(c)],
        c.peer_cert_subject && ['Peer certificate', `${c.peer_cert_subject} (issuer ${c.peer_cert_issuer})`],
        ['Connected at', c.connected_at ? new Date(c.connected_at).toISOString() : '–'],
        ['Heartbeat', c.timeout + ' s'], ['Frame max', fmtInt(c.frame_max)], ['Channel max', fmtInt(c.channel_max)],
        ['Received', `${fmtBytes(c.recv_oct)}${r ? ', ' + fmtBytes(Math.round(r.recv)) + '/s' : ''}`],
        ['Sent', `${fmtBytes(c.send_oct)}${r ? ', ' + fmtBytes(Math.round(r.send)) + '/s' : ''}`],
        ['Client properties', clientProps(c.client_properties || {})],
      ]));
      chans.replaceChildren(channelTable(ch));
    }
    const reason = h('input', { type: 'text', id: 'close-reason', value: 'Closed via the management console' });
    add(v.el, h('p', { class: 'muted' }, h('a', { href: '#/connections' }, 'Connections')),
      h('h1', {}, 'Connection ', name),
      h('section', {}, h('h2', {}, 'Details'), details),
      h('section', {}, h('h2', {}, 'Channels'), chans),
      h('section', {}, h('h2', {}, 'Close this connection'),
        h('div', { class: 'row' }, h('label', { for: 'close-reason' }, 'Reason'), reason,
          confirmButton('Close', 'Close the connection (the client sees 320 CONNECTION_FORCED)?', () => attempt('close the connection', async () => {
            await api('DELETE', path, undefined, { 'X-Reason': reason.value });
            go('#/connections', `Connection ${name} closed.`, 'ok');
          }), 'connection-close'))));
    await refresh();
    v.every(POLL_MS, refresh);
  }
  function clientProps(p) {
    return kvTable(Object.keys(p).sort().map((k) => [k, p[k] && typeof p[k] === 'object'
      ? (k === 'capabilities' ? Object.keys(p[k]).filter((c) => p[k][c]).map((c) => h('span', { class: 'tag' }, c)) : JSON.stringify(p[k]))
      : String(p[k])]));
  }
  function channelTable(list) {
    if (!list.length) return h('p', { class: 'muted' }, 'No channels.');
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Channel', 'User', 'Mode', 'State', 'Prefetch', 'Unacked', 'Unconfirmed', 'Consumers', 'Published', 'Delivered'].map((x, i) => h('th', { scope: 'col', class: i > 3 ? 'num' : null }, x)))),
      h('tbody', {}, list.map((c) => h('tr', {},
        h('td', {}, h('a', { href: '#/connections/' + enc(c.connection_details.name) }, c.name)),
        h('td', {}, c.user), h('td', {}, [c.confirm && 'confirm', c.transactional && 'transactional'].filter(Boolean).join(', ') || '–'),
        h('td', {}, c.state), h('td', { class: 'num' }, fmtInt(c.prefetch_count)),
        h('td', { class: 'num' }, fmtInt(c.messages_unacknowledged)), h('td', { class: 'num' }, fmtInt(c.messages_unconfirmed)),
        h('td', { class: 'num' }, fmtInt(c.consumer_count)),
        h('td', { class: 'num' }, fmtInt((c.message_stats || {}).publish)),
        h('td', { class: 'num' }, fmtInt((c.message_stats || {}).deliver_get)))))));
  }

  async function channelsView(v) {
    const t = pagedTable(v, {
      id: 'channels', what: 'channels',
      load: (p) => api('GET', '/channels?' + p),
      cols: [
        ['Channel', 'name', (c) => h('a', { href: '#/connections/' + enc(c.connection_details.name) }, c.name)],
        ['User', 'user', (c) => c.user], ['Virtual host', 'vhost', (c) => c.vhost],
        ['Mode', null, (c) => [c.confirm && 'confirm', c.transactional && 'transactional'].filter(Boolean).join(', ') || '–'],
        ['State', 'state', (c) => c.state],
        ['Prefetch', 'prefetch_count', (c) => fmtInt(c.prefetch_count), true],
        ['Unacked', 'messages_unacknowledged', (c) => fmtInt(c.messages_unacknowledged), true],
        ['Unconfirmed', 'messages_unconfirmed', (c) => fmtInt(c.messages_unconfirmed), true],
        ['Consumers', 'consumer_count', (c) => fmtInt(c.consumer_count), true],
        ['Publish', null, (c) => { c._r = channelRates(c); return c._r ? fmtRate(c._r.publish) : '–'; }, true],
        ['Deliver / get', null, (c) => c._r ? fmtRate(c._r.deliver) : '–', true],
      ],
    });
    add(v.el, h('h1', {}, 'Channels'), h('p', { class: 'muted' }, 'Rates appear from the second refresh (every 5 s) on.'), h('section', {}, t.el));
    await t.load();
    v.every(POLL_MS, t.load);
  }

  /* ---- admin ---------------------------------------------------------------------------------- */

  function adminTabs(here) {
    return h('nav', { class: 'tabs', 'aria-label': 'Admin' }, [['users', 'Users'], ['vhosts', 'Virtual hosts'],
      ['permissions', 'Permissions'], ['policies', 'Policies'], ['definitions', 'Definitions']]
      .map(([k, t]) => h('a', { href: '#/admin/' + k, 'aria-current': k === here ? 'page' : null }, t)));
  }
  const TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];
  function tagPicker(id, value) {
    const input = h('input', { type: 'text', id, value: value || '', placeholder: 'comma-separated' });
    const quick = TAGS.map((t) => h('button', {
      type: 'button', class: 'secondary', on: {
        click: () => {
          const have = input.value.split(',').map((s) => s.trim()).filter(Boolean);
          if (!have.includes(t)) have.push(t);
          input.value = have.join(',');
        },
      },
    }, t));
    return [input, h('span', { class: 'row full' }, 'Add: ', quick)];
  }

  async function usersView(v) {
    const body = h('div', { id: 'users' });
    async function load() {
      const [users, perms] = await Promise.all([api('GET', '/users'), api('GET', '/permissions')]);
      if (!v.alive) return;
      body.replaceChildren(h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Tags', 'Can access virtual hosts', 'Has password'].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, users.map((u) => h('tr', {},
          h('td', {}, h('a', { href: '#/admin/users/' + enc(u.name) }, u.name)), h('td', {}, tags(u.tags)),
          h('td', {}, perms.filter((p) => p.user === u.name).map((p) => p.vhost).join(', ') || h('span', { class: 'muted' }, 'no access')),
          h('td', {}, u.password_hash ? 'yes' : 'no')))))));
    }
    const name = h('input', { type: 'text', id: 'new-user-name', required: true, autocomplete: 'off' });
    const pass = h('input', { type: 'password', id: 'new-user-pass', autocomplete: 'new-password' });
    const [tagIn, tagQuick] = tagPicker('new-user-tags', '');
    add(v.el, h('h1', {}, 'Admin'), adminTabs('users'), h('section', {}, h('h2', {}, 'Users'), body),
      h('details', { class: 'panel', id: 'add-user' }, h('summary', {}, 'Add a user'), h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`add the user ${name.value}`, async () => {
              const b = { tags: tagIn.value };
              if (pass.value) b.password = pass.value; else b.password_hash = '';
              await api('PUT', '/users/' + enc(name.value), b);
              ok(`User ${name.value} added. Give it permissions on a virtual host to let it work there.`);
              name.value = pass.value = tagIn.value = '';
              await load();
            });
          },
        },
      }, h('label', { for: 'new-user-name' }, 'User name'), name,
      h('label', { for: 'new-user-pass' }, 'Password'), pass,
      h('label', { for: 'new-user-tags' }, 'Tags'), tagIn, tagQuick,
      h('span'), h('button', { type: 'submit', id: 'new-user-submit' }, 'Add user'))));
    await load();
  }

  async function userView(v, name) {
    const path = '/users/' + enc(name);
    const u = await api('GET', path);
    if (!v.alive) return;
    const vhosts = (await api('GET', '/vhosts')).map((x) => x.name);
    const perms = h('div', { id: 'user-perms' }), topics = h('div', { id: 'user-topic-perms' });
    async function loadPerms() {
      const [p, t] = await Promise.all([api('GET', path + '/permissions'), api('GET', path + '/topic-permissions')]);
      if (!v.alive) return;
      perms.replaceChildren(permTable(p, false, loadPerms));
      topics.replaceChildren(permTable(t, true, loadPerms));
    }
    const pass = h('input', { type: 'password', id: 'edit-user-pass', autocomplete: 'new-password' });
    const [tagIn, tagQuick] = tagPicker('edit-user-tags', tagList(u.tags).join(','));
    add(v.el, h('h1', {}, 'User ', name), adminTabs('users'),
      h('section', {}, h('h2', {}, 'Tags and password'), h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`update the user ${name}`, async () => {
              const b = { tags: tagIn.value };
              if (pass.value) b.password = pass.value;
              else { b.password_hash = u.password_hash || ''; b.hashing_algorithm = u.hashing_algorithm; }
              await api('PUT', path, b);
              ok(`User ${name} updated.`);
              pass.value = '';
            });
          },
        },
      }, h('label', { for: 'edit-user-tags' }, 'Tags'), tagIn, tagQuick,
      h('label', { for: 'edit-user-pass' }, 'New password'), pass,
      h('span', { class: 'muted full' }, 'Leave the password empty to keep the current one.'),
      h('span'), h('button', { type: 'submit', id: 'edit-user-submit' }, 'Update user'))),
      h('section', {}, h('h2', {}, 'Permissions'), perms, permForm(vhosts, [name], false, loadPerms)),
      h('section', {}, h('h2', {}, 'Topic permissions'), topics, permForm(vhosts, [name], true, loadPerms)),
      h('section', {}, h('h2', {}, 'Delete'), confirmButton('Delete', `Delete the user ${name}?`, () => attempt(`delete the user ${name}`, async () => {
        await api('DELETE', path);
        go('#/admin/users', `User ${name} deleted.`, 'ok');
      }), 'user-delete')));
    await loadPerms();
  }

  function permTable(list, topic, reload) {
    if (!list.length) return h('p', { class: 'muted' }, topic ? 'No topic permissions.' : 'No permissions.');
    const cols = topic ? ['User', 'Virtual host', 'Exchange', 'Write', 'Read', ''] : ['User', 'Virtual host', 'Configure', 'Write', 'Read', ''];
    return h('div', { class: 'scroll' }, h('table', { class: topic ? 'topic-perms' : 'perms' },
      h('thead', {}, h('tr', {}, cols.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, list.map((p) => h('tr', {}, h('td', {}, p.user), h('td', {}, p.vhost),
        topic ? h('td', {}, p.exchange || '(all)') : h('td', {}, h('code', {}, p.configure)),
        h('td', {}, h('code', {}, p.write)), h('td', {}, h('code', {}, p.read)),
        h('td', {}, h('button', {
          type: 'button', class: 'secondary', on: {
            click: () => attempt('clear the permission', async () => {
              await api('DELETE', `/${topic ? 'topic-permissions' : 'permissions'}/${enc(p.vhost)}/${enc(p.user)}`);
              ok('Permission cleared.');
              await reload();
            }),
          },
        }, 'Clear')))))));
  }

  function permForm(vhosts, users, topic, reload) {
    const pre = topic ? 'topic-perm-' : 'perm-';
    const user = h('select', { id: pre + 'user' }, users.map((u) => h('option', { value: u }, u)));
    const vh = h('select', { id: pre + 'vhost' }, vhosts.map((x) => h('option', { value: x }, x)));
    if (vhosts.includes('/')) vh.value = '/';
    const ex = h('input', { type: 'text', id: pre + 'exchange', placeholder: 'amq.topic' });
    const conf = h('input', { type: 'text', id: pre + 'configure', value: '.*' });
    const write = h('input', { type: 'text', id: pre + 'write', value: '.*' });
    const read = h('input', { type: 'text', id: pre + 'read', value: '.*' });
    return h('details', { class: 'panel' }, h('summary', {}, topic ? 'Set a topic permission' : 'Set a permission'), h('form', {
      class: 'f', on: {
        submit: (e) => {
          e.preventDefault();
          attempt('set the permission', async () => {
            const b = topic ? { exchange: ex.value, write: write.value, read: read.value }
              : { configure: conf.value, write: write.value, read: read.value };
            await api('PUT', `/${topic ? 'topic-permissions' : 'permissions'}/${enc(vh.value)}/${enc(user.value)}`, b);
            ok(`Permission set for ${user.value} on ${vh.value}.`);
            await reload();
          });
        },
      },
    }, h('label', { for: pre + 'user' }, 'User'), user, h('label', { for: pre + 'vhost' }, 'Virtual host'), vh,
    topic ? [h('label', { for: pre + 'exchange' }, 'Exchange'), ex] : [h('label', { for: pre + 'configure' }, 'Configure regexp'), conf],
    h('label', { for: pre + 'write' }, 'Write regexp'), write, h('label', { for: pre + 'read' }, 'Read regexp'), read,
    h('span'), h('button', { type: 'submit', id: pre + 'submit' }, 'Set permission')));
  }

  async function vhostsView(v) {
    const body = h('div', { id: 'vhosts' });
    async function load() {
      const list = await api('GET', '/vhosts');
      if (!v.alive) return;
      body.replaceChildren(h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Description', 'Tags', 'Messages', 'Ready', 'Unacked', ''].map((x, i) => h('th', { scope: 'col', class: i >= 3 && i <= 5 ? 'num' : null }, x)))),
        h('tbody', {}, list.map((x) => h('tr', { 'data-vhost': x.name }, h('td', {}, x.name), h('td', {}, x.description || ''), h('td', {}, tags(x.tags)),
          h('td', { class: 'num' }, fmtInt(x.messages)), h('td', { class: 'num' }, fmtInt(x.messages_ready)),
          h('td', { class: 'num' }, fmtInt(x.messages_unacknowledged)),
          h('td', {}, confirmButton('Delete', `Delete ${x.name} and everything in it?`, () => attempt(`delete the virtual host ${x.name}`, async () => {
            await api('DELETE', '/vhosts/' + enc(x.name));
            ok(`Virtual host ${x.name} deleted.`);
            await load();
          })))))))));
    }
    const name = h('input', { type: 'text', id: 'new-vhost-name', required: true });
    const desc = h('input', { type: 'text', id: 'new-vhost-description' });
    const tg = h('input', { type: 'text', id: 'new-vhost-tags', placeholder: 'comma-separated' });
    add(v.el, h('h1', {}, 'Admin'), adminTabs('vhosts'), h('section', {}, h('h2', {}, 'Virtual hosts'), body),
      h('details', { class: 'panel', id: 'add-vhost' }, h('summary', {}, 'Add a virtual host'), h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`add the virtual host ${name.value}`, async () => {
              await api('PUT', '/vhosts/' + enc(name.value), { description: desc.value, tags: tg.value });
              ok(`Virtual host ${name.value} added. Users need a permission on it (Permissions) to use it.`);
              name.value = desc.value = tg.value = '';
              await load();
            });
          },
        },
      }, h('label', { for: 'new-vhost-name' }, 'Name'), name, h('label', { for: 'new-vhost-description' }, 'Description'), desc,
      h('label', { for: 'new-vhost-tags' }, 'Tags'), tg, h('span'), h('button', { type: 'submit', id: 'new-vhost-submit' }, 'Add virtual host'))));
    await load();
  }

  async function permissionsView(v) {
    const perms = h('div', { id: 'all-perms' }), topics = h('div', { id: 'all-topic-perms' });
    const [users, vhosts] = await Promise.all([api('GET', '/users'), api('GET', '/vhosts')]);
    if (!v.alive) return;
    async function load() {
      const [p, t] = await Promise.all([api('GET', '/permissions'), api('GET', '/topic-permissions')]);
      if (!v.alive) return;
      perms.replaceChildren(permTable(p, false, load));
      topics.replaceChildren(permTable(t, true, load));
    }
    const un = users.map((u) => u.name), vn = vhosts.map((x) => x.name);
    add(v.el, h('h1', {}, 'Admin'), adminTabs('permissions'),
      h('section', {}, h('h2', {}, 'Permissions'), perms, permForm(vn, un, false, load)),
      h('section', {}, h('h2', {}, 'Topic permissions'), topics, permForm(vn, un, true, load)));
    await load();
  }

  async function policiesView(v) {
    const body = h('div', { id: 'policies' });
    async function load() {
      const list = await api('GET', '/policies');
      if (!v.alive) return;
      body.replaceChildren(list.length ? h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Virtual host', 'Name', 'Pattern', 'Apply to', 'Definition', 'Priority', ''].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, list.map((p) => h('tr', {}, h('td', {}, p.vhost), h('td', {}, p.name), h('td', {}, h('code', {}, p.pattern)),
          h('td', {}, p['apply-to']), h('td', {}, argsView(p.definition)), h('td', { class: 'num' }, p.priority),
          h('td', {}, confirmButton('Delete', `Delete the policy ${p.name}?`, () => attempt(`delete the policy ${p.name}`, async () => {
            await api('DELETE', `/policies/${enc(p.vhost)}/${enc(p.name)}`);
            ok(`Policy ${p.name} deleted.`);
            await load();
          })))))))) : h('p', { class: 'muted' }, 'No policies.'));
    }
    const vsel = await vhostSelect('policy-vhost', false);
    const name = h('input', { type: 'text', id: 'policy-name', required: true });
    const pattern = h('input', { type: 'text', id: 'policy-pattern', required: true, placeholder: '^orders\\.' });
    const applyTo = h('select', { id: 'policy-apply-to' }, ['queues', 'exchanges', 'all'].map((x) => h('option', { value: x }, x)));
    const prio = h('input', { type: 'number', id: 'policy-priority', value: '0' });
    const def = h('textarea', { id: 'policy-definition', placeholder: 'max-length = 10000\nmessage-ttl = 60000\ndead-letter-exchange = dlx' });
    add(v.el, h('h1', {}, 'Admin'), adminTabs('policies'), h('section', {}, h('h2', {}, 'Policies'), body),
      h('details', { class: 'panel', id: 'add-policy' }, h('summary', {}, 'Add or update a policy'), h('form', {
        class: 'f', on: {
          submit: (e) => {
            e.preventDefault();
            attempt(`set the policy ${name.value}`, async () => {
              await api('PUT', `/policies/${enc(vsel.value)}/${enc(name.value)}`, { pattern: pattern.value, 'apply-to': applyTo.value, priority: Number(prio.value), definition: parseLines(def.value, 'Definition') });
              ok(`Policy ${name.value} set.`);
              await load();
            });
          },
        },
      }, h('label', { for: 'policy-vhost' }, 'Virtual host'), vsel, h('label', { for: 'policy-name' }, 'Name'), name,
      h('label', { for: 'policy-pattern' }, 'Pattern (regexp)'), pattern, h('label', { for: 'policy-apply-to' }, 'Apply to'), applyTo,
      h('label', { for: 'policy-priority' }, 'Priority'), prio, h('label', { for: 'policy-definition' }, 'Definition'), def,
      h('span'), h('button', { type: 'submit', id: 'policy-submit' }, 'Set policy'))));
    await load();
  }

  function definitionsView(v) {
    const text = h('textarea', { id: 'defs-text', readonly: true, rows: 10, 'aria-label': 'Exported definitions' });
    const summary = h('p', { id: 'defs-summary', class: 'muted' });
    const file = h('input', { type: 'file', id: 'defs-file', accept: 'application/json,.json' });
    const count = (d) => ['users', 'vhosts', 'permissions', 'topic_permissions', 'policies', 'queues', 'exchanges', 'bindings']
      .map((k) => `${(d[k] || []).length} ${k.replace('_', ' ')}`).join(', ');
    add(v.el, h('h1', {}, 'Admin'), adminTabs('definitions'),
      h('section', {}, h('h2', {}, 'Export definitions'),
        h('p', {}, 'Users, virtual hosts, permissions, policies, parameters, queues, exchanges and bindings, as RabbitMQ exports them (JSON).'),
        h('button', {
          type: 'button', id: 'defs-download', on: {
            click: () => attempt('export the definitions', async () => {
              const d = await api('GET', '/definitions');
              const json = JSON.stringify(d, null, 2);
              text.value = json;
              summary.textContent = 'Exported ' + count(d) + '.';
              const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
              const a = h('a', { href: url, download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
              document.body.append(a);
              a.click();
              a.remove();
              setTimeout(() => URL.revokeObjectURL(url), 10000);
            }),
          },
        }, 'Download definitions'), summary, text),
      h('section', {}, h('h2', {}, 'Import definitions'),
        h('p', {}, 'Adds what the file defines to the broker (existing objects are updated, nothing is deleted).'),
        h('form', {
          class: 'f', on: {
            submit: (e) => {
              e.preventDefault();
              attempt('import the definitions', async () => {
                if (!file.files.length) throw new Error('choose a definitions file first');
                const body = await file.files[0].text();
                let d;
                try { d = JSON.parse(body); } catch (x) { throw new Error(`${file.files[0].name} is not JSON (${x.message})`); }
                await api('POST', '/definitions', body);
                ok(`Definitions imported from ${file.files[0].name}: ${count(d)}.`);
              });
            },
          },
        }, h('label', { for: 'defs-file' }, 'Definitions file'), file,
        h('span'), h('button', { type: 'submit', id: 'defs-upload' }, 'Upload definitions'))));
  }

  start();
})();
