// Message catalogues for every text the web client shows (widget, console, dashboard).
//
// JSON catalogues in i18next's layout, web_client/locales/<lang>/<namespace>.json: one folder
// per locale, one file per part of the client (common, media, widget, console, dashboard),
// flat keys that start with their namespace ("widget.sent.title"). English is the
// reference: a key missing elsewhere falls back to it (tests/test_catalogues.py fails the
// build first).
// Placeholders are {name}; plurals pick "<key>.one" / "<key>.other" by Intl.PluralRules
// when the parameter `count` is given. A shop overrides any text with
// `window.ShopcallConfig.messages = {"<lang>": {"<key>": "..."}}` (or a flat object for
// every language).
//
// Which language: the widget's data-language, then the page's <html lang>, then the
// browser's languages, then English; only the first two letters count (de-CH -> de).

export const LANGUAGES = ['en', 'de', 'fr'];
export const DEFAULT_LANGUAGE = 'en';

let current = DEFAULT_LANGUAGE;
let messages = {};
let fallback = {};
let overrides = {};
const pluralRules = new Map(); // language -> Intl.PluralRules

/** The first supported language among the candidates (tags like "de-AT" count as "de"). */
export function pickLanguage(...candidates) {
  for (const candidate of candidates.flat()) {
    const lang = String(candidate || '').trim().toLowerCase().slice(0, 2);
    if (LANGUAGES.includes(lang)) return lang;
  }
  return DEFAULT_LANGUAGE;
}

/** The language a page should use: explicit choice, page language, browser languages. */
export function detectLanguage(configured = null) {
  const nav = typeof navigator !== 'undefined'
    ? (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language])
    : [];
  const page = typeof document !== 'undefined' ? document.documentElement.lang : null;
  return pickLanguage(configured, page, nav);
}

async function fetchCatalogue(lang, namespaces) {
  const parts = await Promise.all(namespaces.map(async (ns) => {
    const url = new URL(`./locales/${lang}/${ns}.json`, import.meta.url);
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`catalogue ${lang}/${ns}: HTTP ${response.status}`);
    return response.json();
  }));
  return Object.assign({}, ...parts);
}

/**
 * Load the catalogues of `lang` (and English under them) before anything is rendered.
 * @param {string} lang
 * @param {string[]} namespaces  e.g. ['common', 'media', 'widget']
 * @param {object} [shopMessages] overrides: {"de": {key: text}} or {key: text}
 */
export async function setLanguage(lang, namespaces, shopMessages = null) {
  const chosen = LANGUAGES.includes(lang) ? lang : DEFAULT_LANGUAGE;
  const [base, own] = await Promise.all([
    fetchCatalogue(DEFAULT_LANGUAGE, namespaces),
    chosen === DEFAULT_LANGUAGE ? null : fetchCatalogue(chosen, namespaces).catch(() => null),
  ]);
  fallback = base;
  messages = own || base;
  current = (own || chosen === DEFAULT_LANGUAGE) ? chosen : DEFAULT_LANGUAGE;
  overrides = {};
  if (shopMessages && typeof shopMessages === 'object') {
    const perLanguage = LANGUAGES.some((l) => shopMessages[l] && typeof shopMessages[l] === 'object');
    overrides = perLanguage ? { ...(shopMessages[current] || {}) } : { ...shopMessages };
  }
  // The shop's own document is left alone: the widget marks its own root with `lang`, and
  // our pages get theirs from translatePage().
  return current;
}

/** The language in use ("en", "de", "fr"): also the locale for Intl formatting. */
export function language() {
  return current;
}

function lookup(key) {
  if (Object.prototype.hasOwnProperty.call(overrides, key)) return overrides[key];
  if (Object.prototype.hasOwnProperty.call(messages, key)) return messages[key];
  if (Object.prototype.hasOwnProperty.call(fallback, key)) return fallback[key];
  return null;
}

/**
 * The text for `key` with {placeholders} filled from `params`. With `params.count`, the
 * plural form "<key>.one"/"<key>.other" (Intl.PluralRules of the language) when it exists.
 * An unknown key returns the key itself (visible, and caught by the catalogue test).
 */
export function t(key, params = {}) {
  let text = null;
  if (params && typeof params.count === 'number') {
    if (!pluralRules.has(current)) pluralRules.set(current, new Intl.PluralRules(current));
    const form = pluralRules.get(current).select(params.count);
    text = lookup(`${key}.${form}`) ?? lookup(`${key}.other`);
  }
  if (text == null) text = lookup(key);
  if (text == null) return key;
  return String(text).replace(/\{(\w+)\}/g, (whole, name) => (
    params && params[name] != null ? String(params[name]) : whole));
}

/** Test hook: use catalogues given in memory (no fetch). */
export function useCatalogues(lang, own, base = own) {
  current = lang;
  messages = own;
  fallback = base;
  overrides = {};
}

/**
 * Translate a static page (staff.html, dashboard.html): every element with
 * `data-i18n="key"` gets that text; `data-i18n-attr="placeholder:key;aria-label:key2"` sets
 * attributes. The HTML keeps the English text, so a page is readable before this runs.
 */
export function translatePage(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':').map((part) => part.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    }
  }
  if (root === document && document.documentElement) document.documentElement.lang = current;
}
