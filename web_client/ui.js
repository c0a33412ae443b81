// Small DOM and formatting helpers shared by the widget and the staff console.
// User-provided text only ever goes through text nodes, never innerHTML.

/**
 * h('button', {class: 'x', onclick: fn, 'aria-label': 'Close'}, 'text', childNode, [more])
 * Attributes: `class`, `text`, `on<event>` handlers, `dataset`, booleans (true/false/null).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An inline SVG icon from a path list (24x24 viewBox, stroked). */
export function icon(paths, { size = 20, fill = false } = {}) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('fill', fill ? 'currentColor' : 'none');
  svg.setAttribute('stroke', fill ? 'none' : 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  for (const d of paths) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}

export const ICONS = {
  chat: ['M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z'],
  close: ['M6 6l12 12', 'M18 6L6 18'],
  send: ['M4 12l16-8-6 16-2.5-6.5z', 'M11.5 13.5L20 4'],
  phone: ['M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z'],
  video: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  mail: ['M3 6h18v12H3z', 'M3 7l9 6 9-6'],
  check: ['M5 12l5 5 9-10'],
  back: ['M15 18l-6-6 6-6'],
};

/** Safe http(s) URL or null. */
export function safeUrl(value) {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value, location.href);
    return ['http:', 'https:'].includes(url.protocol) ? url.toString() : null;
  } catch {
    return null;
  }
}

export function formatPrice(price, currency, locale) {
  if (typeof price !== 'number') return '';
  if (currency) {
    try {
      return new Intl.NumberFormat(locale || undefined, { style: 'currency', currency })
        .format(price);
    } catch {
      /* unknown currency code: fall through */
    }
  }
  return price.toFixed(2) + (currency ? ` ${currency}` : '');
}

/** "less than a minute", "about 3 minutes". */
export function formatWait(seconds) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '';
  if (seconds < 60) return 'less than a minute';
  const minutes = Math.round(seconds / 60);
  return `about ${minutes} minute${minutes === 1 ? '' : 's'}`;
}

/** "0:42", "12:05", "1:02:03" for a duration in seconds. */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

export function formatTime(epochSeconds, locale) {
  if (typeof epochSeconds !== 'number') return '';
  return new Date(epochSeconds * 1000).toLocaleTimeString(locale || undefined,
    { hour: '2-digit', minute: '2-digit' });
}

export function formatDateTime(epochSeconds, locale) {
  if (typeof epochSeconds !== 'number') return '';
  return new Date(epochSeconds * 1000).toLocaleString(locale || undefined,
    { dateStyle: 'medium', timeStyle: 'short' });
}

/** Read JSON from localStorage; null when absent, unreadable or storage is blocked. */
export function loadJson(key, storage = window.localStorage) {
  try {
    const raw = storage.getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function saveJson(key, value, storage = window.localStorage) {
  try {
    if (value === null || value === undefined) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch {
    /* private mode or quota: the session just won't survive a reload */
  }
}
