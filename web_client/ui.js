// Small DOM and formatting helpers shared by the widget and the staff console.
// User-provided text only ever goes through text nodes, never innerHTML.
// Numbers, prices, times and durations are formatted with Intl for the page's language
// (i18n.js language()) unless a locale is given.

import { language, t } from './i18n.js';

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

/** The locale to format for: the one given, else the page's language. */
function localeOf(locale) {
  return locale || language() || undefined;
}

/** Intl.NumberFormat for `locale` (a bad tag falls back to the page's language). */
function numberFormat(locale, options) {
  try {
    return new Intl.NumberFormat(localeOf(locale), options);
  } catch {
    return new Intl.NumberFormat(language() || undefined, options);
  }
}

/** "€1,199.00" (en), "1.199,00 €" (de), "1 199,00 €" (fr). */
export function formatPrice(price, currency, locale) {
  if (typeof price !== 'number') return '';
  if (currency) {
    try {
      return numberFormat(locale, { style: 'currency', currency }).format(price);
    } catch {
      /* unknown currency code: fall through */
    }
  }
  const plain = numberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 })
    .format(price);
  return plain + (currency ? ` ${currency}` : '');
}

/**
 * "less than a minute", "about 3 minutes" (en); "etwa 3 Minuten" (de), "environ 3 minutes"
 * (fr): the minutes by Intl.NumberFormat (unit "minute"), the words around them from the
 * catalogue (locales/<lang>/media.json, loaded by the widget and the console).
 */
export function formatWait(seconds, locale) {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '';
  const minutes = (n) => numberFormat(locale, { style: 'unit', unit: 'minute', unitDisplay: 'long' })
    .format(n);
  if (seconds < 60) {
    const under = t('media.wait.underMinute');
    return under === 'media.wait.underMinute' ? `< ${minutes(1)}` : under;
  }
  const duration = minutes(Math.round(seconds / 60));
  const about = t('media.wait.about', { duration });
  return about === 'media.wait.about' ? `~${duration}` : about;
}

/**
 * "0:42", "12:05", "1:02:03" for a duration in seconds: a clock-style duration, the same
 * shape in English, German and French, with the language's digits (Intl.NumberFormat).
 * (Intl.DurationFormat's "digital" style pads minutes, "00:42", so it is not used.)
 */
export function formatDuration(seconds, locale) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const one = numberFormat(locale, { useGrouping: false });
  const two = numberFormat(locale, { minimumIntegerDigits: 2, useGrouping: false });
  return hh ? `${one.format(hh)}:${two.format(mm)}:${two.format(ss)}`
    : `${one.format(mm)}:${two.format(ss)}`;
}

export function formatTime(epochSeconds, locale) {
  if (typeof epochSeconds !== 'number') return '';
  return new Date(epochSeconds * 1000).toLocaleTimeString(localeOf(locale),
    { hour: '2-digit', minute: '2-digit' });
}

export function formatDateTime(epochSeconds, locale) {
  if (typeof epochSeconds !== 'number') return '';
  return new Date(epochSeconds * 1000).toLocaleString(localeOf(locale),
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
