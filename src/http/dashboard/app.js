// The campaign dashboard. Plain script, no dependency: it reads the ledger's API with a bearer
// token and follows /v1/events/live (read with fetch, so the token travels in a header, never
// in a URL) to refresh within a second of every commit.
'use strict';

const TEXT = {
  fr: {
    title: 'Campagne de vaccination COVID-19', as_of: 'Au', known_at: 'Connu au',
    need_token: "Ce tableau de bord demande un jeton d'accès.", sign_in: 'Se connecter',
    sign_out: 'Se déconnecter', national: 'Total national', total: 'Doses',
    first: 'Premières injections', second: 'Deuxièmes injections', booster: 'Rappels',
    curve: 'Doses cumulées par type', directorates: 'Directions territoriales',
    directorate: 'Direction', tickets: 'Tickets des centres partenaires',
    sessions: 'Fréquentation des séances', survey: 'Couverture vaccinale des structures (enquête)',
    structures: 'Structures', residents: 'Résidents', one_dose: 'Au moins une dose',
    fully: 'Schéma complet', issued: 'Émis', redeemed: 'Utilisés', expired: 'Expirés',
    outstanding: 'En cours', live: 'En direct', behind: 'Mise à jour…',
    disconnected: 'Déconnecté — reconnexion…', historic: 'Vue historique (connu au)',
    booster_opening: 'Ouverture des rappels', booster_65: 'Rappels 65 ans et plus',
    position: 'Position du journal', no_data: 'Aucune donnée à cette date.',
    not_for_role: 'Non disponible pour votre rôle.', suppressed: 'Effectifs inférieurs à 5 masqués (« <5 »).',
    role: 'Rôle', attendance: 'présents', latest: 'dernières données', bad_token: 'Jeton refusé : ',
    cannot_read: 'Ce jeton ne permet pas de lire le tableau de bord (il faut un jeton superviseur ou auditeur) : ',
    yours: 'Total de vos directions',
  },
  en: {
    title: 'COVID-19 vaccination campaign', as_of: 'As of', known_at: 'Known at',
    need_token: 'This dashboard needs an access token.', sign_in: 'Sign in',
    sign_out: 'Sign out', national: 'National totals', total: 'Doses',
    first: 'First injections', second: 'Second injections', booster: 'Boosters',
    curve: 'Cumulative doses by kind', directorates: 'Territorial directorates',
    directorate: 'Directorate', tickets: 'Partner-centre tickets',
    sessions: 'Session attendance', survey: 'Vaccination coverage of accommodation (survey)',
    structures: 'Structures', residents: 'Residents', one_dose: 'At least one dose',
    fully: 'Fully vaccinated', issued: 'Issued', redeemed: 'Redeemed', expired: 'Expired',
    outstanding: 'Outstanding', live: 'Live', behind: 'Updating…',
    disconnected: 'Disconnected — reconnecting…', historic: 'Historic view (known at)',
    booster_opening: 'Boosters open', booster_65: 'Boosters for 65+',
    position: 'Log position', no_data: 'No data at this date.',
    not_for_role: 'Not available to your role.', suppressed: 'Counts under 5 are hidden ("<5").',
    role: 'Role', attendance: 'attended', latest: 'latest data', bad_token: 'Token refused: ',
    cannot_read: 'This token cannot read the dashboard (it needs a supervisor or auditor token): ',
    yours: 'Total of your directorates',
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem('ledger-lang') === 'en' ? 'en' : 'fr';
let token = null;
let me = null;
let reference = null;
let campaignDirectorates = [];
let data = {};
let shown = 0;
let sort = { key: 'name', dir: 1 };
let refreshTimer = null;
let refreshing = null;
let again = false;
let state = 'behind';
let following = false;

const t = (k) => TEXT[lang][k] || k;
const locale = () => (lang === 'fr' ? 'fr-FR' : 'en-GB');
function num(v) {
  if (v === null || v === undefined) return '0';
  if (typeof v === 'string') return v;
  return new Intl.NumberFormat(locale()).format(v);
}
function day(iso) {
  const [y, m, d] = iso.slice(0, 10).split('-').map(Number);
  return new Intl.DateTimeFormat(locale(), { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' })
    .format(Date.UTC(y, m - 1, d));
}
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
const svg = (tag, attrs) => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
};

async function api(path) {
  const r = await fetch(path, { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error((body && body.error && body.error.message) || r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

function setStatus(s) {
  state = s;
  const el = $('status');
  const historic = $('known-at-on').checked;
  el.textContent = historic && s === 'live' ? t('historic') : t(s);
  el.dataset.state = s;
}

function applyLang() {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  $('lang').textContent = lang === 'fr' ? 'EN' : 'FR';
  setStatus(state);
  render();
}

function query() {
  const p = new URLSearchParams();
  if ($('as-of').value) p.set('as_of', $('as-of').value);
  if ($('known-at-on').checked && $('known-at').value) p.set('known_at', new Date($('known-at').value).toISOString());
  const s = p.toString();
  return s ? '?' + s : '';
}

async function load(name) {
  try { return { ok: await api('/v1/projections/' + name + query()) }; }
  catch (e) { if (e.status === 401) throw e; return { err: e }; }
}

async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      try {
        const names = ['doses_by_directorate', 'doses_by_day', 'tickets_by_directorate', 'session_attendance', 'survey_coverage'];
        const got = await Promise.all(names.map(load));
        const next = {};
        names.forEach((n, i) => { next[n] = got[i]; });
        data = next;
        const pos = got.map((g) => (g.ok ? g.ok.position : 0));
        shown = Math.max(shown, ...pos);
        render();
        if (state !== 'disconnected') setStatus('live');
      } catch (e) {
        if (e.status === 401) { signOut(e.message); return; }
        setStatus('behind');
      }
    } while (again);
  })();
  try { await refreshing; } finally { refreshing = null; }
}

function schedule() {
  if (state === 'live') setStatus('behind');
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 100);
}

function panelError(container, g) {
  container.replaceChildren(h('p', { class: 'note' }, g.err.status === 403 ? t('not_for_role') : g.err.message));
}

function render() {
  if (!data.doses_by_directorate) return;
  renderTotals();
  renderCurve();
  renderDirectorates();
  renderTickets();
  renderSessions();
  renderSurvey();
  $('position').textContent = t('position') + ' ' + num(shown);
  const who = me && me.auth ? t('role') + (lang === 'fr' ? ' : ' : ': ') + me.role + (me.directorates.length ? ' (' + me.directorates.join(', ') + ')' : '') : '';
  $('who').textContent = who + (me && me.suppressed ? ' · ' + t('suppressed') : '');
}

function renderTotals() {
  const g = data.doses_by_directorate;
  $('h-totals').textContent = me && me.role === 'supervisor'
    ? t('yours') + ' (' + me.directorates.map(dirName).join(', ') + ')'
    : t('national');
  const tot = g.ok ? g.ok.totals : {};
  for (const k of ['total', 'first', 'second', 'booster']) {
    const el = $('total-' + (k === 'total' ? 'doses' : k));
    el.dataset.value = g.ok ? String(tot[k] ?? 0) : '';
    el.textContent = g.ok ? num(tot[k] ?? 0) : '—';
  }
}

function renderCurve() {
  const box = $('curve');
  const g = data.doses_by_day;
  if (g.err) return panelError(box, g);
  const rows = g.ok.rows;
  if (!rows.length) return box.replaceChildren(h('p', { class: 'note' }, t('no_data')));
  const dateKey = g.ok.columns[0];
  const toDay = (s) => Date.parse(s.slice(0, 10) + 'T00:00:00Z') / 86400000;
  const x0 = toDay(rows[0][dateKey]);
  const x1 = Math.max(toDay(rows[rows.length - 1][dateKey]), x0 + 1);
  const ymax = Math.max(1, ...rows.map((r) => r.total || 0));
  const W = 640, H = 260, L = 48, R = 12, T = 12, B = 28;
  const X = (d) => L + ((d - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - (v / ymax) * (H - T - B);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': t('curve') });
  s.append(svg('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' }));
  s.append(svg('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' }));
  const label = (x, y, text, cls, anchor) => {
    const e = svg('text', { x, y, class: cls || 'tick', 'text-anchor': anchor || 'middle' });
    e.textContent = text;
    s.append(e);
  };
  label(L - 4, Y(ymax) + 4, num(ymax), 'tick', 'end');
  label(L - 4, H - B + 4, '0', 'tick', 'end');
  label(L, H - 8, day(rows[0][dateKey]), 'tick', 'start');
  label(W - R, H - 8, day(rows[rows.length - 1][dateKey]), 'tick', 'end');
  for (const o of (reference && reference.booster_openings) || []) {
    const d = toDay(o.date);
    if (d < x0 || d > x1) continue;
    s.append(svg('line', { x1: X(d), y1: T, x2: X(d), y2: H - B, class: 'marker marker-' + o.who.replace('+', 'plus') }));
    label(X(d) - 4, T + 10, o.who === 'adults' ? t('booster_opening') + ' — ' + day(o.date) : t('booster_65'), 'marker-label', 'end');
  }
  for (const k of ['total', 'first', 'second', 'booster']) {
    const pts = rows.map((r) => `${X(toDay(r[dateKey])).toFixed(1)},${Y(r[k] || 0).toFixed(1)}`).join(' ');
    s.append(svg('polyline', { points: pts, class: 'line line-' + k }));
  }
  const legend = h('ul', { class: 'legend' }, ...['total', 'first', 'second', 'booster']
    .map((k) => h('li', { class: 'key-' + k }, t(k) + ' : ' + num(rows[rows.length - 1][k] || 0))));
  box.replaceChildren(s, legend);
}

function dirName(id) {
  const d = reference && reference.directorates.find((x) => x.id === id);
  return d ? d.name : id;
}

function renderDirectorates() {
  const g = data.doses_by_directorate;
  const body = $('directorates').tBodies[0];
  if (g.err) { body.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, g.err.message))); return; }
  const byId = new Map(g.ok.rows.map((r) => [r.directorate, r]));
  const ids = new Set([...campaignDirectorates, ...byId.keys()]);
  if (me && me.role === 'supervisor') for (const id of [...ids]) if (!me.directorates.includes(id)) ids.delete(id);
  const rows = [...ids].map((id) => {
    const r = byId.get(id) || {};
    return { id, name: dirName(id), first: r.first || 0, second: r.second || 0, booster: r.booster || 0, total: r.total || 0 };
  });
  rows.sort((a, b) => {
    const x = a[sort.key], y = b[sort.key];
    const c = typeof x === 'string' ? x.localeCompare(y, locale()) : x - y;
    return c * sort.dir || a.name.localeCompare(b.name, locale());
  });
  body.replaceChildren(...rows.map((r) => h('tr', { 'data-directorate': r.id },
    h('th', { scope: 'row' }, r.name),
    ...['first', 'second', 'booster', 'total'].map((k) => h('td', { class: 'num' }, num(r[k]))))));
  for (const th of $('directorates').tHead.rows[0].cells) {
    th.setAttribute('aria-sort', th.dataset.key === sort.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

function renderTickets() {
  const box = $('tickets');
  const g = data.tickets_by_directorate;
  if (g.err) return panelError(box, g);
  const wanted = ['lyon', 'marseille'].filter((id) => !me || me.role !== 'supervisor' || me.directorates.includes(id));
  const cards = wanted.map((id) => {
    const r = g.ok.rows.find((x) => x.directorate === id) || {};
    const issued = typeof r.issued === 'number' ? r.issued : 0;
    const bar = (k) => {
      const v = r[k] ?? 0;
      const w = typeof v === 'number' && issued > 0 ? Math.round((v / issued) * 100) : 0;
      const fill = h('span', { class: 'fill fill-' + k });
      fill.style.width = w + '%';
      return h('div', { class: 'bar' }, h('span', { class: 'bar-label' }, t(k)), h('span', { class: 'track' }, fill), h('span', { class: 'num' }, num(v)));
    };
    return h('div', { class: 'funnel', 'data-directorate': id }, h('h3', {}, dirName(id)),
      bar('issued'), bar('redeemed'), bar('expired'), bar('outstanding'));
  });
  box.replaceChildren(...(cards.length ? cards : [h('p', { class: 'note' }, t('not_for_role'))]));
}

function renderSessions() {
  const box = $('sessions');
  const g = data.session_attendance;
  if (g.err) return panelError(box, g);
  if (!g.ok.rows.length) return box.replaceChildren(h('p', { class: 'note' }, t('no_data')));
  const sites = new Map();
  for (const r of g.ok.rows) {
    const k = r.directorate + '/' + r.site;
    if (!sites.has(k)) sites.set(k, { directorate: r.directorate, site: r.site, rows: [] });
    sites.get(k).rows.push(r);
  }
  const ordered = [...sites.values()].sort((a, b) => (b.directorate === 'rennes') - (a.directorate === 'rennes') || a.site.localeCompare(b.site));
  const max = Math.max(1, ...g.ok.rows.map((r) => (typeof r.attendance === 'number' ? r.attendance : 4)));
  box.replaceChildren(...ordered.map((site) => h('div', { class: 'site' },
    h('h3', {}, dirName(site.directorate) + ' — ' + site.site),
    h('ol', { class: 'sessions' }, ...site.rows.map((r) => {
      const v = r.attendance;
      const fill = h('span', { class: 'fill fill-session' });
      fill.style.width = Math.round(((typeof v === 'number' ? v : 4) / max) * 100) + '%';
      return h('li', {}, h('span', { class: 'bar-label' }, r.opened_at ? day(r.opened_at) : r.session_id),
        h('span', { class: 'track' }, fill), h('span', { class: 'num' }, v === null || v === undefined ? '—' : num(v)));
    })))));
}

function renderSurvey() {
  const body = $('survey').tBodies[0];
  const g = data.survey_coverage;
  if (g.err) { body.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, g.err.status === 403 ? t('not_for_role') : g.err.message))); return; }
  const pct = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? ' (' + new Intl.NumberFormat(locale(), { style: 'percent' }).format(a / b) + ')' : '');
  body.replaceChildren(...g.ok.rows.map((r) => h('tr', {},
    h('th', { scope: 'row' }, dirName(r.directorate)),
    h('td', { class: 'num' }, num(r.structures)),
    h('td', { class: 'num' }, num(r.residents)),
    h('td', { class: 'num' }, num(r.with_one_dose) + pct(r.with_one_dose, r.residents)),
    h('td', { class: 'num' }, num(r.fully_vaccinated) + pct(r.fully_vaccinated, r.residents)))));
}

// Follows the log; any new event schedules a refresh. Reconnects with backoff.
async function follow() {
  let backoff = 500;
  for (;;) {
    try {
      const r = await fetch('/v1/events/live?after=' + shown, {
        headers: Object.assign({ Accept: 'text/event-stream' }, token ? { Authorization: 'Bearer ' + token } : {}),
      });
      if (r.status === 401) { signOut(''); return; }
      if (!r.ok || !r.body) throw new Error('live ' + r.status);
      if (state === 'disconnected') { setStatus('behind'); refresh(); }
      backoff = 500;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (/^event: ?ledger-event$/m.test(block)) schedule();
        }
      }
    } catch (_) { /* reconnect below */ }
    setStatus('disconnected');
    await new Promise((ok) => setTimeout(ok, backoff));
    backoff = Math.min(backoff * 2, 8000);
  }
}

function signOut(message) {
  sessionStorage.removeItem('ledger-token');
  token = null;
  $('main').hidden = true;
  $('status').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message ? t('bad_token') + message : '';
}

async function start() {
  applyLang();
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem('ledger-token', fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  token = sessionStorage.getItem('ledger-token');
  const params = new URLSearchParams(location.search);
  if (params.get('as_of')) $('as-of').value = params.get('as_of');
  if (params.get('lang') === 'en' || params.get('lang') === 'fr') { lang = params.get('lang'); applyLang(); }
  try {
    me = await api('/v1/whoami');
  } catch (e) {
    signOut(token ? e.message : '');
    return;
  }
  if (['agent', 'partner', 'admin'].includes(me.role)) {
    signOut('');
    $('login-error').textContent = t('cannot_read') + me.role;
    return;
  }
  $('login').hidden = true;
  $('main').hidden = false;
  $('status').hidden = false;
  $('known-at-box').hidden = !(me.role === 'auditor' || me.role === 'api');
  try { reference = await api('/v1/reference'); } catch (_) { reference = null; }
  try {
    const latest = await api('/v1/projections/doses_by_directorate');
    campaignDirectorates = latest.rows.map((r) => r.directorate);
  } catch (_) { campaignDirectorates = []; }
  await refresh();
  if (!following) { following = true; follow(); }
}

document.addEventListener('DOMContentLoaded', () => {
  $('lang').addEventListener('click', () => {
    lang = lang === 'fr' ? 'en' : 'fr';
    localStorage.setItem('ledger-lang', lang);
    applyLang();
  });
  $('as-of').addEventListener('change', () => {
    const u = new URL(location.href);
    if ($('as-of').value) u.searchParams.set('as_of', $('as-of').value); else u.searchParams.delete('as_of');
    history.replaceState(null, '', u.pathname + u.search);
    refresh();
  });
  $('known-at-on').addEventListener('change', () => { setStatus(state); refresh(); });
  $('known-at').addEventListener('change', () => { if ($('known-at-on').checked) refresh(); });
  for (const th of document.querySelectorAll('#directorates th[data-key]')) {
    th.addEventListener('click', () => {
      sort = { key: th.dataset.key, dir: sort.key === th.dataset.key ? -sort.dir : (th.dataset.key === 'name' ? 1 : -1) };
      renderDirectorates();
    });
  }
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('ledger-token', $('token-input').value.trim());
    $('token-input').value = '';
    start();
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  start();
});
