// The campaign dashboard. Plain script, no dependency: it reads the ledger's API with a bearer
// token and follows /v1/events/live (read with fetch, so the token travels in a header, never
// in a URL) to refresh within a second of every commit.
//
// Dates are typed and shown as dd/mm/yyyy (whatever the browser's locale); "known at" is a
// wall-clock time in the campaign's time zone (Europe/Paris unless the server says otherwise),
// never the browser's. as_of, known_at and lang live in the URL (?as_of=2021-12-17&lang=en).
'use strict';

const TEXT = {
  fr: {
    title: 'Campagne de vaccination COVID-19', as_of: 'Au', known_at: 'Connu au',
    tz_hint: 'heure de', date_placeholder: 'jj/mm/aaaa', time_placeholder: 'jj/mm/aaaa hh:mm',
    need_token: "Ce tableau de bord demande un jeton d'accès.", sign_in: 'Se connecter',
    sign_out: 'Se déconnecter', national: 'Total national', total: 'Doses',
    first: 'Premières injections', second: 'Deuxièmes injections', booster: 'Rappels', agents: 'Dont agents',
    curve: 'Doses cumulées par type', directorates: 'Directions territoriales',
    directorate: 'Direction', tickets: 'Tickets des centres partenaires',
    sessions: 'Fréquentation des séances', survey: 'Couverture vaccinale des structures (enquête)',
    structures: 'Structures', residents: 'Résidents', one_dose: 'Au moins une dose',
    fully: 'Schéma complet', issued: 'Émis', redeemed: 'Utilisés', expired: 'Expirés',
    outstanding: 'En cours', live: 'En direct', behind: 'Mise à jour…',
    disconnected: 'Déconnecté — reconnexion…', historic: 'Vue historique (connu au)',
    booster_opening: 'Ouverture des rappels', booster_65: 'Rappels 65 ans et plus',
    position: 'Position du journal', no_data: 'Aucune donnée à cette date.',
    not_for_role: 'Non disponible pour votre rôle.',
    suppressed: 'Pour votre rôle, les effectifs de 1 à 4 d\'un même site (fréquentation des séances) sont masqués (« <5 ») ; les totaux et les effectifs par direction ne le sont pas.',
    role: 'Rôle', attendance: 'présents', latest: 'dernières données', bad_token: 'Jeton refusé : ',
    cannot_read: 'Ce jeton ne permet pas de lire le tableau de bord (il faut un jeton superviseur ou auditeur) : ',
    yours: 'Total de vos directions', curve_yours: 'Doses cumulées par type — vos directions',
    quality: 'Qualité des données', findings_open: 'Constats ouverts', findings_none: 'Aucun constat ouvert à cette date.',
    person: 'Personne', entries: 'Saisies', todo: 'À faire', reversed: 'annulée', elsewhere: 'ailleurs', command: 'commande',
    revised: (d, before, now) => `Les chiffres au ${d} ont été révisés après ce jour : ${before} doses connues le soir même, ${now} aujourd'hui.`,
    changed: (d, before, now) => `Les chiffres au ${d} ont changé depuis votre consultation : ${before} doses alors, ${now} maintenant.`,
    show_known: (d) => `Voir ce qui était connu le ${d}`, known_auditors: 'La vue « connu au » est réservée aux auditeurs.',
    bad_date: 'Date attendue au format jj/mm/aaaa.', bad_time: 'Heure attendue au format jj/mm/aaaa hh:mm.',
    roles: { supervisor: 'superviseur', auditor: 'auditeur', admin: 'administrateur', agent: 'agent', partner: 'partenaire', api: 'accès sans jeton' },
    kinds: {
      second_dose_without_first: 'Deuxième dose sans première',
      booster_without_primary_series: 'Rappel sans schéma initial complet',
      dose_interval_too_short: 'Intervalle trop court entre deux doses',
    },
    advice: {
      second_dose_without_first: 'Enregistrer la première dose réellement reçue (RecordExternalDose si elle a été faite ailleurs), ou annuler la deuxième dose si elle aussi est une erreur de saisie.',
      booster_without_primary_series: 'Enregistrer la dose manquante du schéma initial (RecordExternalDose si elle a été faite ailleurs), ou annuler le rappel s\'il est une erreur de saisie.',
      dose_interval_too_short: 'Vérifier les dates des deux doses : annuler la saisie erronée et la saisir à nouveau avec sa vraie date.',
    },
    doses: { first: 'première', second: 'deuxième', booster: 'rappel' },
    errors: {
      forbidden: 'Votre jeton ne permet pas cette lecture.', missing_token: 'Jeton manquant.',
      malformed_token: 'Jeton mal formé.', unknown_token: 'Jeton inconnu (révoqué ou mal copié).',
      expired_token: 'Jeton expiré.', bad_as_of: 'Date « au » invalide.', bad_known_at: 'Heure « connu au » invalide.',
      unknown_projection: 'Vue inconnue du serveur.', internal: 'Erreur interne du serveur ; réessayez.',
      unavailable: 'Le journal est momentanément indisponible ; réessayez.',
    },
    error_other: 'Erreur du serveur',
  },
  en: {
    title: 'COVID-19 vaccination campaign', as_of: 'As of', known_at: 'Known at',
    tz_hint: 'time in', date_placeholder: 'dd/mm/yyyy', time_placeholder: 'dd/mm/yyyy hh:mm',
    need_token: 'This dashboard needs an access token.', sign_in: 'Sign in',
    sign_out: 'Sign out', national: 'National totals', total: 'Doses',
    first: 'First injections', second: 'Second injections', booster: 'Boosters', agents: 'Of which staff',
    curve: 'Cumulative doses by kind', directorates: 'Territorial directorates',
    directorate: 'Directorate', tickets: 'Partner-centre tickets',
    sessions: 'Session attendance', survey: 'Vaccination coverage of accommodation (survey)',
    structures: 'Structures', residents: 'Residents', one_dose: 'At least one dose',
    fully: 'Fully vaccinated', issued: 'Issued', redeemed: 'Redeemed', expired: 'Expired',
    outstanding: 'Outstanding', live: 'Live', behind: 'Updating…',
    disconnected: 'Disconnected — reconnecting…', historic: 'Historic view (known at)',
    booster_opening: 'Boosters open', booster_65: 'Boosters for 65+',
    position: 'Log position', no_data: 'No data at this date.',
    not_for_role: 'Not available to your role.',
    suppressed: 'For your role, counts from 1 to 4 of a single site (session attendance) are hidden ("<5"); totals and per-directorate counts are not.',
    role: 'Role', attendance: 'attended', latest: 'latest data', bad_token: 'Token refused: ',
    cannot_read: 'This token cannot read the dashboard (it needs a supervisor or auditor token): ',
    yours: 'Total of your directorates', curve_yours: 'Cumulative doses by kind — your directorates',
    quality: 'Data quality', findings_open: 'Open findings', findings_none: 'No open finding at this date.',
    person: 'Person', entries: 'Entries', todo: 'To do', reversed: 'reversed', elsewhere: 'elsewhere', command: 'command',
    revised: (d, before, now) => `The figures as of ${d} were revised after that day: ${before} doses known that evening, ${now} today.`,
    changed: (d, before, now) => `The figures as of ${d} changed since you looked: ${before} doses then, ${now} now.`,
    show_known: (d) => `Show what was known on ${d}`, known_auditors: 'The "known at" view is for auditors.',
    bad_date: 'Expected a date as dd/mm/yyyy.', bad_time: 'Expected a time as dd/mm/yyyy hh:mm.',
    roles: { supervisor: 'supervisor', auditor: 'auditor', admin: 'admin', agent: 'agent', partner: 'partner', api: 'open access (no token)' },
    kinds: {
      second_dose_without_first: 'Second dose without a first',
      booster_without_primary_series: 'Booster without a complete primary series',
      dose_interval_too_short: 'Interval between two doses too short',
    },
    advice: {
      second_dose_without_first: 'Record the first dose the person really had (RecordExternalDose if it was given elsewhere), or reverse the second dose if it too was entered in error.',
      booster_without_primary_series: 'Record the missing dose of the primary series (RecordExternalDose if it was given elsewhere), or reverse the booster if it was entered in error.',
      dose_interval_too_short: 'Check the dates of both doses: reverse the entry that is wrong and record it again with its true date.',
    },
    doses: { first: 'first', second: 'second', booster: 'booster' },
    errors: {
      forbidden: 'Your token does not allow this read.', missing_token: 'No token.',
      malformed_token: 'Malformed token.', unknown_token: 'Unknown token (revoked or mistyped).',
      expired_token: 'Expired token.', bad_as_of: 'Invalid "as of" date.', bad_known_at: 'Invalid "known at" time.',
      unknown_projection: 'A view the server does not know.', internal: 'Internal server error; try again.',
      unavailable: 'The log is unavailable for a moment; try again.',
    },
    error_other: 'Server error',
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem('ledger-lang') === 'en' ? 'en' : 'fr';
let token = null;
let me = null;
let reference = null;
let campaignDirectorates = [];
let applies = { tickets: true, sessions: true, survey: true };
let data = {};
let findings = null;
let revision = null;
const eveningTotals = new Map();
let shown = 0;
let sort = { key: 'name', dir: 1 };
let refreshTimer = null;
let refreshing = null;
let again = false;
let state = 'behind';
let following = false;

const t = (k) => TEXT[lang][k] || k;
const locale = () => (lang === 'fr' ? 'fr-FR' : 'en-GB');
const tz = () => (reference && reference.time_zone) || 'Europe/Paris';
const supervisor = () => me && me.role === 'supervisor';
const mayTravel = () => me && (me.role === 'auditor' || me.role === 'api');
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
const pad = (n) => String(n).padStart(2, '0');

// Dates as typed: dd/mm/yyyy (or yyyy-mm-dd). Returns yyyy-mm-dd, '' for empty, null if bad.
function parseDay(s) {
  s = (s || '').trim();
  if (!s) return '';
  let m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  let y, mo, d;
  if (m) [y, mo, d] = [+m[1], +m[2], +m[3]];
  else if ((m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(s))) [d, mo, y] = [+m[1], +m[2], +m[3]];
  else return null;
  const dt = new Date(Date.UTC(y, mo - 1, d));
  if (dt.getUTCFullYear() !== y || dt.getUTCMonth() !== mo - 1 || dt.getUTCDate() !== d) return null;
  return `${y}-${pad(mo)}-${pad(d)}`;
}
const showDay = (iso) => (iso ? `${iso.slice(8, 10)}/${iso.slice(5, 7)}/${iso.slice(0, 4)}` : '');

// The offset (minutes east of UTC) of a time zone at an instant.
function offsetAt(ms, zone) {
  const parts = {};
  for (const p of new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric',
    month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' }).formatToParts(ms)) parts[p.type] = p.value;
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
  return Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
}
// A wall-clock time typed as dd/mm/yyyy hh:mm[:ss] (or yyyy-mm-ddThh:mm[:ss]), read in the
// campaign's time zone: RFC 3339 with that zone's offset, '' for empty, null if bad.
function parseKnownAt(s) {
  s = (s || '').trim();
  if (!s) return '';
  const m = /^(\S+?)[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(s);
  const date = m && parseDay(m[1]);
  if (!date || +m[2] > 23) return null;
  const [y, mo, d] = date.split('-').map(Number);
  const wall = Date.UTC(y, mo - 1, d, +m[2], +m[3], +(m[4] || 0));
  let off = offsetAt(wall, tz());
  off = offsetAt(wall - off * 60000, tz());
  const sign = off < 0 ? '-' : '+';
  const a = Math.abs(off);
  return `${date}T${pad(+m[2])}:${m[3]}:${pad(+(m[4] || 0))}${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}
// RFC 3339 with an offset → dd/mm/yyyy hh:mm:ss as the campaign's clocks read it.
function showKnownAt(rfc) {
  const ms = Date.parse(rfc);
  if (Number.isNaN(ms)) return '';
  const w = new Date(ms + offsetAt(ms, tz()) * 60000);
  return `${pad(w.getUTCDate())}/${pad(w.getUTCMonth() + 1)}/${w.getUTCFullYear()} ${pad(w.getUTCHours())}:${pad(w.getUTCMinutes())}:${pad(w.getUTCSeconds())}`;
}

function errorText(e) {
  const known = e && e.code && TEXT[lang].errors[e.code];
  if (known) return known;
  return t('error_other') + (e && e.code ? ' (' + e.code + ')' : '') + (lang === 'en' && e && e.message ? ': ' + e.message : '');
}

async function api(path) {
  const r = await fetch(path, { headers: token ? { Authorization: 'Bearer ' + token } : {} });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error((body && body.error && body.error.message) || r.statusText);
    err.status = r.status;
    err.code = body && body.error && body.error.code;
    throw err;
  }
  return body;
}

function setStatus(s) {
  state = s;
  const el = $('status');
  const historic = knownAt() !== '';
  el.textContent = historic && s === 'live' ? t('historic') : t(s);
  el.dataset.state = s;
}

function applyLang() {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  $('lang').textContent = lang === 'fr' ? 'EN' : 'FR';
  $('as-of').placeholder = t('date_placeholder');
  $('known-at').placeholder = t('time_placeholder');
  $('tz').textContent = '(' + t('tz_hint') + ' ' + tz().replace(/^.*\//, '').replace('_', ' ') + ', ' + tz() + ')';
  setStatus(state);
  render();
}

function asOf() { return parseDay($('as-of').value) || ''; }
function knownAt() { return $('known-at-on').checked ? (parseKnownAt($('known-at').value) || '') : ''; }

function query(extra) {
  const p = new URLSearchParams(extra || {});
  if (asOf()) p.set('as_of', asOf());
  if (knownAt()) p.set('known_at', knownAt());
  const s = p.toString();
  return s ? '?' + s : '';
}

// Keeps as_of, known_at and lang in the address bar, so that a view can be shared or reloaded.
function keepInUrl() {
  const u = new URL(location.href);
  for (const [k, v] of [['as_of', asOf()], ['known_at', knownAt()]]) {
    if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
  }
  if (lang === 'en') u.searchParams.set('lang', 'en'); else u.searchParams.delete('lang');
  history.replaceState(null, '', u.pathname + u.search);
}

async function load(name) {
  try { return { ok: await api('/v1/projections/' + name + query()) }; }
  catch (e) { if (e.status === 401) throw e; return { err: e }; }
}

async function loadFindings() {
  try { return { ok: await api('/v1/findings' + query()) }; }
  catch (e) { if (e.status === 401) throw e; return { err: e }; }
}

const curveName = () => (supervisor() ? 'doses_by_day_by_directorate' : 'doses_by_day');

async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      try {
        const names = ['doses_by_directorate', curveName(), 'tickets_by_directorate', 'session_attendance', 'survey_coverage', 'data_quality'];
        const got = await Promise.all([...names.map(load), loadFindings()]);
        const next = {};
        names.forEach((n, i) => { next[n] = got[i]; });
        next.curve = next[curveName()];
        data = next;
        findings = got[names.length];
        const pos = got.map((g) => (g.ok ? g.ok.position : 0));
        shown = Math.max(shown, ...pos);
        revision = await checkRevision();
        render();
        if (state !== 'disconnected') setStatus('live');
      } catch (e) {
        if (e.status === 401) { signOut(errorText(e)); return; }
        setStatus('behind');
      }
    } while (again);
  })();
  try { await refreshing; } finally { refreshing = null; }
}

// Figures for a past date that moved: since the evening of that date (auditors can ask the
// ledger what it knew then), or since this page first showed them.
async function checkRevision() {
  const d = asOf();
  const g = data.doses_by_directorate;
  if (!d || knownAt() || !g || !g.ok) return null;
  const now = g.ok.totals.total;
  const key = 'ledger-seen:' + d + ':' + (me && me.token_id || '');
  const seen = JSON.parse(sessionStorage.getItem(key) || 'null');
  const today = new Date().toISOString().slice(0, 10);
  if (d >= today) return null;
  if (mayTravel()) {
    // What was known that evening never changes: asked once per date.
    const evening = parseKnownAt(d + ' 23:59:59');
    if (!eveningTotals.has(d)) {
      try {
        const then = await api('/v1/projections/doses_by_directorate?as_of=' + d + '&known_at=' + encodeURIComponent(evening));
        eveningTotals.set(d, then.totals.total);
      } catch (_) { eveningTotals.set(d, now); }
    }
    const before = eveningTotals.get(d);
    if (before !== now) return { kind: 'revised', before, now, at: evening };
  }
  if (!seen) { sessionStorage.setItem(key, JSON.stringify({ total: now, at: new Date().toISOString() })); return null; }
  if (seen.total !== now) return { kind: 'changed', before: seen.total, now, at: seen.at };
  return null;
}

function schedule() {
  if (state === 'live') setStatus('behind');
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 100);
}

function panelError(container, g) {
  container.replaceChildren(h('p', { class: 'note' }, g.err.status === 403 ? t('not_for_role') : errorText(g.err)));
}

function render() {
  if (!data.doses_by_directorate) return;
  $('sec-tickets').hidden = !applies.tickets;
  $('sec-sessions').hidden = !applies.sessions;
  $('sec-survey').hidden = !applies.survey;
  renderRevision();
  renderTotals();
  renderCurve();
  renderDirectorates();
  renderTickets();
  renderSessions();
  renderSurvey();
  renderQuality();
  $('position').textContent = t('position') + ' ' + num(shown);
  const role = me ? (TEXT[lang].roles[me.role] || me.role) : '';
  const who = me && me.auth ? t('role') + (lang === 'fr' ? ' : ' : ': ') + role + (me.directorates.length ? ' (' + me.directorates.map(dirName).join(', ') + ')' : '') : '';
  $('who').textContent = who;
  // Only per-site counts (session attendance) are ever masked: said where that panel shows.
  const masking = !!(me && me.suppressed && applies.sessions);
  $('masking').textContent = masking ? t('suppressed') : '';
  $('masking').hidden = !masking;
}

function renderRevision() {
  const box = $('revision');
  if (!revision) { box.hidden = true; box.replaceChildren(); return; }
  const d = day(asOf());
  const msg = TEXT[lang][revision.kind](d, num(revision.before), num(revision.now));
  const parts = [h('span', {}, msg)];
  if (mayTravel()) {
    const b = h('button', { type: 'button', id: 'show-known' }, t('show_known')(showKnownAt(revision.at)));
    b.addEventListener('click', () => {
      $('known-at').value = showKnownAt(revision.at);
      $('known-at-on').checked = true;
      keepInUrl();
      setStatus(state);
      refresh();
    });
    parts.push(' ', b);
  } else {
    parts.push(' ', h('span', { class: 'note' }, t('known_auditors')));
  }
  box.replaceChildren(...parts);
  box.dataset.kind = revision.kind;
  box.hidden = false;
}

function renderTotals() {
  const g = data.doses_by_directorate;
  $('h-totals').textContent = supervisor()
    ? t('yours') + ' (' + me.directorates.map(dirName).join(', ') + ')'
    : t('national');
  const tot = g.ok ? g.ok.totals : {};
  for (const k of ['total', 'first', 'second', 'booster']) {
    const el = $('total-' + (k === 'total' ? 'doses' : k));
    el.dataset.value = g.ok ? String(tot[k] ?? 0) : '';
    el.textContent = g.ok ? num(tot[k] ?? 0) : '—';
  }
}

// Cumulative rows by day: national as given, or for a supervisor the sum over its
// directorates of each one's running total on that day.
function curveRows(g) {
  const dateKey = 'day';
  if (!g.ok.columns.includes('directorate')) return { rows: g.ok.rows, dateKey };
  const days = [...new Set(g.ok.rows.map((r) => r[dateKey]))].sort();
  const byDir = new Map();
  for (const r of g.ok.rows) {
    if (!byDir.has(r.directorate)) byDir.set(r.directorate, []);
    byDir.get(r.directorate).push(r);
  }
  const rows = days.map((dd) => {
    const out = { [dateKey]: dd, total: 0, first: 0, second: 0, booster: 0 };
    for (const list of byDir.values()) {
      let last = null;
      for (const r of list) if (r[dateKey] <= dd) last = r;
      if (last) for (const k of ['total', 'first', 'second', 'booster']) out[k] += typeof last[k] === 'number' ? last[k] : 0;
    }
    return out;
  });
  return { rows, dateKey };
}

function renderCurve() {
  const box = $('curve');
  const g = data.curve;
  $('h-curve').textContent = supervisor() ? t('curve_yours') : t('curve');
  if (g.err) return panelError(box, g);
  const { rows, dateKey } = curveRows(g);
  if (!rows.length) return box.replaceChildren(h('p', { class: 'note' }, t('no_data')));
  const toDay = (s) => Date.parse(s.slice(0, 10) + 'T00:00:00Z') / 86400000;
  const x0 = toDay(rows[0][dateKey]);
  const x1 = Math.max(toDay(rows[rows.length - 1][dateKey]), x0 + 1);
  const ymax = Math.max(1, ...rows.map((r) => r.total || 0));
  const W = 640, H = 260, L = 48, R = 12, T = 12, B = 28;
  const X = (d) => L + ((d - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - (v / ymax) * (H - T - B);
  const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': $('h-curve').textContent });
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
  const sep = lang === 'fr' ? ' : ' : ': ';
  const legend = h('ul', { class: 'legend' }, ...['total', 'first', 'second', 'booster']
    .map((k) => h('li', { class: 'key-' + k }, t(k) + sep + num(rows[rows.length - 1][k] || 0))));
  box.replaceChildren(s, legend);
}

function dirName(id) {
  const d = reference && reference.directorates.find((x) => x.id === id);
  return d ? d.name : id;
}

function renderDirectorates() {
  const g = data.doses_by_directorate;
  const body = $('directorates').tBodies[0];
  if (g.err) { body.replaceChildren(h('tr', {}, h('td', { colspan: 6 }, errorText(g.err)))); return; }
  const byId = new Map(g.ok.rows.map((r) => [r.directorate, r]));
  const ids = new Set([...campaignDirectorates, ...byId.keys()]);
  if (supervisor()) for (const id of [...ids]) if (!me.directorates.includes(id)) ids.delete(id);
  const rows = [...ids].map((id) => {
    const r = byId.get(id) || {};
    return { id, name: dirName(id), first: r.first || 0, second: r.second || 0, booster: r.booster || 0, total: r.total || 0, agents: r.agents || 0 };
  });
  rows.sort((a, b) => {
    const x = a[sort.key], y = b[sort.key];
    const c = typeof x === 'string' ? x.localeCompare(y, locale()) : x - y;
    return c * sort.dir || a.name.localeCompare(b.name, locale());
  });
  body.replaceChildren(...rows.map((r) => h('tr', { 'data-directorate': r.id },
    h('th', { scope: 'row' }, r.name),
    ...['first', 'second', 'booster', 'total', 'agents'].map((k) => h('td', { class: 'num', 'data-key': k }, num(r[k]))))));
  for (const th of $('directorates').tHead.rows[0].cells) {
    th.setAttribute('aria-sort', th.dataset.key === sort.key ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

const ticketDirectorates = () => {
  const all = [...new Set(((reference && reference.partner_centres) || []).map((c) => c.directorate))];
  const ids = all.length ? all : ['lyon', 'marseille'];
  return ids.filter((id) => !supervisor() || me.directorates.includes(id)).sort();
};

function renderTickets() {
  const box = $('tickets');
  const g = data.tickets_by_directorate;
  if (!applies.tickets) return;
  if (g.err) return panelError(box, g);
  const cards = ticketDirectorates().map((id) => {
    const r = g.ok.rows.find((x) => x.directorate === id) || {};
    const issued = typeof r.issued === 'number' ? r.issued : 0;
    const bar = (k) => {
      const v = r[k] ?? 0;
      const w = typeof v === 'number' && issued > 0 ? Math.round((v / issued) * 100) : 0;
      const fill = h('span', { class: 'fill fill-' + k });
      fill.style.width = w + '%';
      return h('div', { class: 'bar' }, h('span', { class: 'bar-label' }, t(k)), h('span', { class: 'track' }, fill), h('span', { class: 'num' }, num(v)));
    };
    const centres = ((reference && reference.partner_centres) || []).filter((c) => c.directorate === id).map((c) => c.name);
    return h('div', { class: 'funnel', 'data-directorate': id }, h('h3', {}, dirName(id)),
      bar('issued'), bar('redeemed'), bar('expired'), bar('outstanding'),
      h('p', { class: 'note centres' }, centres.join(' · ')));
  });
  box.replaceChildren(...(cards.length ? cards : [h('p', { class: 'note' }, t('no_data'))]));
}

function renderSessions() {
  const box = $('sessions');
  const g = data.session_attendance;
  if (!applies.sessions) return;
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
  if (!applies.survey) return;
  if (g.err) { body.replaceChildren(h('tr', {}, h('td', { colspan: 5 }, g.err.status === 403 ? t('not_for_role') : errorText(g.err)))); return; }
  const pct = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? ' (' + new Intl.NumberFormat(locale(), { style: 'percent' }).format(a / b) + ')' : '');
  body.replaceChildren(...g.ok.rows.map((r) => h('tr', {},
    h('th', { scope: 'row' }, dirName(r.directorate)),
    h('td', { class: 'num' }, num(r.structures)),
    h('td', { class: 'num' }, num(r.residents)),
    h('td', { class: 'num' }, num(r.with_one_dose) + pct(r.with_one_dose, r.residents)),
    h('td', { class: 'num' }, num(r.fully_vaccinated) + pct(r.fully_vaccinated, r.residents)))));
}

// Open data-quality findings: a count per directorate and kind, then the list (pseudonyms
// only) with what to do.
function renderQuality() {
  const box = $('quality');
  const g = data.data_quality;
  if (!g) return;
  if (g.err) return panelError(box, g);
  const counts = g.ok.rows.filter((r) => (r.open || 0) > 0);
  const total = counts.reduce((a, r) => a + (typeof r.open === 'number' ? r.open : 0), 0);
  $('findings-count').textContent = num(total);
  $('findings-count').dataset.value = String(total);
  if (!counts.length) return box.replaceChildren(h('p', { class: 'note' }, t('findings_none')));
  const table = h('table', { id: 'quality-counts' },
    h('thead', {}, h('tr', {}, h('th', {}, t('directorate')), h('th', {}, t('findings_open')), h('th', { class: 'num' }, ''))),
    h('tbody', {}, ...counts.map((r) => h('tr', { 'data-directorate': r.directorate },
      h('th', { scope: 'row' }, dirName(r.directorate)), h('td', {}, TEXT[lang].kinds[r.kind] || r.kind), h('td', { class: 'num' }, num(r.open))))));
  const parts = [h('div', { class: 'scroll' }, table)];
  if (findings && findings.ok) {
    const items = findings.ok.findings.map((f) => h('li', { class: 'finding', 'data-kind': f.kind, 'data-directorate': f.directorate },
      h('strong', {}, day(f.date) + ' — ' + dirName(f.directorate) + ' — ' + (TEXT[lang].kinds[f.kind] || f.kind)),
      h('div', {}, t('person') + (lang === 'fr' ? ' : ' : ': '), h('code', {}, f.person_id || '—')),
      h('div', {}, t('entries') + (lang === 'fr' ? ' : ' : ': ') + f.entries.map((e) => (TEXT[lang].doses[e.dose] || e.dose) + ' ' + day(e.date)
        + (e.ofii ? '' : ' (' + t('elsewhere') + ')') + (e.reversed ? ' — ' + t('reversed') : '') + ' [' + t('command') + ' ' + e.command_id.slice(0, 8) + '…]').join(' ; ')),
      h('div', { class: 'todo' }, t('todo') + (lang === 'fr' ? ' : ' : ': ') + (TEXT[lang].advice[f.kind] || f.action))));
    parts.push(h('ul', { id: 'findings-list', class: 'findings' }, ...items));
  } else if (findings && findings.err) {
    parts.push(h('p', { class: 'note' }, findings.err.status === 403 ? t('not_for_role') : errorText(findings.err)));
  }
  box.replaceChildren(...parts);
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

// Which panels concern the caller: a supervisor sees the tickets, sessions and survey panels
// only where its directorates have any (at any date).
async function decidePanels() {
  applies = { tickets: true, sessions: true, survey: true };
  if (!supervisor()) return;
  const any = async (name) => {
    try { return (await api('/v1/projections/' + name)).rows.length > 0; } catch (_) { return false; }
  };
  applies.tickets = ticketDirectorates().length > 0;
  [applies.sessions, applies.survey] = await Promise.all([any('session_attendance'), any('survey_coverage')]);
}

async function start() {
  const params = new URLSearchParams(location.search);
  if (params.get('lang') === 'en' || params.get('lang') === 'fr') lang = params.get('lang');
  applyLang();
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get('token')) {
    sessionStorage.setItem('ledger-token', fragment.get('token'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  token = sessionStorage.getItem('ledger-token');
  if (params.get('as_of') && parseDay(params.get('as_of'))) $('as-of').value = showDay(parseDay(params.get('as_of')));
  try {
    me = await api('/v1/whoami');
  } catch (e) {
    signOut(token ? errorText(e) : '');
    return;
  }
  if (['agent', 'partner', 'admin'].includes(me.role)) {
    signOut('');
    $('login-error').textContent = t('cannot_read') + (TEXT[lang].roles[me.role] || me.role);
    return;
  }
  $('login').hidden = true;
  $('main').hidden = false;
  $('status').hidden = false;
  $('known-at-box').hidden = !mayTravel();
  try { reference = await api('/v1/reference'); } catch (_) { reference = null; }
  applyLang();
  if (mayTravel() && params.get('known_at') && !Number.isNaN(Date.parse(params.get('known_at')))) {
    $('known-at').value = showKnownAt(params.get('known_at'));
    $('known-at-on').checked = true;
  }
  try {
    const latest = await api('/v1/projections/doses_by_directorate');
    campaignDirectorates = latest.rows.map((r) => r.directorate);
  } catch (_) { campaignDirectorates = []; }
  await decidePanels();
  keepInUrl();
  await refresh();
  if (!following) { following = true; follow(); }
}

function checkInput(input, parse, bad) {
  const ok = input.value.trim() === '' || parse(input.value) !== null;
  input.setCustomValidity(ok ? '' : t(bad));
  input.setAttribute('aria-invalid', ok ? 'false' : 'true');
  if (!ok) input.reportValidity();
  return ok;
}

document.addEventListener('DOMContentLoaded', () => {
  $('lang').addEventListener('click', () => {
    lang = lang === 'fr' ? 'en' : 'fr';
    localStorage.setItem('ledger-lang', lang);
    keepInUrl();
    applyLang();
  });
  $('as-of').addEventListener('change', () => {
    if (!checkInput($('as-of'), parseDay, 'bad_date')) return;
    if (asOf()) $('as-of').value = showDay(asOf());
    keepInUrl();
    refresh();
  });
  $('known-at-on').addEventListener('change', () => { keepInUrl(); setStatus(state); refresh(); });
  $('known-at').addEventListener('change', () => {
    if (!checkInput($('known-at'), parseKnownAt, 'bad_time')) return;
    if (knownAt()) $('known-at').value = showKnownAt(knownAt());
    if ($('known-at-on').checked) { keepInUrl(); refresh(); }
  });
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
