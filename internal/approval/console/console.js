// The agentauthz approvals console. Everything shown comes from agents and is hostile: it is
// written with textContent only, never parsed as HTML, and through visible(), so that no
// character acts instead of showing (a bidi override, a zero-width space).
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const ID = /^apr_[a-z2-7]{26}$/;
  const POLL_MS = 3000;
  const PAGE = 50; // the newest pending requests shown; the list says how many more there are

  let csrf = '';
  let timer = null;
  let skew = 0; // server clock minus ours, from each answer's "now"
  let known = null; // ids already in the list, to mark new arrivals

  // Characters that do not show as themselves: controls, format characters (bidi embeddings,
  // overrides and isolates, zero-width spaces and joiners, U+FEFF), separators, private use,
  // unassigned, other default-ignorable ones, and U+FFFD.
  const HIDDEN = /[\p{C}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\uFFFD]/gu;

  // visible is text as an approver must see it: each hidden character as a \u{XXXX} marker, as
  // the server's approval.Visible writes it (the server sends text escaped already; this holds
  // whatever it sends). Tabs stay, and line feeds in multi-line text.
  function visible(s, lines) {
    return String(s == null ? '' : s).replace(HIDDEN, (c) =>
      c === '\t' || (lines && c === '\n') ? c : '\\u{' + c.codePointAt(0).toString(16).padStart(4, '0') + '}');
  }

  async function call(method, path, body) {
    const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      opts.headers['X-CSRF-Token'] = csrf;
      opts.body = JSON.stringify(body || {});
    }
    let res;
    try {
      res = await fetch('/approvals/api/' + path, opts);
    } catch (e) {
      return { ok: false, status: 0, data: { detail: 'the server cannot be reached' } };
    }
    let data = {};
    try { data = await res.json(); } catch (e) { data = {}; }
    if (data && data.now) skew = Date.parse(data.now) - Date.now();
    return { ok: res.ok, status: res.status, data };
  }

  function show(section) {
    for (const id of ['signin', 'list', 'history', 'detail']) $(id).hidden = id !== section;
    $('nav').hidden = section === 'signin';
    $('nav-pending').className = section === 'list' ? 'current' : '';
    $('nav-history').className = section === 'history' ? 'current' : '';
  }

  function notice(text) {
    $('notice').textContent = text || '';
    $('notice').hidden = !text;
  }

  // needSignIn handles an answer that says the session ended.
  function needSignIn(res) {
    if (res.status !== 401) return false;
    stop();
    csrf = '';
    $('who').hidden = true;
    show('signin');
    return true;
  }

  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function later(fn) {
    stop();
    timer = setTimeout(fn, POLL_MS);
  }

  function span(ms) {
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return s + 's';
    const m = Math.round(s / 60);
    if (m < 60) return m + 'm';
    const h = Math.floor(m / 60);
    return h + 'h ' + (m % 60) + 'm';
  }
  const now = () => Date.now() + skew;
  const ago = (t) => span(now() - Date.parse(t)) + ' ago';
  const until = (t) => {
    const ms = Date.parse(t) - now();
    return ms > 0 ? 'in ' + span(ms) : span(ms) + ' ago';
  };
  // utc is a time as the console shows every time: in UTC, saying so, whatever the browser's
  // zone (approvers in several zones read the same record).
  const utc = (t) => {
    const d = new Date(t);
    return isNaN(d) ? '—' : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  };
  const when = (t) => (t ? utc(t) + ' (' + (Date.parse(t) > now() ? until(t) : ago(t)) + ')' : '—');
  // heldBecause is the policy's condition that held the request, or that the rule holds every one.
  const heldBecause = (a) => (a.condition ? a.condition : 'every request to this rule');

  function cell(row, text, cls) {
    const td = document.createElement('td');
    td.textContent = visible(text);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  async function loadList() {
    const res = await call('GET', 'approvals?state=pending&limit=' + PAGE);
    if (needSignIn(res)) return;
    if (!res.ok) {
      $('list-status').textContent = 'Could not refresh: ' + (res.data.detail || res.status);
      later(loadList);
      return;
    }
    const items = res.data.approvals || [];
    const body = $('pending').tBodies[0];
    const rows = [];
    for (const a of items) {
      if (!ID.test(a.id)) continue;
      const tr = document.createElement('tr');
      tr.dataset.id = a.id;
      if (known && !known.has(a.id)) tr.className = 'fresh';
      cell(tr, a.agent);
      cell(tr, a.method, 'nowrap');
      cell(tr, a.host);
      const link = document.createElement('a');
      link.href = '/approvals/requests/' + a.id;
      link.textContent = visible(a.path);
      cell(tr, '', 'path').appendChild(link);
      cell(tr, a.rule, 'nowrap');
      cell(tr, heldBecause(a), 'condition');
      cell(tr, ago(a.created_at), 'nowrap');
      cell(tr, until(a.expires_at), 'nowrap');
      tr.addEventListener('click', (e) => { if (e.target !== link) location.assign(link.href); });
      rows.push(tr);
    }
    known = new Set(items.map((a) => a.id));
    body.replaceChildren(...rows);
    const more = Number(res.data.more) || 0;
    $('empty').hidden = rows.length > 0;
    $('pending').hidden = rows.length === 0;
    $('more').textContent = more > 0
      ? 'The ' + rows.length + ' newest are shown; ' + more + ' more, older, ' + (more === 1 ? 'is' : 'are') + ' pending too.'
      : '';
    $('more').hidden = more === 0;
    $('list-status').textContent = (rows.length + more) + ' pending · updated ' + utc(new Date(now()).toISOString());
    later(loadList);
  }

  function fill(a) {
    $('d-id').textContent = visible(a.id);
    $('d-state').textContent = visible(a.state);
    $('d-state').className = 'state ' + a.state;
    $('d-agent').textContent = visible(a.agent);
    $('d-method').textContent = visible(a.method);
    $('d-host').textContent = visible(a.host);
    $('d-path').textContent = visible(a.path);
    $('d-rule').textContent = visible(a.rule);
    $('d-reason').textContent = visible(a.reason || '—');
    $('d-condition').textContent = visible(heldBecause(a), true);
    $('d-approvers').textContent = visible((a.approvers || []).join(', '));
    $('d-created').textContent = when(a.created_at);
    $('d-expires').textContent = when(a.expires_at);
    $('d-decided').textContent = a.decided_at ? when(a.decided_at) + ' by ' + visible(a.decided_by) : '—';
    $('d-comment').textContent = visible(a.comment || '—', true);
    $('d-useby').textContent = a.use_by ? when(a.use_by) : '—';
    $('d-used').textContent = a.used_at ? when(a.used_at) : '—';
    $('d-ctype').textContent = visible(a.content_type || '');
    $('d-body').textContent = visible(a.body || '(no body)', true);
    const why = a.why_not || '';
    $('approve').disabled = $('deny').disabled = $('comment').disabled = why !== '';
    $('why-not').textContent = why ? 'You cannot decide this request: ' + visible(why) + '.' : '';
    $('why-not').hidden = !why;
  }

  async function loadDetail(id) {
    const res = await call('GET', 'approvals/' + id);
    if (needSignIn(res)) return;
    if (!res.ok) {
      notice(res.status === 404 ? 'There is no such request.' : 'Could not load the request: ' + (res.data.detail || res.status));
      return;
    }
    fill(res.data.approval);
    if (res.data.approval.state === 'pending') later(() => loadDetail(id));
  }

  async function decide(approve) {
    const id = location.pathname.split('/').pop();
    if (!ID.test(id)) return;
    stop();
    $('approve').disabled = $('deny').disabled = true;
    const res = await call('POST', 'approvals/' + id + (approve ? '/approve' : '/deny'), { comment: $('comment').value });
    if (needSignIn(res)) return;
    const result = $('result');
    result.hidden = false;
    if (res.ok) {
      const a = res.data.approval;
      fill(a);
      result.className = 'result' + (approve ? '' : ' bad');
      result.textContent = approve
        ? 'Approved by ' + visible(a.decided_by) + '. The agent may now send the identical request once more, with header x-agentauthz-approval: ' + a.id + ', until ' + utc(a.use_by) + '.'
        : 'Denied by ' + visible(a.decided_by) + '. The agent is told not to retry.';
    } else {
      result.className = 'result bad';
      result.textContent = 'Not recorded: ' + visible(res.data.detail || 'error ' + res.status);
      loadDetail(id);
    }
  }

  // The history's filters, as the URL's query holds them: the page can be reloaded or shared.
  const FILTERS = ['state', 'agent', 'rule', 'from', 'to'];
  const localToUTC = (v) => (v ? (v.length === 16 ? v + ':00' : v) + 'Z' : '');
  const utcToLocal = (v) => (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(v) ? v.slice(0, -1) : '');

  function filtersFromURL() {
    const q = new URLSearchParams(location.search);
    const state = q.get('state') || 'decided';
    $('f-state').value = [...$('f-state').options].some((o) => o.value === state) ? state : 'decided';
    $('f-agent').value = q.get('agent') || '';
    $('f-rule').value = q.get('rule') || '';
    $('f-from').value = utcToLocal(q.get('from') || '');
    $('f-to').value = utcToLocal(q.get('to') || '');
  }

  function filtersQuery() {
    const q = new URLSearchParams();
    q.set('state', $('f-state').value);
    if ($('f-agent').value.trim()) q.set('agent', $('f-agent').value.trim());
    if ($('f-rule').value.trim()) q.set('rule', $('f-rule').value.trim());
    if ($('f-from').value) q.set('from', localToUTC($('f-from').value));
    if ($('f-to').value) q.set('to', localToUTC($('f-to').value));
    return q;
  }

  let historyCursor = '';

  async function loadHistory(more) {
    stop();
    const q = filtersQuery();
    q.set('limit', String(PAGE));
    if (more && historyCursor) q.set('cursor', historyCursor);
    $('h-error').textContent = '';
    const res = await call('GET', 'approvals?' + q.toString());
    if (needSignIn(res)) return;
    if (!res.ok) {
      $('h-error').textContent = 'Could not list: ' + visible(res.data.detail || res.status);
      return;
    }
    const body = $('past').tBodies[0];
    const rows = [];
    for (const a of res.data.approvals || []) {
      if (!ID.test(a.id)) continue;
      const tr = document.createElement('tr');
      tr.dataset.id = a.id;
      cell(tr, utc(a.created_at), 'nowrap');
      cell(tr, a.agent);
      cell(tr, a.method, 'nowrap');
      cell(tr, a.host);
      const link = document.createElement('a');
      link.href = '/approvals/requests/' + a.id;
      link.textContent = visible(a.path);
      cell(tr, '', 'path').appendChild(link);
      cell(tr, a.rule, 'nowrap');
      cell(tr, heldBecause(a), 'condition');
      cell(tr, a.state, 'nowrap');
      cell(tr, a.decided_at ? utc(a.decided_at) : '—', 'nowrap');
      cell(tr, a.decided_by || '—');
      tr.addEventListener('click', (e) => { if (e.target !== link) location.assign(link.href); });
      rows.push(tr);
    }
    if (more) body.append(...rows);
    else body.replaceChildren(...rows);
    historyCursor = res.data.next_cursor || '';
    const shownCount = body.rows.length;
    $('h-empty').hidden = shownCount > 0;
    $('past').hidden = shownCount === 0;
    $('h-older').hidden = !historyCursor;
    $('h-status').textContent = shownCount + ' shown' + (historyCursor ? ', more older' : '') + ' · as of ' + utc(new Date(now()).toISOString());
  }

  function route() {
    notice('');
    const parts = location.pathname.split('/');
    if (parts[2] === 'history') {
      show('history');
      filtersFromURL();
      loadHistory(false);
      return;
    }
    if (parts[2] === 'requests') {
      const id = parts[3] || '';
      show('detail');
      if (ID.test(id)) loadDetail(id);
      else notice('There is no such request.');
      return;
    }
    show('list');
    loadList();
  }

  function signedIn(view) {
    csrf = view.csrf;
    $('who-name').textContent = visible(view.approver);
    $('who').hidden = false;
    route();
  }

  async function start() {
    const res = await call('GET', 'session');
    if (res.ok && res.data.signed_in) return signedIn(res.data);
    const links = $('signin-links');
    links.replaceChildren();
    for (const l of (res.data && res.data.sign_in) || []) {
      if (!/^\/[^/\\]/.test(l.href)) continue; // same-origin paths only
      const a = document.createElement('a');
      a.href = l.href;
      a.textContent = visible(l.label);
      links.appendChild(a);
    }
    show('signin');
    $('token').focus();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('signin-token').addEventListener('submit', async (e) => {
      e.preventDefault();
      $('signin-error').textContent = '';
      const res = await call('POST', 'session', { token: $('token').value });
      $('token').value = '';
      if (res.ok) return signedIn(res.data);
      $('signin-error').textContent = res.data.detail || 'Sign-in failed (' + res.status + ').';
    });
    $('signout').addEventListener('click', async () => {
      stop();
      await call('POST', 'signout');
      csrf = '';
      $('who').hidden = true;
      history.replaceState(null, '', '/approvals/');
      start();
    });
    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      history.replaceState(null, '', '/approvals/history?' + filtersQuery().toString());
      loadHistory(false);
    });
    $('h-older').addEventListener('click', () => loadHistory(true));
    $('approve').addEventListener('click', () => decide(true));
    $('deny').addEventListener('click', () => decide(false));
    start();
  });
})();
