// Shopcall operator dashboard: the business view of /api/reports/* (KPIs, daily trends,
// call quality joined to results, staff performance, next week's staffing plan).
//
// Charts are drawn here as SVG from the API's numbers (no chart library, no CDN). Every
// figure the API returns lists the conversations behind it; every number on this page that
// has such a list opens it in a side drawer, and each conversation there opens its record.

import { ShopcallError, fetchJson } from './protocol.js';
import { formatDateTime, formatDuration, formatPrice, h, loadJson, saveJson } from './ui.js';

const TOKEN_KEY = 'shopcall.operator';
const SVG_NS = 'http://www.w3.org/2000/svg';
const DAY_S = 86400;
const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
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
const state = { token: null, stores: [], plans: [], loading: 0, period: null };

// Formatting -----------------------------------------------------------------------------
const intFmt = new Intl.NumberFormat('en');

function fmtFigure(fig) {
  if (!fig || fig.value === null || fig.value === undefined) return '–';
  const v = fig.value;
  switch (fig.unit) {
    case 'count': return intFmt.format(v);
    case 'share': return `${(v * 100).toFixed(1)}%`;
    case 'seconds': return fmtSeconds(v);
    case 'hours': return `${v.toFixed(1)} h`;
    case 'money': return fig.currency ? formatPrice(v, fig.currency, 'en') : v.toFixed(2);
    case 'score': return `${v > 0 ? '+' : ''}${Math.round(v)}`;
    default: return v.toFixed(2);
  }
}

function fmtSeconds(s) {
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return formatDuration(s);
  return `${(s / 3600).toFixed(1)} h`;
}

function shortDate(iso) {
  const d = new Date(`${iso}T12:00:00Z`);
  return `${WEEKDAYS[(d.getUTCDay() + 6) % 7]} ${d.getUTCDate()}`;
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
function barChart(container, { labels, series, line = null, fmt = (v) => intFmt.format(v),
  max = null, ticks = 4, empty = 'Nothing in this period.' }) {
  container.replaceChildren();
  const W = 560;
  const H = 240;
  const m = { l: 44, r: line ? 44 : 12, t: 14, b: 44 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = series.flatMap((s) => s.values).filter((v) => typeof v === 'number');
  if (!labels.length) {
    container.append(h('p', { class: 'empty', text: empty }));
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
        clickable(rect, `${s.name} on ${label}: ${(s.fmt || fmt)(v)}`,
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
      'text-anchor': 'end' }, WEEKDAYS[d]));
    row.forEach((v, hr) => {
      const x = left + hr * cell;
      const t = typeof v === 'number' ? v / high : null;
      const label = `${WEEKDAYS[d]} ${String(hr).padStart(2, '0')}:00`;
      const rect = svg('rect', { x, y, width: cell - 3, height: cell - 3, rx: 4,
        class: 'cell', fill: t === null ? '#f3f4f6' : heatColour(t), 'data-day': d,
        'data-hour': hr, 'data-value': v ?? '' },
      svg('title', {}, `${label}: ${t === null ? 'no value' : fmt(v)}`));
      const cellIds = ids && ids[d * 24 + hr];
      if (cellIds && cellIds.length) {
        clickable(rect, `${title}, ${label}: ${fmt(v)}`, () => openDrawer(`${title} · ${label}`,
          cellIds));
      }
      root.append(rect);
      if (typeof v === 'number' && v > 0) {
        root.append(svg('text', { x: x + (cell - 3) / 2, y: y + cell * 0.6,
          class: `cell-text${t > 0.55 ? ' on-dark' : ''}`, 'text-anchor': 'middle' }, fmt(v)));
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
    if (!from || !to) throw new ShopcallError('invalid_message', 'Pick both dates.');
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
  $('status').textContent = 'Loading…';
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
    renderTiles(kpis.figures);
    renderDaily(daily.days);
    renderQuality(kpis.figures);
    renderNps(kpis.figures);
    renderStaff(staff.staff);
    state.plans = staffing.stores;
    renderPlanStores();
    renderPlan();
    const n = kpis.figures.conversations.value;
    $('status').textContent = `${intFmt.format(n)} conversation${n === 1 ? '' : 's'} opened `
      + `${new Date(p.from * 1000).toLocaleDateString('en', { dateStyle: 'medium' })} – `
      + `${new Date(p.to * 1000 - 1).toLocaleDateString('en', { dateStyle: 'medium' })}`
      + ` (${TZ}) · updated ${new Date().toLocaleTimeString('en', { timeStyle: 'short' })}`;
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
const TILES = [
  ['conversations', 'Conversations'],
  ['missed', 'Missed', (f) => (f.missed_share && f.missed_share.value !== null
    ? `${fmtFigure(f.missed_share)} of conversations` : null)],
  ['conversion_rate', 'Conversion', (f) => `${fmtFigure(f.orders)} orders`],
  ['revenue', 'Revenue'],
  ['average_order_value', 'Avg order'],
  ['satisfaction_avg', 'Satisfaction', (f) => (f.satisfaction_top2_share
    && f.satisfaction_top2_share.value !== null
    ? `${fmtFigure(f.satisfaction_top2_share)} rated 4–5` : 'out of 5')],
  ['nps', 'NPS', (f) => `${fmtFigure(f.ratings)} ratings`],
  ['queue_wait_p50_s', 'Queue wait', (f) => `median · p90 ${fmtFigure(f.queue_wait_p90_s)}`],
  ['first_response_p50_s', 'First response', (f) => `median · p90 ${fmtFigure(f.first_response_p90_s)}`],
  ['cost_per_conversation', 'Cost / conversation',
    (f) => (f.staffed_hours && f.staffed_hours.value !== null
      ? `${fmtFigure(f.staffed_hours)} staffed` : 'no staff cost set')],
];

function figuresNamed(figures, name) {
  return Object.entries(figures).filter(([, f]) => f.name === name).map(([key, f]) => ({ key, ...f }));
}

function tile(key, label, fig, sub) {
  const ids = fig ? fig.conversation_ids || [] : [];
  const el = h('button', { type: 'button', class: 'tile', dataset: { figure: key },
    disabled: !ids.length, title: ids.length ? 'Show the conversations behind this figure' : null,
    onclick: () => openDrawer(label, ids, fig) },
  h('span', { class: 'label', text: label }),
  h('span', { class: 'value', text: fmtFigure(fig) }),
  h('span', { class: 'sub', text: sub || `${ids.length} conversation${ids.length === 1 ? '' : 's'}` }));
  return el;
}

function renderTiles(figures) {
  const out = [];
  for (const [name, label, sub] of TILES) {
    const figs = figuresNamed(figures, name);
    if (!figs.length) {
      if (name === 'revenue' || name === 'average_order_value') {
        out.push(tile(name, label, { value: null, unit: 'money', conversation_ids: [] }, 'no order value'));
      }
      continue;
    }
    for (const f of figs) {
      const text = f.currency ? `${label} (${f.currency})` : label;
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
      { name: 'Conversations', colour: COLOURS.blue, values: days.map((d) => dayValue(d, 'conversations')),
        ids: days.map((d) => d.figures.conversations.conversation_ids) },
      { name: 'Missed', colour: COLOURS.orange, values: days.map((d) => dayValue(d, 'missed')),
        ids: days.map((d) => d.figures.missed.conversation_ids) },
    ],
  });
  const currencies = [...new Set(days.flatMap((d) => Object.values(d.figures)
    .filter((f) => f.name === 'revenue' && f.currency).map((f) => f.currency)))].sort();
  const cur = currencies[0];
  const revenue = cur ? days.map((d) => (d.figures[`revenue_${cur}`] || { value: 0 }).value) : [];
  const money = (v) => (cur ? formatPrice(v, cur, 'en').replace(/\.00$/, '') : String(v));
  barChart($('chart-sales'), {
    labels,
    series: cur ? [{ name: `Revenue ${cur}`, colour: COLOURS.green, values: revenue, fmt: money,
      ids: days.map((d) => (d.figures[`revenue_${cur}`] || {}).conversation_ids || []) }] : [],
    fmt: money,
    line: { name: 'Conversion', colour: COLOURS.purple, max: 1,
      values: days.map((d) => dayValue(d, 'conversion_rate')),
      fmt: (v) => `${Math.round(v * 100)}%` },
  });
  if (currencies.length > 1) {
    $('chart-sales').append(h('p', { class: 'muted small',
      text: `Revenue in ${currencies.slice(1).join(', ')} is in the tiles and the CSV export.` }));
  }
  barChart($('chart-satisfaction'), {
    labels,
    max: 5,
    ticks: 5,
    fmt: (v) => v.toFixed(v % 1 ? 1 : 0),
    series: [{ name: 'Average satisfaction (1–5)', colour: COLOURS.teal,
      values: days.map((d) => dayValue(d, 'satisfaction_avg')),
      ids: days.map((d) => d.figures.ratings.conversation_ids) }],
  });
}

const SHARE_COUNTS = { trouble_share: 'calls_with_trouble', freeze_share: 'calls_with_freezes',
  fallback_share: 'calls_with_fallbacks', high_loss_share: 'calls_with_high_loss' };

function renderNps(f) {
  const pill = $('nps-pill');
  pill.textContent = f.nps && f.nps.value !== null
    ? `NPS ${fmtFigure(f.nps)} · ${fmtFigure(f.ratings)} ratings` : 'No rating yet';
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
    box.replaceChildren(h('p', { class: 'empty',
      text: 'No measured call in this period. Calls are measured when they run through the media server.' }));
    return;
  }
  const row = (key, label) => {
    const count = f[SHARE_COUNTS[key]];
    return tile(key, label, f[key], `${count ? count.value : 0} of ${measured.value} calls`);
  };
  const tiles = h('div', { class: 'tiles quality-tiles' },
    tile('calls_measured', 'Calls measured', measured, 'ran through the media server'),
    row('trouble_share', 'Any trouble'),
    row('freeze_share', 'Froze'),
    row('fallback_share', 'Audio-only fallback'),
    row('high_loss_share', 'High loss'));
  const bars = h('div', { class: 'compare' });
  for (const [key, label, colour] of [['conversion_without_trouble', 'Calls without trouble', COLOURS.green],
    ['conversion_with_trouble', 'Calls with trouble', COLOURS.red]]) {
    const fig = f[key];
    const pct = fig && fig.value !== null ? fig.value * 100 : 0;
    const ids = (fig && fig.conversation_ids) || [];
    bars.append(h('button', { type: 'button', class: 'compare-row', dataset: { figure: key },
      disabled: !ids.length, onclick: () => openDrawer(`Conversion · ${label}`, ids, fig) },
    h('span', { class: 'label', text: label }),
    h('span', { class: 'track' }, barFill(pct, colour)),
    h('span', { class: 'value', text: fmtFigure(fig) }),
    h('span', { class: 'sub', text: `${ids.length} conv.` })));
  }
  box.replaceChildren(tiles, h('h3', { text: 'Conversion of conversations with a measured call' }), bars);
}

function renderStaff(staff) {
  const body = $('staff-table').querySelector('tbody');
  const cell = (fig, label) => {
    if (!fig) return h('td', { class: 'num', text: '–' });
    const ids = fig.conversation_ids || [];
    const text = fmtFigure(fig);
    return h('td', { class: 'num' }, ids.length
      ? h('button', { type: 'button', class: 'link', text, title: 'Show the conversations',
        onclick: () => openDrawer(label, ids, fig) })
      : text);
  };
  const rows = staff.map((s) => {
    const f = s.figures;
    const who = s.name || s.staff_id;
    const revenue = figuresNamed(f, 'revenue');
    return h('tr', { dataset: { staff: s.staff_id } },
      h('th', { scope: 'row' }, h('span', { class: 'name', text: who }),
        h('span', { class: 'muted small', text: ` ${s.staff_id}` })),
      h('td', { text: s.store || '–' }),
      h('td', { class: 'num', text: fmtFigure(f.time_online_s) }),
      cell(f.handled, `${who} · handled`),
      cell(f.calls, `${who} · calls`),
      cell(f.average_handling_time_s, `${who} · handling time`),
      cell(f.orders, `${who} · orders`),
      revenue.length ? h('td', { class: 'num' }, revenue.map((r, i) => [i ? ', ' : '',
        h('button', { type: 'button', class: 'link', text: fmtFigure(r),
          onclick: () => openDrawer(`${who} · revenue`, r.conversation_ids, r) })]))
        : h('td', { class: 'num', text: '–' }),
      cell(f.satisfaction_avg, `${who} · ratings`),
      cell(f.nps, `${who} · ratings`));
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
    $('heatmap').replaceChildren(h('p', { class: 'empty', text: 'No store to plan for.' }));
    $('plan-note').textContent = '';
    return;
  }
  const view = document.querySelector('input[name="plan-view"]:checked').value;
  const grid = plan[view];
  let ids = null;
  if (view === 'missed_last_week') {
    ids = new Array(168).fill(null);
    for (const m of plan.missed_last_week_conversations) {
      ids[WEEKDAYS.findIndex((d) => m.weekday.startsWith(d.toLowerCase())) * 24 + m.hour] = m.conversation_ids;
    }
  }
  const fmt = view === 'arrivals_per_hour' ? (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(1).replace(/\.0$/, ''))
    : (v) => String(v);
  const title = { recommended_staff: 'Recommended staff online',
    missed_last_week: 'Missed last week', arrivals_per_hour: 'Arrivals per hour' }[view];
  heatMap($('heatmap'), grid, { fmt, title, ids });
  $('heatmap').dataset.store = plan.store;
  $('heatmap').dataset.view = view;
  $('plan-note').textContent = `${plan.arrivals} conversations in the last 4 weeks · mean handling `
    + `${fmtSeconds(plan.aht_s)} · ${plan.concurrency.toFixed(1).replace(/\.0$/, '')} conversations `
    + `per person · 80% answered within 60 s · hours in ${TZ}`;
}

// Drill-down -----------------------------------------------------------------------------
function openDrawer(title, ids, fig = null) {
  const unique = [...new Set(ids || [])];
  $('drawer-title').textContent = title;
  const def = fig && fig.count !== undefined && unique.length !== (ids || []).length
    ? ` (${(ids || []).length} entries: some conversations count more than once, e.g. one per call)` : '';
  $('drawer-note').textContent = `${unique.length} conversation${unique.length === 1 ? '' : 's'}${def}`;
  $('drawer-list').replaceChildren(...unique.map((id) => h('li', {},
    h('button', { type: 'button', class: 'link mono', text: id, onclick: () => showConversation(id) }))));
  $('drawer-detail').replaceChildren();
  $('drawer').hidden = false;
  $('drawer-close').focus();
}

async function showConversation(id) {
  const box = $('drawer-detail');
  box.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
  try {
    const data = await fetchJson(`/api/conversations/${encodeURIComponent(id)}`, { token: state.token });
    const c = data.conversation;
    const accepted = data.events.filter((e) => e.kind === 'accepted').map((e) => e.actor.replace('staff:', ''));
    const rows = [
      ['Opened', formatDateTime(c.opened_at, 'en')],
      ['Closed', c.closed_at ? formatDateTime(c.closed_at, 'en') : 'not yet'],
      ['Store', c.store || 'any'], ['Channel', c.channel], ['Skill', c.skill || '–'],
      ['State', c.state], ['Handled by', accepted.join(', ') || 'nobody'],
      ['Calls', data.calls.filter((k) => k.started_at).map((k) => `${k.kind} ${formatDuration((k.ended_at || k.started_at) - k.started_at)}`).join(', ') || 'none'],
      ['Messages', String(data.messages.length)],
      ['Left a message', data.async_messages.length
        ? `${data.async_messages.length} (${data.async_messages.filter((m) => m.answered_at).length} answered)`
        : 'no'],
      ['Rating', data.rating ? `${data.rating.satisfaction}/5, recommends ${data.rating.recommendation}/10` : 'not rated'],
      ['Outcome', data.outcome ? (data.outcome.order_placed
        ? `order ${formatPrice(data.outcome.order_value, data.outcome.currency, 'en')}` : 'no order') : 'not reported'],
    ];
    box.replaceChildren(h('h3', { class: 'mono', text: id }),
      h('dl', {}, rows.map(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })])));
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error', text: err.message }));
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
function errorText(err) {
  if (err.code === 'forbidden') {
    return 'This token is not an operator token. The dashboard needs one: '
      + 'shopcall token operator NAME.';
  }
  if (err.code === 'invalid_token' || err.code === 'expired_token' || err.code === 'unauthenticated') {
    return 'This token was refused or has expired. Paste a new operator token.';
  }
  if (err.code === 'network') return 'The server cannot be reached. Check the connection and retry.';
  return err.message || String(err);
}

function handleError(err) {
  if (['forbidden', 'invalid_token', 'expired_token', 'unauthenticated'].includes(err.code)) {
    signOut(errorText(err));
    return;
  }
  showLoadError(err);
}

function showLoadError(err) {
  $('status').textContent = '';
  $('load-error').textContent = errorText(err);
  $('load-error').hidden = false;
}

function showSignIn(message) {
  $('dash').hidden = true;
  $('filters').hidden = true;
  for (const id of ['who', 'weekly', 'sign-out']) $(id).hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
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
      showSignIn(errorText(err));
    } else {
      showSignIn(errorText(err));
    }
    return;
  }
  saveJson(TOKEN_KEY, { token });
  const storeSelect = $('store');
  const chosen = storeSelect.value;
  storeSelect.replaceChildren(h('option', { value: '', text: 'All stores' }),
    ...state.stores.map((s) => h('option', { value: s.id, text: s.name || s.id })));
  if (state.stores.some((s) => s.id === chosen)) storeSelect.value = chosen;
  $('signin').hidden = true;
  $('dash').hidden = false;
  $('filters').hidden = false;
  const who = tokenSubject(token);
  $('who').textContent = who ? `Signed in as ${who}` : '';
  for (const id of ['who', 'weekly', 'sign-out']) $(id).hidden = false;
  await load();
}

function init() {
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
