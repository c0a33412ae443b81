// Shopcall operator dashboard: the business view of /api/reports/* (KPIs, daily trends,
// call quality joined to results, staff performance, next week's staffing plan).
//
// Charts are drawn here as SVG from the API's numbers (no chart library, no CDN). Every
// figure the API returns lists the conversations behind it; every number on this page that
// has such a list opens it in a side drawer, and each conversation there opens its record.
//
// Every text comes from the catalogues (locales/<lang>/{common,dashboard}.json); the
// language is the operator's choice (the picker, kept in localStorage), else the browser's
// languages. Numbers, shares, money and dates are formatted with Intl for that language.

import { errorText as commonErrorText } from './errors.js';
import { language, pickLanguage, setLanguage, t, translatePage } from './i18n.js';
import { ShopcallError, fetchJson } from './protocol.js';
import { formatDateTime, formatDuration, formatPrice, h, loadJson, saveJson } from './ui.js';

const TOKEN_KEY = 'shopcall.operator';
const LANGUAGE_KEY = 'shopcall.dashboard.language';
const NAMESPACES = ['common', 'dashboard'];
const SVG_NS = 'http://www.w3.org/2000/svg';
const DAY_S = 86400;
// The API's weekday names start with these (plan.missed_last_week_conversations[].weekday).
const WEEKDAY_IDS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const COLOURS = { blue: '#2563eb', orange: '#f97316', green: '#16a34a', purple: '#7c3aed',
  teal: '#0e7490', red: '#dc2626', grey: '#9ca3af' };
let TZ = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch {
    return 'UTC';
  }
})();

const $ = (id) => document.getElementById(id);
const state = { token: null, stores: [], plans: [], loading: 0, period: null, data: null,
  signinError: null, loadError: null };

// Formatting (Intl, for the language in use) ----------------------------------------------
const formats = new Map();

/** A cached Intl.NumberFormat for the current language. */
function numFmt(options = {}) {
  const key = `${language()}|${JSON.stringify(options)}`;
  if (!formats.has(key)) formats.set(key, new Intl.NumberFormat(language(), options));
  return formats.get(key);
}

const fmtInt = (v) => numFmt({ maximumFractionDigits: 0 }).format(v);
const fmtDecimal = (v, digits = 1) => numFmt({ maximumFractionDigits: digits }).format(v);
const fmtPercent = (v, digits = 1) => numFmt({ style: 'percent', minimumFractionDigits: digits,
  maximumFractionDigits: digits }).format(v);
const fmtUnit = (v, unit, digits = 1) => numFmt({ style: 'unit', unit, unitDisplay: 'short',
  maximumFractionDigits: digits }).format(v);

function fmtFigure(fig) {
  if (!fig || fig.value === null || fig.value === undefined) return '–';
  const v = fig.value;
  switch (fig.unit) {
    case 'count': return fmtInt(v);
    case 'share': return fmtPercent(v);
    case 'seconds': return fmtSeconds(v);
    case 'hours': return fmtUnit(v, 'hour');
    case 'money': return fig.currency ? formatPrice(v, fig.currency, language())
      : numFmt({ minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(v);
    case 'score': return numFmt({ maximumFractionDigits: 0, signDisplay: 'exceptZero' })
      .format(Math.round(v));
    default: return numFmt({ minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(v);
  }
}

function fmtSeconds(s) {
  if (s < 60) return fmtUnit(s, 'second', s < 10 ? 1 : 0);
  if (s < 3600) return formatDuration(s, language());
  return fmtUnit(s / 3600, 'hour');
}

/** "Mon 13" / "Mo., 13." / "lun. 13" for an ISO date (a calendar day, no time zone). */
function shortDate(iso) {
  return new Intl.DateTimeFormat(language(), { weekday: 'short', day: 'numeric', timeZone: 'UTC' })
    .format(new Date(`${iso}T12:00:00Z`));
}

/** The short name of weekday `d` (0 = Monday) in the language in use. */
function weekdayName(d) {
  // 2024-01-01 was a Monday.
  return new Intl.DateTimeFormat(language(), { weekday: 'short', timeZone: 'UTC' })
    .format(new Date(Date.UTC(2024, 0, 1 + d, 12)));
}

function fmtDate(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleDateString(language(), { dateStyle: 'medium' });
}

/** A catalogue text for an API value (state, channel, call kind), else the value itself. */
function valueText(group, value) {
  const key = `dashboard.value.${group}.${value}`;
  const text = t(key);
  return text === key ? String(value) : text;
}

// SVG ------------------------------------------------------------------------------------
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * p >= value - 1e-12) return step * p;
  return 10 * p;
}

/** Make an SVG mark behave like a button that opens the conversations behind it. */
function clickable(el, label, open) {
  el.setAttribute('tabindex', '0');
  el.setAttribute('role', 'button');
  el.setAttribute('aria-label', label);
  el.classList.add('hit');
  el.addEventListener('click', open);
  el.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); }
  });
  return el;
}

/**
 * Grouped bars with an optional line on a right-hand axis.
 * series: [{name, colour, values: [number|null], ids?: [[id]], fmt}]
 * line: {name, colour, values, fmt, max} | null
 */
function barChart(container, { labels, series, line = null, fmt = fmtInt,
  max = null, ticks = 4, empty = null }) {
  container.replaceChildren();
  const W = 560;
  const H = 240;
  const m = { l: 44, r: line ? 44 : 12, t: 14, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.values).filter((v) => typeof v === 'number');
  if (!labels.length) {
    container.append(h('p', { class: 'empty', text: empty || t('dashboard.chart.empty') }));
    return;
  }
  const top = max ?? niceMax(Math.max(0, ...all));
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img',
    'aria-label': series.map((s) => s.name).join(', ') });
  for (let i = 0; i <= ticks; i += 1) {
    const y = m.t + ph - (ph * i) / ticks;
    root.append(svg('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, class: 'grid' }));
    root.append(svg('text', { x: m.l - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' },
      fmt((top * i) / ticks)));
    if (line) {
      root.append(svg('text', { x: W - m.r + 6, y: y + 4, class: 'axis' },
        line.fmt((line.max * i) / ticks)));
    }
  }
  const gw = pw / labels.length;
  const bw = Math.max(3, (gw * 0.72) / Math.max(1, series.length));
  const every = Math.ceil(labels.length / 12);
  labels.forEach((label, g) => {
    const x0 = m.l + g * gw + gw * 0.14;
    series.forEach((s, k) => {
      const v = s.values[g];
      if (typeof v !== 'number') return;
      const hgt = (ph * Math.max(0, v)) / top;
      const rect = svg('rect', { x: x0 + k * bw, y: m.t + ph - hgt, width: Math.max(1, bw - 2),
        height: Math.max(hgt, v > 0 ? 1 : 0), rx: 2, fill: s.colour, class: 'bar',
        'data-series': s.name, 'data-value': v },
      svg('title', {}, `${label} · ${s.name}: ${(s.fmt || fmt)(v)}`));
      const ids = s.ids && s.ids[g];
      if (ids && ids.length) {
        clickable(rect, t('dashboard.chart.barLabel', { series: s.name, label, value: (s.fmt || fmt)(v) }),
          () => openDrawer(`${s.name} · ${label}`, ids));
      }
      root.append(rect);
    });
    if (g % every === 0) {
      root.append(svg('text', { x: m.l + g * gw + gw / 2, y: m.t + ph + 16,
        class: 'axis', 'text-anchor': 'middle' }, label));
    }
  });
  if (line) {
    const pts = [];
    line.values.forEach((v, g) => {
      if (typeof v !== 'number') return;
      pts.push([m.l + g * gw + gw / 2, m.t + ph - (ph * v) / line.max, v, g]);
    });
    if (pts.length > 1) {
      root.append(svg('polyline', { points: pts.map((p) => `${p[0]},${p[1]}`).join(' '),
        fill: 'none', stroke: line.colour, 'stroke-width': 2.5, 'stroke-linejoin': 'round' }));
    }
    for (const [x, y, v, g] of pts) {
      root.append(svg('circle', { cx: x, cy: y, r: 4, fill: '#fff', stroke: line.colour,
        'stroke-width': 2.5 }, svg('title', {}, `${labels[g]} · ${line.name}: ${line.fmt(v)}`)));
    }
  }
  let lx = m.l;
  for (const s of [...series, ...(line ? [line] : [])]) {
    root.append(svg('rect', { x: lx, y: H - 14, width: 10, height: 10, rx: 2, fill: s.colour }));
    root.append(svg('text', { x: lx + 14, y: H - 5, class: 'legend' }, s.name));
    lx += 30 + s.name.length * 6.5;
  }
  container.append(root);
}

function heatMap(container, grid, { fmt, title, ids = null }) {
  container.replaceChildren();
  const cell = 34;
  const left = 44;
  const top = 24;
  const W = left + 24 * cell + 4;
  const H = top + 7 * cell + 4;
  const values = grid.flat().filter((v) => typeof v === 'number');
  const high = Math.max(0, ...values) || 1;
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'heat-svg', role: 'img',
    'aria-label': title });
  for (let hr = 0; hr < 24; hr += 1) {
    if (hr % 2 === 0) {
      root.append(svg('text', { x: left + hr * cell + cell / 2 - 1, y: top - 7, class: 'axis',
        'text-anchor': 'middle' }, String(hr).padStart(2, '0')));
    }
  }
  grid.forEach((row, d) => {
    const y = top + d * cell;
    root.append(svg('text', { x: left - 8, y: y + cell * 0.62, class: 'axis',
      'text-anchor': 'end' }, weekdayName(d)));
    row.forEach((v, hr) => {
      const x = left + hr * cell;
      const level = typeof v === 'number' ? v / high : null;
      const label = `${weekdayName(d)} ${String(hr).padStart(2, '0')}:00`;
      const rect = svg('rect', { x, y, width: cell - 3, height: cell - 3, rx: 4,
        class: 'cell', fill: level === null ? '#f3f4f6' : heatColour(level), 'data-day': d,
        'data-hour': hr, 'data-value': v ?? '' },
      svg('title', {}, `${label}: ${level === null ? t('dashboard.plan.noValue') : fmt(v)}`));
      const cellIds = ids && ids[d * 24 + hr];
      if (cellIds && cellIds.length) {
        clickable(rect, `${title}, ${label}: ${fmt(v)}`, () => openDrawer(`${title} · ${label}`,
          cellIds));
      }
      root.append(rect);
      if (typeof v === 'number' && v > 0) {
        root.append(svg('text', { x: x + (cell - 3) / 2, y: y + cell * 0.6,
          class: `cell-text${level > 0.55 ? ' on-dark' : ''}`, 'text-anchor': 'middle' }, fmt(v)));
      }
    });
  });
  container.append(root);
}

function heatColour(t) {
  const lo = [236, 246, 248];
  const hi = [14, 96, 112];
  const c = lo.map((a, i) => Math.round(a + (hi[i] - a) * Math.min(1, Math.max(0, t))));
  return `rgb(${c.join(',')})`;
}

// Data -----------------------------------------------------------------------------------
function period() {
  const kind = $('period').value;
  const now = Date.now() / 1000;
  const midnight = (date) => new Date(date.getFullYear(), date.getMonth(), date.getDate())
    .getTime() / 1000;
  const today = new Date();
  const monday = new Date(today);
  monday.setDate(today.getDate() - ((today.getDay() + 6) % 7));
  if (kind === 'this-week') return { from: midnight(monday), to: now };
  if (kind === 'last-week') {
    const prev = new Date(monday);
    prev.setDate(monday.getDate() - 7);
    return { from: midnight(prev), to: midnight(monday) };
  }
  if (kind === 'custom') {
    const from = $('from').valueAsDate;
    const to = $('to').valueAsDate;
    if (!from || !to) throw new ShopcallError('invalid_message', t('dashboard.error.pickDates'));
    // valueAsDate is UTC midnight; take the same calendar dates in local time.
    const start = new Date(from.getUTCFullYear(), from.getUTCMonth(), from.getUTCDate());
    const end = new Date(to.getUTCFullYear(), to.getUTCMonth(), to.getUTCDate() + 1);
    return { from: start.getTime() / 1000, to: Math.min(end.getTime() / 1000, now) };
  }
  const days = Number(kind) || 7;
  const first = new Date(today);
  first.setDate(today.getDate() - (days - 1));
  return { from: midnight(first), to: now };
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

function api(path, params) {
  return fetchJson(`${path}?${query(params)}`, { token: state.token });
}

async function load() {
  const run = ++state.loading;
  const store = $('store').value;
  const channel = $('channel').value;
  let p;
  try {
    p = period();
  } catch (err) {
    showLoadError(err);
    return;
  }
  state.period = p;
  $('status').textContent = t('dashboard.loading');
  document.body.classList.add('busy');
  try {
    const base = { from: p.from.toFixed(3), to: p.to.toFixed(3), store };
    const [kpis, daily, staff, staffing] = await Promise.all([
      api('/api/reports/kpis', { ...base, channel }),
      api('/api/reports/daily', { ...base, channel, tz: TZ }),
      api('/api/reports/staff', base),
      api('/api/reports/staffing', { store, tz: TZ }),
    ]);
    if (run !== state.loading) return; // a newer filter change won
    $('load-error').hidden = true;
    state.data = { kpis, daily, staff, period: p, at: Date.now() };
    state.plans = staffing.stores;
    renderAll();
    document.body.dataset.loaded = String(run);
  } catch (err) {
    if (run !== state.loading) return;
    if (err.code === 'invalid_message' && /^tz:/.test(err.message) && TZ !== 'UTC') {
      TZ = 'UTC'; // a zone this browser knows but the server does not: fall back, say so
      load();
      return;
    }
    handleError(err);
  } finally {
    if (run === state.loading) document.body.classList.remove('busy');
  }
}

// Rendering ------------------------------------------------------------------------------
/** Everything from the last load, again (after a language change too). */
function renderAll() {
  const data = state.data;
  if (!data) return;
  renderTiles(data.kpis.figures);
  renderDaily(data.daily.days);
  renderQuality(data.kpis.figures);
  renderNps(data.kpis.figures);
  renderStaff(data.staff.staff);
  renderPlanStores();
  renderPlan();
  const p = data.period;
  const n = data.kpis.figures.conversations.value;
  $('status').textContent = t('dashboard.status', {
    count: n, number: fmtInt(n), from: fmtDate(p.from), to: fmtDate(p.to - 0.001), tz: TZ,
    updated: new Date(data.at).toLocaleTimeString(language(), { timeStyle: 'short' }) });
}

// [figure name, catalogue key of its label, sub-line]
const TILES = [
  ['conversations', 'dashboard.tile.conversations'],
  ['missed', 'dashboard.tile.missed', (f) => (f.missed_share && f.missed_share.value !== null
    ? t('dashboard.tile.missedShare', { share: fmtFigure(f.missed_share) }) : null)],
  ['conversion_rate', 'dashboard.tile.conversion', (f) => t('dashboard.tile.orders',
    { count: f.orders ? f.orders.value : 0, number: fmtFigure(f.orders) })],
  ['revenue', 'dashboard.tile.revenue'],
  ['average_order_value', 'dashboard.tile.averageOrder'],
  ['satisfaction_avg', 'dashboard.tile.satisfaction', (f) => (f.satisfaction_top2_share
    && f.satisfaction_top2_share.value !== null
    ? t('dashboard.tile.topRated', { share: fmtFigure(f.satisfaction_top2_share) })
    : t('dashboard.tile.outOfFive'))],
  ['nps', 'dashboard.tile.nps', (f) => t('dashboard.tile.ratings',
    { count: f.ratings ? f.ratings.value : 0, number: fmtFigure(f.ratings) })],
  ['queue_wait_p50_s', 'dashboard.tile.queueWait',
    (f) => t('dashboard.tile.median', { p90: fmtFigure(f.queue_wait_p90_s) })],
  ['first_response_p50_s', 'dashboard.tile.firstResponse',
    (f) => t('dashboard.tile.median', { p90: fmtFigure(f.first_response_p90_s) })],
  ['cost_per_conversation', 'dashboard.tile.costPerConversation',
    (f) => (f.staffed_hours && f.staffed_hours.value !== null
      ? t('dashboard.tile.staffed', { hours: fmtFigure(f.staffed_hours) })
      : t('dashboard.tile.noStaffCost'))],
];

function figuresNamed(figures, name) {
  return Object.entries(figures).filter(([, f]) => f.name === name).map(([key, f]) => ({ key, ...f }));
}

function tile(key, label, fig, sub) {
  const ids = fig ? fig.conversation_ids || [] : [];
  const el = h('button', { type: 'button', class: 'tile', dataset: { figure: key },
    disabled: !ids.length, title: ids.length ? t('dashboard.tile.showConversations') : null,
    onclick: () => openDrawer(label, ids, fig) },
  h('span', { class: 'label', text: label }),
  h('span', { class: 'value', text: fmtFigure(fig) }),
  h('span', { class: 'sub', text: sub || t('dashboard.conversations',
    { count: ids.length, number: fmtInt(ids.length) }) }));
  return el;
}

function renderTiles(figures) {
  const out = [];
  for (const [name, labelKey, sub] of TILES) {
    const label = t(labelKey);
    const figs = figuresNamed(figures, name);
    if (!figs.length) {
      if (name === 'revenue' || name === 'average_order_value') {
        out.push(tile(name, label, { value: null, unit: 'money', conversation_ids: [] },
          t('dashboard.tile.noOrderValue')));
      }
      continue;
    }
    for (const f of figs) {
      const text = f.currency ? t('dashboard.tile.withCurrency', { label, currency: f.currency })
        : label;
      out.push(tile(f.key, text, f, sub ? sub(figures) : null));
    }
  }
  $('tiles').replaceChildren(...out);
}

function dayValue(day, name) {
  const f = day.figures[name];
  return f ? f.value : null;
}

function renderDaily(days) {
  const labels = days.map((d) => shortDate(d.date));
  barChart($('chart-daily'), {
    labels,
    series: [
      { name: t('dashboard.series.conversations'), colour: COLOURS.blue,
        values: days.map((d) => dayValue(d, 'conversations')),
        ids: days.map((d) => d.figures.conversations.conversation_ids) },
      { name: t('dashboard.series.missed'), colour: COLOURS.orange,
        values: days.map((d) => dayValue(d, 'missed')),
        ids: days.map((d) => d.figures.missed.conversation_ids) },
    ],
  });
  const currencies = [...new Set(days.flatMap((d) => Object.values(d.figures)
    .filter((f) => f.name === 'revenue' && f.currency).map((f) => f.currency)))].sort();
  const cur = currencies[0];
  const revenue = cur ? days.map((d) => (d.figures[`revenue_${cur}`] || { value: 0 }).value) : [];
  // Axis money without cents when whole ("€1,200", "1.200 €").
  const money = (v) => (cur ? numFmt({ style: 'currency', currency: cur,
    minimumFractionDigits: v % 1 ? 2 : 0, maximumFractionDigits: 2 }).format(v) : fmtDecimal(v, 2));
  barChart($('chart-sales'), {
    labels,
    series: cur ? [{ name: t('dashboard.series.revenue', { currency: cur }), colour: COLOURS.green,
      values: revenue, fmt: money,
      ids: days.map((d) => (d.figures[`revenue_${cur}`] || {}).conversation_ids || []) }] : [],
    fmt: money,
    line: { name: t('dashboard.series.conversion'), colour: COLOURS.purple, max: 1,
      values: days.map((d) => dayValue(d, 'conversion_rate')),
      fmt: (v) => fmtPercent(v, 0) },
  });
  if (currencies.length > 1) {
    $('chart-sales').append(h('p', { class: 'muted small',
      text: t('dashboard.chart.otherCurrencies', { currencies: currencies.slice(1).join(', ') }) }));
  }
  barChart($('chart-satisfaction'), {
    labels,
    max: 5,
    ticks: 5,
    fmt: (v) => fmtDecimal(v, 1),
    series: [{ name: t('dashboard.series.satisfaction'), colour: COLOURS.teal,
      values: days.map((d) => dayValue(d, 'satisfaction_avg')),
      ids: days.map((d) => d.figures.ratings.conversation_ids) }],
  });
}

const SHARE_COUNTS = { trouble_share: 'calls_with_trouble', freeze_share: 'calls_with_freezes',
  fallback_share: 'calls_with_fallbacks', high_loss_share: 'calls_with_high_loss' };

function renderNps(f) {
  const pill = $('nps-pill');
  pill.textContent = f.nps && f.nps.value !== null
    ? t('dashboard.nps.pill', { nps: fmtFigure(f.nps), count: f.ratings ? f.ratings.value : 0,
      number: fmtFigure(f.ratings) })
    : t('dashboard.nps.none');
}


/** A bar's filled part. Sized through the CSSOM, not a style attribute: the dashboard's
 * Content-Security-Policy has no 'unsafe-inline' for styles. */
function barFill(pct, colour) {
  const fill = h('span', { class: 'fill' });
  fill.style.width = `${pct}%`;
  fill.style.background = colour;
  return fill;
}

function renderQuality(f) {
  const box = $('quality');
  const measured = f.calls_measured;
  if (!measured || !measured.value) {
    box.replaceChildren(h('p', { class: 'empty', text: t('dashboard.quality.none') }));
    return;
  }
  const row = (key, labelKey) => {
    const count = f[SHARE_COUNTS[key]];
    return tile(key, t(labelKey), f[key], t('dashboard.quality.ofCalls', {
      count: measured.value, part: fmtInt(count ? count.value : 0), total: fmtInt(measured.value) }));
  };
  const tiles = h('div', { class: 'tiles quality-tiles' },
    tile('calls_measured', t('dashboard.quality.measured'), measured, t('dashboard.quality.measuredSub')),
    row('trouble_share', 'dashboard.quality.trouble'),
    row('freeze_share', 'dashboard.quality.froze'),
    row('fallback_share', 'dashboard.quality.fallback'),
    row('high_loss_share', 'dashboard.quality.highLoss'));
  const bars = h('div', { class: 'compare' });
  for (const [key, labelKey, colour] of [
    ['conversion_without_trouble', 'dashboard.quality.withoutTrouble', COLOURS.green],
    ['conversion_with_trouble', 'dashboard.quality.withTrouble', COLOURS.red]]) {
    const label = t(labelKey);
    const fig = f[key];
    const pct = fig && fig.value !== null ? fig.value * 100 : 0;
    const ids = (fig && fig.conversation_ids) || [];
    bars.append(h('button', { type: 'button', class: 'compare-row', dataset: { figure: key },
      disabled: !ids.length,
      onclick: () => openDrawer(t('dashboard.quality.conversionOf', { label }), ids, fig) },
    h('span', { class: 'label', text: label }),
    h('span', { class: 'track' }, barFill(pct, colour)),
    h('span', { class: 'value', text: fmtFigure(fig) }),
    h('span', { class: 'sub', text: t('dashboard.quality.conversations',
      { count: ids.length, number: fmtInt(ids.length) }) })));
  }
  box.replaceChildren(tiles, h('h3', { text: t('dashboard.quality.conversionTitle') }), bars);
}

function renderStaff(staff) {
  const body = $('staff-table').querySelector('tbody');
  const cell = (fig, label) => {
    if (!fig) return h('td', { class: 'num', text: '–' });
    const ids = fig.conversation_ids || [];
    const text = fmtFigure(fig);
    return h('td', { class: 'num' }, ids.length
      ? h('button', { type: 'button', class: 'link', text, title: t('dashboard.staff.showConversations'),
        onclick: () => openDrawer(label, ids, fig) })
      : text);
  };
  const rows = staff.map((s) => {
    const f = s.figures;
    const who = s.name || s.staff_id;
    const revenue = figuresNamed(f, 'revenue');
    return h('tr', { dataset: { staff: s.staff_id } },
      h('th', { scope: 'row' }, h('span', { class: 'name', text: who }),
        h('span', { class: 'muted small', text: ' ' + s.staff_id })),
      h('td', { text: s.store || '–' }),
      h('td', { class: 'num', text: fmtFigure(f.time_online_s) }),
      cell(f.handled, t('dashboard.staff.handled', { name: who })),
      cell(f.calls, t('dashboard.staff.calls', { name: who })),
      cell(f.average_handling_time_s, t('dashboard.staff.handlingTime', { name: who })),
      cell(f.orders, t('dashboard.staff.orders', { name: who })),
      revenue.length ? h('td', { class: 'num' }, revenue.map((r, i) => [i ? ', ' : '',
        h('button', { type: 'button', class: 'link', text: fmtFigure(r),
          onclick: () => openDrawer(t('dashboard.staff.revenue', { name: who }),
            r.conversation_ids, r) })]))
        : h('td', { class: 'num', text: '–' }),
      cell(f.satisfaction_avg, t('dashboard.staff.ratings', { name: who })),
      cell(f.nps, t('dashboard.staff.ratings', { name: who })));
  });
  body.replaceChildren(...rows);
  $('staff-empty').hidden = rows.length > 0;
}

function renderPlanStores() {
  const select = $('plan-store');
  const current = select.value;
  select.replaceChildren(...state.plans.map((p) => h('option', { value: p.store,
    text: (state.stores.find((s) => s.id === p.store) || {}).name || p.store })));
  if (state.plans.some((p) => p.store === current)) select.value = current;
  select.disabled = state.plans.length < 2;
}

function renderPlan() {
  const plan = state.plans.find((p) => p.store === $('plan-store').value) || state.plans[0];
  if (!plan) {
    $('heatmap').replaceChildren(h('p', { class: 'empty', text: t('dashboard.plan.noStore') }));
    $('plan-note').textContent = '';
    return;
  }
  const view = document.querySelector('input[name="plan-view"]:checked').value;
  const grid = plan[view];
  let ids = null;
  if (view === 'missed_last_week') {
    ids = new Array(168).fill(null);
    for (const m of plan.missed_last_week_conversations) {
      const day = WEEKDAY_IDS.findIndex((d) => String(m.weekday).toLowerCase().startsWith(d));
      if (day >= 0) ids[day * 24 + m.hour] = m.conversation_ids;
    }
  }
  const fmt = view === 'arrivals_per_hour' ? (v) => fmtDecimal(v, v >= 10 ? 0 : 1) : fmtInt;
  const title = t({ recommended_staff: 'dashboard.plan.title.recommended',
    missed_last_week: 'dashboard.plan.title.missed',
    arrivals_per_hour: 'dashboard.plan.title.arrivals' }[view]);
  heatMap($('heatmap'), grid, { fmt, title, ids });
  $('heatmap').dataset.store = plan.store;
  $('heatmap').dataset.view = view;
  $('plan-note').textContent = t('dashboard.plan.note', {
    arrivals: fmtInt(plan.arrivals), aht: fmtSeconds(plan.aht_s),
    concurrency: fmtDecimal(plan.concurrency, 1), share: fmtPercent(0.8, 0),
    answer: fmtUnit(60, 'second', 0), tz: TZ });
}

// Drill-down -----------------------------------------------------------------------------
function openDrawer(title, ids, fig = null) {
  const unique = [...new Set(ids || [])];
  $('drawer-title').textContent = title;
  const entries = (ids || []).length;
  const count = t('dashboard.conversations', { count: unique.length, number: fmtInt(unique.length) });
  $('drawer-note').textContent = fig && fig.count !== undefined && unique.length !== entries
    ? t('dashboard.drawer.entries', { conversations: count, entries: fmtInt(entries) }) : count;
  $('drawer-list').replaceChildren(...unique.map((id) => h('li', {},
    h('button', { type: 'button', class: 'link mono', text: id, onclick: () => showConversation(id) }))));
  $('drawer-detail').replaceChildren();
  $('drawer').hidden = false;
  $('drawer-close').focus();
}

async function showConversation(id) {
  const box = $('drawer-detail');
  box.replaceChildren(h('p', { class: 'muted', text: t('dashboard.loading') }));
  try {
    const data = await fetchJson(`/api/conversations/${encodeURIComponent(id)}`, { token: state.token });
    const c = data.conversation;
    const accepted = data.events.filter((e) => e.kind === 'accepted').map((e) => e.actor.replace('staff:', ''));
    const lang = language();
    const calls = data.calls.filter((k) => k.started_at).map((k) => t('dashboard.detail.call', {
      kind: valueText('kind', k.kind),
      duration: formatDuration((k.ended_at || k.started_at) - k.started_at, lang) }));
    const left = data.async_messages.length;
    const rows = [
      ['dashboard.detail.opened', formatDateTime(c.opened_at, lang)],
      ['dashboard.detail.closed', c.closed_at ? formatDateTime(c.closed_at, lang)
        : t('dashboard.detail.notYet')],
      ['dashboard.detail.store', c.store || t('dashboard.detail.anyStore')],
      ['dashboard.detail.channel', valueText('channel', c.channel)],
      ['dashboard.detail.skill', c.skill || '–'],
      ['dashboard.detail.state', valueText('state', c.state)],
      ['dashboard.detail.handledBy', accepted.join(', ') || t('dashboard.detail.nobody')],
      ['dashboard.detail.calls', calls.join(', ') || t('dashboard.detail.noCalls')],
      ['dashboard.detail.messages', fmtInt(data.messages.length)],
      ['dashboard.detail.leftMessage', left
        ? t('dashboard.detail.leftCount', { count: left, number: fmtInt(left),
          answered: fmtInt(data.async_messages.filter((m) => m.answered_at).length) })
        : t('dashboard.detail.no')],
      ['dashboard.detail.rating', data.rating ? t('dashboard.detail.rated', {
        satisfaction: fmtInt(data.rating.satisfaction),
        recommendation: fmtInt(data.rating.recommendation) }) : t('dashboard.detail.notRated')],
      ['dashboard.detail.outcome', data.outcome ? (data.outcome.order_placed
        ? t('dashboard.detail.order', {
          value: formatPrice(data.outcome.order_value, data.outcome.currency, lang) })
        : t('dashboard.detail.noOrder')) : t('dashboard.detail.notReported')],
    ];
    box.replaceChildren(h('h3', { class: 'mono', text: id }),
      h('dl', {}, rows.map(([k, v]) => [h('dt', { text: t(k) }), h('dd', { text: v })])));
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error', text: errorText(err) }));
  }
}

// Weekly report --------------------------------------------------------------------------
async function downloadWeekly() {
  const button = $('weekly');
  button.disabled = true;
  try {
    const resp = await fetch(`/api/reports/weekly?${query({ format: 'html', store: $('store').value, tz: TZ })}`,
      { headers: { Authorization: `Bearer ${state.token}` }, cache: 'no-store' });
    if (!resp.ok) {
      const body = await resp.json().catch(() => null);
      throw new ShopcallError((body && body.error && body.error.code) || `http_${resp.status}`,
        (body && body.error && body.error.message) || resp.statusText);
    }
    const name = /filename="([^"]+)"/.exec(resp.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await resp.blob());
    const a = h('a', { href: url, download: name ? name[1] : 'shopcall-weekly.html' });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
  }
}

// Sign-in and errors ---------------------------------------------------------------------
/** errors.js's text for a failed request, with the operator's own hints on tokens. */
function errorText(err) {
  const code = err && err.code;
  if (code === 'forbidden') return t('dashboard.error.forbidden');
  if (code === 'invalid_token' || code === 'expired_token' || code === 'unauthenticated') {
    return t('dashboard.error.token');
  }
  return commonErrorText(err);
}

function handleError(err) {
  if (['forbidden', 'invalid_token', 'expired_token', 'unauthenticated'].includes(err.code)) {
    signOut(err);
    return;
  }
  showLoadError(err);
}

function showLoadError(err) {
  state.loadError = err;
  $('status').textContent = '';
  $('load-error').textContent = errorText(err);
  $('load-error').hidden = false;
}

/** A sign-in problem: an error (its text follows the language) or nothing. */
function signInText(problem) {
  if (!problem) return '';
  return typeof problem === 'string' ? problem : errorText(problem);
}

function showSignIn(message) {
  $('dash').hidden = true;
  $('filters').hidden = true;
  for (const id of ['who', 'weekly', 'sign-out']) $(id).hidden = true;
  $('signin').hidden = false;
  state.signinError = message || null;
  $('signin-error').textContent = signInText(message);
  $('signin-error').hidden = !message;
  $('token').focus();
}

function signOut(message) {
  state.token = null;
  saveJson(TOKEN_KEY, null);
  showSignIn(message);
}

function tokenSubject(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return payload.sub || null;
  } catch {
    return null;
  }
}

async function signIn(token) {
  state.token = token;
  try {
    const { stores } = await fetchJson('/api/stores', { token });
    state.stores = stores;
  } catch (err) {
    state.token = null;
    if (['forbidden', 'invalid_token', 'expired_token', 'unauthenticated'].includes(err.code)) {
      saveJson(TOKEN_KEY, null);
    }
    showSignIn(err);
    return;
  }
  saveJson(TOKEN_KEY, { token });
  const storeSelect = $('store');
  const chosen = storeSelect.value;
  storeSelect.replaceChildren(h('option', { value: '', text: t('dashboard.filter.allStores'),
    dataset: { i18n: 'dashboard.filter.allStores' } }),
  ...state.stores.map((s) => h('option', { value: s.id, text: s.name || s.id })));
  if (state.stores.some((s) => s.id === chosen)) storeSelect.value = chosen;
  $('signin').hidden = true;
  $('dash').hidden = false;
  $('filters').hidden = false;
  renderWho();
  for (const id of ['who', 'weekly', 'sign-out']) $(id).hidden = false;
  await load();
}

function renderWho() {
  const who = state.token ? tokenSubject(state.token) : null;
  $('who').textContent = who ? t('dashboard.signedInAs', { name: who }) : '';
}

// Language ---------------------------------------------------------------------------------
/** The operator's choice on this device, else the browser's languages (not the page's). */
function chosenLanguage() {
  const saved = loadJson(LANGUAGE_KEY);
  if (typeof saved === 'string' && saved) return pickLanguage(saved);
  return pickLanguage(navigator.languages && navigator.languages.length
    ? navigator.languages : [navigator.language]);
}

async function useLanguage(lang) {
  try {
    await setLanguage(lang, NAMESPACES);
  } catch (err) {
    console.error('shopcall dashboard: catalogues could not be loaded', err);
  }
  formats.clear();
  translatePage(document);
  $('language').value = language();
}

/** The picker: load the other language and draw everything on the page again in it. */
async function changeLanguage(lang) {
  saveJson(LANGUAGE_KEY, lang);
  await useLanguage(lang);
  renderWho();
  if (state.signinError) $('signin-error').textContent = signInText(state.signinError);
  if (!$('load-error').hidden && state.loadError) $('load-error').textContent = errorText(state.loadError);
  $('drawer').hidden = true;
  if (state.data) renderAll();
  document.body.dataset.language = language();
}

async function init() {
  await useLanguage(chosenLanguage());
  document.body.dataset.language = language();
  $('language').addEventListener('change', () => changeLanguage($('language').value));
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) history.replaceState(null, '', location.pathname + location.search);
  const stored = loadJson(TOKEN_KEY);
  const token = match ? decodeURIComponent(match[1]) : stored && stored.token;
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (value) signIn(value);
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('weekly').addEventListener('click', downloadWeekly);
  $('period').addEventListener('change', () => {
    $('custom').hidden = $('period').value !== 'custom';
    if ($('period').value !== 'custom') load();
  });
  for (const id of ['from', 'to']) {
    $(id).addEventListener('change', () => {
      if ($('from').value && $('to').value) load();
    });
  }
  $('store').addEventListener('change', load);
  $('channel').addEventListener('change', load);
  $('plan-store').addEventListener('change', renderPlan);
  for (const radio of document.querySelectorAll('input[name="plan-view"]')) {
    radio.addEventListener('change', renderPlan);
  }
  $('drawer-close').addEventListener('click', () => { $('drawer').hidden = true; });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') $('drawer').hidden = true;
  });
  if (token) signIn(token);
  else showSignIn('');
}

init();
