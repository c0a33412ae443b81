// Shopcall shopper widget: one <script type="module"> tag on any shop page.
//
//   <script type="module" src="https://shopcall.example/static/widget.js"
//           data-store="lyon" data-skill="guitars" data-sku="GTR-AC-114"
//           data-language="en"></script>
//
// Optional attributes: data-title (panel title), data-product (product name shown as
// context), data-color (brand colour), data-server (shopcall base URL; default: where this
// script was loaded from), data-position="left". Any element of the page with the attribute
// `data-shopcall-open` opens the widget when clicked; `window.Shopcall.open()` does the same.
//
// The widget lives in an open shadow root so the shop's CSS and ours cannot collide.
//
// Language: every text comes from the message catalogues (web_client/locales/<lang>/
// common.json, media.json, widget.json; English, German, French), loaded before anything is
// shown. The language is data-language (or window.ShopcallConfig.language), else the page's
// <html lang>, else the shopper's browser languages, else English. A conversation is tagged
// with data-language when the shop sets it, otherwise with the language the widget shows.
// A shop changes any text with window.ShopcallConfig.messages, set before this script runs:
//
//   window.ShopcallConfig = { messages: {
//     de: { 'widget.title': 'Fragen Sie unsere Gitarrenprofis' },
//     en: { 'widget.title': 'Ask our guitar pros' } } };
//
// (or one flat {key: text} object for every language). The keys are those of the English
// catalogues (web_client/locales/en/); {placeholders} in a text are filled in by the widget.

import { errorText } from './errors.js';
import { detectLanguage, language, setLanguage, t } from './i18n.js';
import { CallMedia, CallStage, noticeText } from './media.js';
import { SignalingClient, ShopcallError, fetchJson, newId, websocketUrl } from './protocol.js';
import {
  ICONS, formatDuration, formatPrice, formatTime, formatWait, h, icon, loadJson, safeUrl,
  saveJson,
} from './ui.js';

const SESSION_KEY = 'shopcall.session';
const LIVE = new Set(['queued', 'assigned', 'accepted']);
const MAX_TEXT = 4000;

// Configuration ------------------------------------------------------------------------
function readConfig() {
  const scripts = [...document.querySelectorAll('script[src]')];
  const script = scripts.find((s) => s.src === import.meta.url)
    || scripts.find((s) => /\/widget\.js(\?|$)/.test(s.src));
  const d = (script && script.dataset) || {};
  const extra = window.ShopcallConfig || {};
  const pick = (name) => extra[name] ?? d[name] ?? null;
  const server = pick('server') || new URL(import.meta.url).origin;
  return {
    server: server.replace(/\/+$/, ''),
    store: pick('store'),
    skill: pick('skill'),
    sku: pick('sku'),
    // The shop's explicit choice (data-language), else the page's language.
    language: pick('language') || document.documentElement.lang || null,
    languageConfigured: pick('language') || null,
    title: pick('title') || null, // default: the catalogue's widget.title
    product: pick('product'),
    color: pick('color'),
    position: pick('position') === 'left' ? 'left' : 'right',
  };
}

const config = readConfig();
const api = (path) => `${config.server}${path}`;

// A shopper may click the shop's "ask an expert" button (or the shop may call
// Shopcall.open()) while the catalogues are still loading: remember it, open when ready.
let openRequested = false;
function earlyOpen(e) {
  const trigger = e.target.closest && e.target.closest('[data-shopcall-open]');
  if (trigger) {
    e.preventDefault();
    openRequested = true;
  }
}
document.addEventListener('click', earlyOpen);
window.Shopcall = { open: () => { openRequested = true; }, close: () => { openRequested = false; },
  config };

// The catalogues first: nothing is shown before its text is known. Without them (the server
// is unreachable) the widget stays hidden.
let catalogues = true;
try {
  await setLanguage(detectLanguage(config.language), ['common', 'media', 'widget'],
    window.ShopcallConfig?.messages);
} catch (err) {
  catalogues = false;
  console.warn('shopcall: the widget could not load its texts', err);
}
if (!config.title) config.title = t('widget.title');

/** The language a new conversation is tagged with (and availability is asked for): the
 * shop's explicit data-language, otherwise the language the widget shows. */
function conversationLanguage() {
  return config.languageConfigured || language();
}

// Session (localStorage "shopcall.session") --------------------------------------------
// {token, shopper_id, expires_at, conversation_id, accepted, open, pending_leave:
//  {conversation_id, text, contact}, feedback_due, awaiting: [conversation ids with a left
//  message], seen_answers: [async message ids already shown]}
let session = loadJson(SESSION_KEY) || {};

function saveSession(patch) {
  session = { ...session, ...patch };
  saveJson(SESSION_KEY, session);
}

async function getToken({ refresh }) {
  const now = Date.now() / 1000;
  if (!refresh && session.token && (session.expires_at || 0) - now > 60) return session.token;
  const data = await fetchJson(api('/api/shopper-token'), { method: 'POST', body: {} });
  if (session.shopper_id && session.shopper_id !== data.shopper_id) {
    // A new identity cannot see the previous one's conversations.
    saveSession({ conversation_id: null, accepted: false, pending_leave: null,
      feedback_due: null, awaiting: [] });
  }
  saveSession({ token: data.token, shopper_id: data.shopper_id, expires_at: data.expires_at });
  return data.token;
}

// State --------------------------------------------------------------------------------
let client = null;
let availability = null;
let questions = null;
let view = 'home';
let conv = null; // the conversation on screen, see newConv()
let panelOpen = false;
let unread = 0;
let typingTimer = null;
let typingSentAt = 0;
let peerTypingTimer = null;
// The running call's media (one at a time): consent asked for `consent`, then media + stage.
let consent = null; // {call, join} while the "Turn on camera?" question is on screen
let callMedia = null;
let callStage = null;
let callTimer = null;

function newConv(summary) {
  return {
    id: summary.conversation_id,
    state: summary.state,
    channel: summary.channel || 'chat',
    staff: summary.staff || null,
    position: summary.position ?? null,
    wait: summary.estimated_wait_s ?? null,
    messages: new Map(), // seq -> message
    lastSeq: 0, // highest seq such that every seq up to it has been seen
    outbox: new Map(), // client id -> {text, status: sending|failed, error}
    peerRead: 0,
    readSent: 0,
    call: summary.call || null,
    callNote: '',
    autoCallDone: false,
  };
}

// DOM ----------------------------------------------------------------------------------
const host = h('div', { id: 'shopcall-widget', class: `pos-${config.position}`, lang: language() });
host.hidden = true; // until the stylesheet has loaded
const root = host.attachShadow({ mode: 'open' });
const styleLink = h('link', { rel: 'stylesheet', href: new URL('./widget.css', import.meta.url).href });
styleLink.addEventListener('load', () => { host.hidden = false; });
styleLink.addEventListener('error', () => { host.hidden = false; });
if (config.color) host.style.setProperty('--sc-brand', config.color);

const badge = h('span', { class: 'badge', hidden: true, 'aria-hidden': 'true' });
const launcher = h('button', {
  class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'sc-panel',
  'aria-label': t('widget.launcher.label', { title: config.title }),
  onclick: () => (panelOpen ? closePanel() : openPanel()),
}, icon(ICONS.chat, { size: 26 }),
h('span', { class: 'launcher-text', text: t('widget.launcher.text') }), badge);

const titleEl = h('h2', { id: 'sc-title', text: config.title });
const subEl = h('p', { class: 'sub', id: 'sc-sub', text: t('widget.subtitle') });
const connEl = h('div', { class: 'conn', role: 'status', hidden: true });
const body = h('div', { class: 'body' });
const answersEl = h('div', { class: 'answers' });
const announcer = h('div', { class: 'vh', 'aria-live': 'assertive', role: 'status' });
const panel = h('section', {
  class: 'panel', id: 'sc-panel', role: 'dialog', 'aria-labelledby': 'sc-title',
  'aria-describedby': 'sc-sub', hidden: true,
},
h('header', { class: 'head' },
  h('div', { class: 'avatar', 'aria-hidden': 'true' }, icon(ICONS.chat, { size: 20 })),
  h('div', { class: 'head-text' }, titleEl, subEl),
  h('button', { class: 'icon-btn', type: 'button', 'aria-label': t('widget.minimise'),
    onclick: () => closePanel() }, icon(ICONS.close))),
connEl, answersEl, body, announcer);

root.append(styleLink, panel, launcher);

panel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    e.stopPropagation();
    closePanel();
  }
});

function announce(text) {
  announcer.textContent = '';
  setTimeout(() => { announcer.textContent = text; }, 50);
}

function setBadge(n) {
  unread = n;
  badge.hidden = !n;
  badge.textContent = n > 9 ? '9+' : String(n);
  launcher.setAttribute('aria-label', n
    ? t('widget.launcher.unread', { title: config.title, count: n })
    : t('widget.launcher.label', { title: config.title }));
}

function openPanel() {
  panelOpen = true;
  panel.hidden = false;
  launcher.setAttribute('aria-expanded', 'true');
  launcher.classList.add('is-open');
  saveSession({ open: true });
  setBadge(0);
  if (view === 'home' && !conv) renderHome();
  markRead();
  focusFirst();
}

function closePanel() {
  panelOpen = false;
  panel.hidden = true;
  launcher.setAttribute('aria-expanded', 'false');
  launcher.classList.remove('is-open');
  saveSession({ open: false });
  launcher.focus();
}

function focusFirst() {
  requestAnimationFrame(() => {
    const target = body.querySelector('[data-autofocus]')
      || body.querySelector('textarea, input, button, a[href]');
    if (target && panelOpen) target.focus({ preventScroll: true });
  });
}

function show(name, ...content) {
  view = name;
  body.replaceChildren(h('div', { class: `view view-${name}` }, ...content));
  if (panelOpen) focusFirst();
}

function setConnection(state, extra = {}) {
  if (state === 'reconnecting' && (conv || session.conversation_id)) {
    connEl.hidden = false;
    connEl.textContent = extra.delayMs > 3000
      ? t('widget.connection.lost') : t('widget.connection.reconnecting');
  } else {
    connEl.hidden = true;
  }
}

/** `key`'s text with some {placeholders} replaced by DOM nodes (e.g. a <strong>): a whole
 * sentence for translators, in whatever order the language puts its parts. */
function tNodes(key, nodes) {
  return t(key).split(/\{(\w+)\}/).map((part, i) => (i % 2 ? (nodes[part] ?? `{${part}}`) : part))
    .filter((part) => part !== '');
}

function errorBox(text) {
  return h('p', { class: 'error', role: 'alert', text });
}

// Connection ---------------------------------------------------------------------------
function ensureClient(timeoutMs = 15000) {
  if (client && client.state !== 'stopped') {
    if (client.connected) return Promise.resolve(client.welcome);
    return new Promise((resolve, reject) => {
      const done = () => { off(); offFatal(); clearTimeout(timer); };
      const off = client.on('welcome', (w) => { done(); resolve(w); });
      const offFatal = client.on('fatal', (e) => { done(); reject(e); });
      const timer = setTimeout(() => {
        done();
        reject(new ShopcallError('timeout', 'could not connect'));
      }, timeoutMs);
    });
  }
  client = new SignalingClient({ url: websocketUrl(config.server), getToken });
  client.on('state', ({ state, ...extra }) => setConnection(state, extra));
  client.on('welcome', onWelcome);
  client.on('queue.position', onQueuePosition);
  client.on('conversation.queued', onQueuePosition);
  client.on('conversation.accepted', onAccepted);
  client.on('conversation.requeued', onRequeued);
  client.on('conversation.transferred', onTransferred);
  client.on('conversation.missed', onMissed);
  client.on('conversation.closed', onClosed);
  client.on('feedback.requested', onFeedbackRequested);
  client.on('chat.message', (m) => m.message && addMessage(m.message, true));
  client.on('chat.typing', onPeerTyping);
  client.on('chat.read', onPeerRead);
  client.on('call.proposed', (m) => onCall(m.call, 'proposed'));
  client.on('call.started', (m) => onCall(m.call, 'started', m.join));
  client.on('call.declined', (m) => onCallGone(m.call_id, 'declined'));
  client.on('call.ended', (m) => onCallGone(m.call_id, m.reason));
  client.on('media.offer', (m) => {
    if (callMedia && m.call_id === callMedia.callId && m.sdp) callMedia.handleServerOffer(m.sdp);
  });
  client.on('media.sources', (m) => {
    if (callMedia && m.call_id === callMedia.callId) callMedia.setSources(m.sources);
  });
  client.on('media.notice', onMediaNotice);
  client.on('tryon.state', onTryOnState);
  client.on('async.answered', (m) => m.async_message && showAnswer(m.async_message));
  client.start().catch(() => {});
  return ensureClient(timeoutMs);
}

async function onWelcome(welcome) {
  const summaries = Array.isArray(welcome.conversations) ? welcome.conversations : [];
  const byId = new Map(summaries.map((s) => [s.conversation_id, s]));
  let current = conv ? byId.get(conv.id) : byId.get(session.conversation_id);
  if (!current) {
    // Another tab of this shopper may have opened one.
    current = summaries.find((s) => LIVE.has(s.state)) || null;
  }
  if (current && session.pending_leave
      && session.pending_leave.conversation_id === current.conversation_id
      && current.state === 'missed') {
    await leaveMessage(current.conversation_id, session.pending_leave);
  } else if (current && LIVE.has(current.state)) {
    await resume(current);
  } else if (current && current.state === 'closed'
      && (session.feedback_due === current.conversation_id
        || (session.accepted && session.conversation_id === current.conversation_id))) {
    conv = null;
    saveSession({ conversation_id: null, accepted: false, feedback_due: current.conversation_id });
    if (view !== 'feedback') renderFeedback(current.conversation_id);
  } else if (current && current.state === 'missed'
      && (conv?.id === current.conversation_id
        || session.conversation_id === current.conversation_id)) {
    conv = null;
    saveSession({ conversation_id: null });
    renderMissed(current.conversation_id);
  } else if (conv) {
    // Closed while we were away (without a specialist), or no longer ours.
    conv = null;
    saveSession({ conversation_id: null });
    renderHome();
  } else if (!current && session.conversation_id) {
    saveSession({ conversation_id: null });
  }
  if (view === 'loading') renderHome();
  await checkAnswers(summaries);
}

async function resume(summary) {
  const fresh = !conv || conv.id !== summary.conversation_id;
  if (fresh) {
    conv = newConv(summary);
    saveSession({ conversation_id: conv.id });
    renderChat();
  }
  let result;
  try {
    result = await client.request('conversation.resume',
      { conversation_id: conv.id, after_seq: conv.lastSeq });
  } catch (err) {
    if (err.code === 'not_found') {
      conv = null;
      saveSession({ conversation_id: null });
      renderHome();
    }
    return;
  }
  applySummary(result.conversation || summary);
  for (const message of result.messages || []) addMessage(message, !fresh);
  if (!LIVE.has(conv.state)) return;
  // A call is running and this page has no media for it (reloaded, or a new tab): the
  // server gave us our join information again; ask before turning the camera back on.
  const join = result.join;
  if (join && conv.call && conv.call.call_id === join.call_id && conv.call.started_at != null
      && !callMedia && !consent) {
    conv.join = join;
    startMedia(conv.call, join, { rejoin: true });
    renderCall();
  }
  // Messages typed while offline: the same id makes the resend idempotent.
  for (const [clientId, item] of conv.outbox) {
    if (item.status !== 'failed' || item.retryable) sendText(item.text, clientId);
  }
  markRead();
}

function applySummary(summary) {
  if (!conv || !summary) return;
  conv.state = summary.state || conv.state;
  conv.staff = summary.staff || conv.staff;
  if ('position' in summary) conv.position = summary.position;
  if ('estimated_wait_s' in summary) conv.wait = summary.estimated_wait_s;
  if (conv.call && (!summary.call || summary.call.call_id !== conv.call.call_id)) {
    onCallGone(conv.call.call_id, 'ended'); // ended while this page was not connected
  }
  if (summary.call) conv.call = summary.call;
  if (conv.state === 'accepted') saveSession({ accepted: true });
  updateChatStatus();
}

async function checkAnswers(summaries) {
  const awaiting = new Set(session.awaiting || []);
  const missed = summaries.filter((s) => s.state === 'missed' && awaiting.has(s.conversation_id));
  for (const s of missed.slice(0, 5)) {
    const inline = Array.isArray(s.async_messages) ? s.async_messages : null;
    let asyncs = inline;
    if (!asyncs) {
      try {
        asyncs = (await client.request('conversation.resume',
          { conversation_id: s.conversation_id, after_seq: 0 })).async_messages || [];
      } catch {
        continue;
      }
    }
    for (const a of asyncs) if (a.answer) showAnswer(a);
  }
}

// Views --------------------------------------------------------------------------------
function contextChip() {
  const what = config.product || config.sku;
  return what ? h('p', { class: 'chip' },
    tNodes('widget.context.about', { product: h('strong', { text: what }) })) : null;
}

async function renderHome() {
  conv = null;
  stopMedia();
  subEl.textContent = t('widget.subtitle');
  show('home', h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner' }),
    t('widget.home.checking')));
  try {
    const params = new URLSearchParams();
    for (const key of ['store', 'skill']) if (config[key]) params.set(key, config[key]);
    params.set('language', conversationLanguage());
    const [avail, qual] = await Promise.all([
      fetchJson(api(`/api/availability?${params}`)),
      config.skill || questions ? Promise.resolve(null)
        : fetchJson(api('/api/qualification')).catch(() => null),
    ]);
    availability = avail;
    if (qual) questions = qual.questions || [];
  } catch (err) {
    if (view !== 'home') return;
    show('home', errorBox(t('widget.home.unavailable')),
      h('button', { class: 'btn', type: 'button', text: t('widget.home.retry'), onclick: renderHome }));
    return;
  }
  if (view !== 'home' || conv) return;
  if (!availability.chat && !availability.audio && !availability.video) {
    renderLeaveForm();
    return;
  }
  const answers = {};
  const qualification = !config.skill && questions && questions.length
    ? questions.map((q) => h('fieldset', { class: 'question' },
      h('legend', { text: q.text }),
      h('div', { class: 'options' }, q.options.map((o) => h('label', { class: 'option' },
        h('input', { type: 'radio', name: `q-${q.id}`, value: o.id,
          onchange: () => { answers[q.id] = o.id; } }),
        h('span', { text: o.label }))))))
    : null;
  const start = (channel) => () => startConversation(channel, answers);
  const online = availability.staff_online || 0;
  show('home',
    h('p', { class: 'presence' }, h('span', { class: 'dot', 'aria-hidden': 'true' }),
      t('widget.home.online', { count: online })),
    h('p', { class: 'lead', text: t('widget.home.lead') }),
    contextChip(),
    qualification,
    h('div', { class: 'channels' },
      availability.chat && h('button', { class: 'btn primary', type: 'button',
        'data-autofocus': true, onclick: start('chat') }, icon(ICONS.chat), t('widget.channel.chat')),
      availability.video && h('button', { class: 'btn', type: 'button', onclick: start('video') },
        icon(ICONS.video), t('widget.channel.video')),
      availability.audio && h('button', { class: 'btn', type: 'button', onclick: start('audio') },
        icon(ICONS.phone), t('widget.channel.audio'))),
    h('p', { class: 'fine' }, t('widget.home.preferWrite'), ' ',
      h('button', { class: 'link', type: 'button', text: t('widget.home.leaveMessage'),
        onclick: () => renderLeaveForm() })),
    h('div', { class: 'error-slot' }),
    h('p', { class: 'reassure' }, icon(ICONS.check, { size: 16 }),
      t('widget.home.reassure')));
}

async function startConversation(channel, answers = {}) {
  const slot = body.querySelector('.error-slot');
  body.querySelectorAll('.channels button').forEach((b) => { b.disabled = true; });
  try {
    await ensureClient();
    const fields = { channel, page_url: location.href.slice(0, 2048),
      language: conversationLanguage() };
    for (const key of ['store', 'sku', 'skill']) if (config[key]) fields[key] = config[key];
    if (!config.skill && Object.keys(answers).length) fields.answers = answers;
    const result = await client.request('conversation.open', fields);
    conv = newConv(result.conversation);
    saveSession({ conversation_id: conv.id, accepted: false, feedback_due: null });
    renderChat();
    return conv;
  } catch (err) {
    body.querySelectorAll('.channels button').forEach((b) => { b.disabled = false; });
    if (slot) slot.replaceChildren(errorBox(errorText(err)));
    return null;
  }
}

function renderLeaveForm() {
  const unavailable = availability && !availability.chat;
  const form = messageForm({
    intro: unavailable ? t('widget.leave.introBusy') : t('widget.leave.intro'),
    submitLabel: t('widget.leave.send'),
    async onSubmit({ text, contact }) {
      // Left through a conversation (it is where the shop's KPIs count the lead), and
      // stored on the server before "sent" is shown: closing the tab right after loses
      // nothing. A failure leaves the form filled in, with the reason, to send again.
      const opened = conv || await startConversationQuiet();
      if (!opened) throw new ShopcallError('disconnected', 'could not reach the server');
      await leaveMessage(opened.id, { text, contact });
    },
  });
  show('leave', contextChip(), form,
    availability && availability.chat ? h('button', { class: 'link', type: 'button',
      text: t('widget.leave.back'), onclick: () => renderHome() }) : null);
}

async function startConversationQuiet() {
  await ensureClient();
  const fields = { channel: 'chat', page_url: location.href.slice(0, 2048),
    language: conversationLanguage() };
  for (const key of ['store', 'sku', 'skill']) if (config[key]) fields[key] = config[key];
  const result = await client.request('conversation.open', fields);
  conv = newConv(result.conversation);
  saveSession({ conversation_id: conv.id, accepted: false, feedback_due: null });
  renderChat();
  return conv;
}

function messageForm({ intro, submitLabel, onSubmit }) {
  const fid = newId('f');
  const text = h('textarea', { id: `${fid}-text`, required: true, rows: 4, maxLength: MAX_TEXT,
    'data-autofocus': true });
  const contact = h('input', { id: `${fid}-contact`, required: true, minLength: 3, maxLength: 200,
    autocomplete: 'email', placeholder: t('widget.leave.contactPlaceholder') });
  const status = h('div', { class: 'error-slot' });
  const submit = h('button', { class: 'btn primary', type: 'submit' }, icon(ICONS.mail), submitLabel);
  const form = h('form', { class: 'stack', novalidate: true },
    h('p', { text: intro }),
    h('label', { for: text.id, text: t('widget.leave.messageLabel') }), text,
    h('label', { for: contact.id, text: t('widget.leave.contactLabel') }), contact,
    submit, status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const values = { text: text.value.trim(), contact: contact.value.trim() };
    if (!values.text) {
      status.replaceChildren(errorBox(t('widget.leave.missingText')));
      text.focus();
      return;
    }
    if (values.contact.length < 3) {
      status.replaceChildren(errorBox(t('widget.leave.missingContact')));
      contact.focus();
      return;
    }
    submit.disabled = true;
    status.replaceChildren();
    try {
      await onSubmit(values);
    } catch (err) {
      submit.disabled = false;
      status.replaceChildren(errorBox(errorText(err)));
    }
  });
  return form;
}

function renderMissed(conversationId) {
  subEl.textContent = t('widget.missed.subtitle');
  show('missed', messageForm({
    intro: t('widget.missed.intro'),
    submitLabel: t('widget.leave.send'),
    onSubmit: (values) => leaveMessage(conversationId, values),
  }));
}

async function leaveMessage(conversationId, { text, contact }) {
  await client.request('async.leave', { conversation_id: conversationId, text, contact });
  const awaiting = new Set(session.awaiting || []);
  awaiting.add(conversationId);
  saveSession({ pending_leave: null, conversation_id: null, awaiting: [...awaiting].slice(-10) });
  conv = null;
  subEl.textContent = t('widget.sent.subtitle');
  show('sent', h('div', { class: 'done' },
    h('div', { class: 'done-icon', 'aria-hidden': 'true' }, icon(ICONS.check, { size: 28 })),
    h('h3', { text: t('widget.sent.title') }),
    h('p', {}, tNodes('widget.sent.text', { contact: h('strong', { text: contact }) })),
    h('button', { class: 'btn', type: 'button', text: t('widget.sent.close'), 'data-autofocus': true,
      onclick: () => { closePanel(); renderHome(); } })));
  announce(t('widget.sent.announce'));
}

function showAnswer(asyncMessage) {
  const seen = new Set(session.seen_answers || []);
  if (seen.has(asyncMessage.id) || !asyncMessage.answer) return;
  const note = h('article', { class: 'answer', role: 'status' },
    h('h3', { text: t('widget.answer.title') }),
    h('blockquote', { class: 'asked', text: asyncMessage.text }),
    h('p', { class: 'answer-text', text: asyncMessage.answer }),
    h('button', { class: 'link', type: 'button', text: t('widget.answer.dismiss'), onclick: () => {
      seen.add(asyncMessage.id);
      const awaiting = (session.awaiting || []).filter((id) => id !== asyncMessage.conversation_id);
      saveSession({ seen_answers: [...seen].slice(-50), awaiting });
      note.remove();
    } }));
  answersEl.append(note);
  if (!panelOpen) setBadge(unread + 1);
  announce(t('widget.answer.announce'));
}

// Chat ---------------------------------------------------------------------------------
let logEl; let typingEl; let statusEl; let callBar; let stageSlot; let composer; let inputEl;
let actionsEl;

function renderChat() {
  logEl = h('ol', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
    'aria-label': t('widget.chat.log') });
  statusEl = h('div', { class: 'banner', role: 'status' });
  callBar = h('div', { class: 'callbar', role: 'status', hidden: true });
  stageSlot = h('div', { class: 'stage-slot', hidden: true });
  typingEl = h('p', { class: 'typing', 'aria-live': 'polite' });
  inputEl = h('textarea', { id: 'sc-input', rows: 1, maxLength: MAX_TEXT,
    placeholder: t('widget.chat.placeholder'), 'data-autofocus': true,
    oninput: onInput, onkeydown: onComposerKey });
  composer = h('form', { class: 'composer' },
    h('label', { class: 'vh', for: 'sc-input', text: t('widget.chat.inputLabel') }), inputEl,
    h('button', { class: 'send', type: 'submit', 'aria-label': t('widget.chat.send') }, icon(ICONS.send)));
  composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = inputEl.value.trim();
    if (!text) return;
    inputEl.value = '';
    autoGrow();
    stopTyping();
    sendText(text);
  });
  actionsEl = h('div', { class: 'chat-actions' });
  show('chat', statusEl, callBar, stageSlot, logEl, typingEl, composer, actionsEl);
  if (!conv.messages.size && !conv.outbox.size && conv.state !== 'accepted') {
    // While waiting: say that writing now is useful (the specialist gets it on joining).
    logEl.append(h('li', { class: 'hint', text: t('widget.chat.hint') }));
  }
  for (const seq of [...conv.messages.keys()].sort((a, b) => a - b)) renderMessage(conv.messages.get(seq));
  for (const [clientId, item] of conv.outbox) renderPending(clientId, item);
  updateChatStatus();
  renderCall();
}

function updateChatStatus() {
  if (!conv || view !== 'chat') return;
  const leaving = session.pending_leave && session.pending_leave.conversation_id === conv.id;
  let text = '';
  if (conv.state === 'accepted') {
    subEl.textContent = conv.staff
      ? t('widget.status.helping', { name: conv.staff.name }) : t('widget.status.connected');
    statusEl.hidden = true;
  } else {
    subEl.textContent = t('widget.status.waiting');
    if (conv.state === 'assigned') text = t('widget.status.assigned');
    else if (conv.position) {
      const wait = formatWait(conv.wait, language());
      text = wait ? t('widget.status.positionWait', { position: conv.position, wait })
        : t('widget.status.position', { position: conv.position });
    } else text = t('widget.status.finding');
    if (leaving) text = t('widget.status.leaving', { contact: session.pending_leave.contact });
    statusEl.hidden = false;
    statusEl.replaceChildren(h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
  }
  renderActions();
}

function renderActions() {
  if (!actionsEl || !conv) return;
  const buttons = [];
  if (conv.state === 'accepted' && !conv.call) {
    buttons.push(h('button', { class: 'chip-btn', type: 'button', onclick: () => proposeCall('video') },
      icon(ICONS.video, { size: 16 }), t('widget.channel.video')));
    buttons.push(h('button', { class: 'chip-btn', type: 'button', onclick: () => proposeCall('audio') },
      icon(ICONS.phone, { size: 16 }), t('widget.channel.audio')));
  }
  const end = h('button', { class: 'chip-btn subtle', type: 'button',
    text: conv.state === 'accepted' ? t('widget.actions.endChat') : t('widget.actions.leaveQueue') });
  end.addEventListener('click', () => {
    const confirm = h('span', { class: 'confirm' }, t('widget.actions.confirmEnd'), ' ',
      h('button', { class: 'chip-btn danger', type: 'button', text: t('widget.actions.confirmYes'),
        onclick: endConversation }),
      h('button', { class: 'chip-btn subtle', type: 'button', text: t('widget.actions.confirmNo'),
        onclick: () => renderActions() }));
    actionsEl.replaceChildren(confirm);
    confirm.querySelector('button').focus();
  });
  buttons.push(end);
  actionsEl.replaceChildren(...buttons);
}

async function endConversation() {
  if (!conv) return;
  const id = conv.id;
  try {
    await client.request('conversation.close', { conversation_id: id });
  } catch (err) {
    if (err.code !== 'not_found') {
      addNote(errorText(err));
      renderActions();
      return;
    }
  }
  if (conv && conv.id === id && view === 'chat') afterClose(id, conv.state === 'accepted');
}

function afterClose(conversationId, wasAccepted) {
  const accepted = wasAccepted || session.accepted;
  stopMedia();
  conv = null;
  saveSession({ conversation_id: null, accepted: false, pending_leave: null });
  if (accepted) renderFeedback(conversationId);
  else renderHome();
}

function messageKey(message) {
  return message.client_id || `seq-${message.seq}`;
}

function addMessage(message, live) {
  if (!conv || message.conversation_id && message.conversation_id !== conv.id) return;
  if (message.from === 'shopper' && message.client_id && conv.outbox.has(message.client_id)) {
    conv.outbox.delete(message.client_id);
    logEl?.querySelector(`[data-client-id="${CSS.escape(message.client_id)}"]`)?.remove();
  }
  if (conv.messages.has(message.seq)) return;
  conv.messages.set(message.seq, message);
  const gap = message.seq > conv.lastSeq + 1;
  while (conv.messages.has(conv.lastSeq + 1)) conv.lastSeq += 1;
  if (view === 'chat') renderMessage(message);
  if (message.from !== 'shopper') {
    hidePeerTyping();
    if (live) {
      if (!panelOpen || document.visibilityState !== 'visible') setBadge(unread + 1);
      markRead();
    }
  }
  if (gap && live && client && client.connected) {
    // Something was missed (e.g. sent while this tab was reconnecting): fetch it.
    client.request('conversation.resume', { conversation_id: conv.id, after_seq: conv.lastSeq })
      .then((r) => (r.messages || []).forEach((m) => addMessage(m, false)))
      .catch(() => {});
  }
}

function renderMessage(message) {
  if (!logEl) return;
  logEl.querySelector('li.hint')?.remove();
  const mine = message.from === 'shopper';
  const who = mine ? t('widget.message.fromYou')
    : t('widget.message.from', { name: (conv.staff && conv.staff.name) || t('widget.message.specialist') });
  const whoLabel = `${who} `; // read before the message by screen readers
  let content;
  if (message.kind === 'product_card' && message.card) content = productCard(message.card);
  else content = h('p', { class: 'text', text: message.text || '' });
  const li = h('li', { class: `msg ${mine ? 'mine' : 'theirs'} kind-${message.kind || 'text'}`,
    dataset: { seq: String(message.seq) } },
  h('span', { class: 'vh', text: whoLabel }),
  h('div', { class: 'bubble' }, content),
  h('span', { class: 'meta' }, formatTime(message.at, language()),
    mine ? h('span', { class: 'receipt' }) : null));
  const after = [...logEl.querySelectorAll('li.msg[data-seq]')]
    .find((el) => Number(el.dataset.seq) > message.seq);
  if (after) logEl.insertBefore(li, after);
  else {
    const pending = logEl.querySelector('li.msg.pending');
    if (pending) logEl.insertBefore(li, pending);
    else logEl.append(li);
  }
  updateReceipts();
  scrollLog();
}

function productCard(card) {
  const link = safeUrl(card.link);
  const image = safeUrl(card.image_url);
  const titleId = newId('card');
  return h('article', { class: 'card', 'aria-labelledby': titleId },
    image ? h('img', { src: image, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' }) : null,
    h('div', { class: 'card-body' },
      h('h3', { id: titleId, text: card.title }),
      card.price != null ? h('p', { class: 'price', text: formatPrice(card.price, card.currency, language()) }) : null,
      card.sku ? h('p', { class: 'sku', text: t('widget.card.ref', { sku: card.sku }) }) : null,
      link ? h('a', { class: 'btn small', href: link, target: '_blank', rel: 'noopener' },
        t('widget.card.view'), ' ',
        h('span', { class: 'vh', text: t('widget.card.newTab', { title: card.title }) })) : null));
}

function renderPending(clientId, item) {
  if (!logEl) return;
  logEl.querySelector('li.hint')?.remove();
  let li = logEl.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
  const meta = item.status === 'failed'
    ? h('span', { class: 'meta failed' }, t('widget.message.notSent'), ' ',
      h('button', { class: 'link', type: 'button', text: t('widget.message.retry'),
        onclick: () => sendText(item.text, clientId) }))
    : h('span', { class: 'meta' }, t('widget.message.sending'));
  const fresh = h('li', { class: 'msg mine pending', dataset: { clientId } },
    h('span', { class: 'vh', text: `${t('widget.message.fromYou')} ` }),
    h('div', { class: 'bubble' }, h('p', { class: 'text', text: item.text })), meta);
  if (li) li.replaceWith(fresh);
  else logEl.append(fresh);
  scrollLog();
}

async function sendText(text, clientId = newId('msg')) {
  if (!conv) return;
  const item = { text, status: 'sending' };
  conv.outbox.set(clientId, item);
  renderPending(clientId, item);
  if (!client || !client.connected) {
    item.status = 'failed';
    item.retryable = true; // resent on reconnect
    return;
  }
  try {
    const result = await client.request('chat.send', { conversation_id: conv.id, text },
      { id: clientId });
    if (result.message) addMessage({ ...result.message, client_id: clientId }, false);
  } catch (err) {
    if (!conv || !conv.outbox.has(clientId)) return;
    item.status = 'failed';
    item.retryable = ['disconnected', 'timeout'].includes(err.code);
    renderPending(clientId, item);
    if (!item.retryable) addNote(errorText(err));
  }
}

function scrollLog() {
  if (logEl) logEl.scrollTop = logEl.scrollHeight;
}

function addNote(text) {
  if (!logEl) return;
  logEl.querySelector('li.hint')?.remove();
  logEl.append(h('li', { class: 'note', text }));
  scrollLog();
}

function autoGrow() {
  inputEl.style.height = 'auto';
  inputEl.style.height = `${Math.min(inputEl.scrollHeight, 120)}px`;
}

function onComposerKey(e) {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    composer.requestSubmit();
  }
}

function onInput() {
  autoGrow();
  if (!conv || !client) return;
  const now = Date.now();
  if (inputEl.value && now - typingSentAt > 3000) {
    typingSentAt = now;
    client.notify('chat.typing', { conversation_id: conv.id, typing: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 4000);
}

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingSentAt && conv && client) {
    client.notify('chat.typing', { conversation_id: conv.id, typing: false });
  }
  typingSentAt = 0;
}

function onPeerTyping(event) {
  if (!conv || event.conversation_id !== conv.id || event.from === 'shopper' || !typingEl) return;
  if (!event.typing) {
    hidePeerTyping();
    return;
  }
  const name = staffFirstName();
  typingEl.replaceChildren(h('span', { class: 'dots', 'aria-hidden': 'true' },
    h('i'), h('i'), h('i')), name ? t('widget.typing.named', { name }) : t('widget.typing.unknown'));
  clearTimeout(peerTypingTimer);
  peerTypingTimer = setTimeout(hidePeerTyping, 8000);
}

function hidePeerTyping() {
  clearTimeout(peerTypingTimer);
  if (typingEl) typingEl.replaceChildren();
}

function onPeerRead(event) {
  if (!conv || event.conversation_id !== conv.id || event.from === 'shopper') return;
  conv.peerRead = Math.max(conv.peerRead, event.seq || 0);
  updateReceipts();
}

function updateReceipts() {
  if (!logEl || !conv) return;
  const mine = [...logEl.querySelectorAll('li.msg.mine[data-seq]')];
  mine.forEach((li, i) => {
    const receipt = li.querySelector('.receipt');
    if (!receipt) return;
    const last = i === mine.length - 1;
    const read = Number(li.dataset.seq) <= conv.peerRead;
    receipt.textContent = last
      ? ` · ${read ? t('widget.message.read') : t('widget.message.sent')}` : '';
  });
}

function markRead() {
  if (!conv || !client || !client.connected || !panelOpen
      || document.visibilityState !== 'visible') return;
  let latest = 0;
  for (const [seq, m] of conv.messages) if (m.from !== 'shopper' && seq > latest) latest = seq;
  if (latest > conv.readSent) {
    conv.readSent = latest;
    client.notify('chat.read', { conversation_id: conv.id, seq: latest });
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && panelOpen) {
    setBadge(0);
    markRead();
  }
});

// Conversation events ------------------------------------------------------------------
function forCurrent(event) {
  return conv && event.conversation_id === conv.id;
}

function onQueuePosition(event) {
  if (!forCurrent(event)) return;
  conv.position = event.position ?? conv.position;
  conv.wait = event.estimated_wait_s ?? null;
  if (conv.state !== 'accepted') conv.state = 'queued';
  updateChatStatus();
}

function onAccepted(event) {
  if (!forCurrent(event)) return;
  conv.state = 'accepted';
  conv.staff = event.staff || conv.staff;
  saveSession({ accepted: true, pending_leave: null });
  const joined = conv.staff ? t('widget.event.joined', { name: conv.staff.name })
    : t('widget.event.joinedUnknown');
  addNote(joined);
  announce(joined);
  updateChatStatus();
  if (!panelOpen) setBadge(unread + 1);
  // Chosen "Video call" / "Audio call" on the first screen: ask for it right away.
  if (['audio', 'video'].includes(conv.channel) && !conv.call && !conv.autoCallDone) {
    conv.autoCallDone = true;
    proposeCall(conv.channel);
  }
}

function onRequeued(event) {
  if (!forCurrent(event)) return;
  conv.state = 'queued';
  conv.staff = null;
  conv.call = null;
  renderCall();
  addNote(t('widget.event.requeued'));
  updateChatStatus();
}

function onTransferred(event) {
  if (!forCurrent(event)) return;
  const to = event.to_staff ? event.to_staff.name : null;
  conv.state = event.to_staff ? 'assigned' : 'queued';
  conv.staff = null;
  conv.call = null;
  renderCall();
  addNote(to ? t('widget.event.transferred', { name: to }) : t('widget.event.transferredUnknown'));
  updateChatStatus();
}

function onMissed(event) {
  if (!forCurrent(event)) return;
  conv.state = 'missed';
  const pending = session.pending_leave;
  if (pending && pending.conversation_id === conv.id) {
    leaveMessage(conv.id, pending).catch(() => renderMissed(event.conversation_id));
    return;
  }
  renderMissed(event.conversation_id);
  if (!panelOpen) setBadge(unread + 1);
}

function onClosed(event) {
  if (!forCurrent(event)) return;
  const wasAccepted = conv.state === 'accepted';
  if (event.by && event.by.startsWith('staff')) {
    addNote(t('widget.event.staffEnded'));
  }
  if (!wasAccepted) {
    afterClose(event.conversation_id, false);
    return;
  }
  // feedback.requested follows for accepted conversations.
  saveSession({ feedback_due: event.conversation_id });
  conv.state = 'closed';
  conv.call = null;
  renderCall();
  if (composer) composer.querySelectorAll('textarea, button').forEach((el) => { el.disabled = true; });
  if (actionsEl) actionsEl.replaceChildren();
}

function onFeedbackRequested(event) {
  if (view === 'feedback') return;
  saveSession({ feedback_due: event.conversation_id });
  if (conv && conv.id === event.conversation_id) {
    conv = null;
    saveSession({ conversation_id: null, accepted: false });
  }
  stopMedia();
  renderFeedback(event.conversation_id);
}

// Feedback -----------------------------------------------------------------------------
function renderFeedback(conversationId) {
  subEl.textContent = t('widget.feedback.subtitle');
  let satisfaction = 0;
  let recommendation = null;
  const stars = [];
  const paint = (upTo) => stars.forEach((label, i) => label.classList.toggle('on', i < upTo));
  const starField = h('fieldset', { class: 'stars' },
    h('legend', { text: t('widget.feedback.satisfaction') }),
    h('div', { class: 'star-row', onmouseleave: () => paint(satisfaction) },
      [1, 2, 3, 4, 5].map((n) => {
        const input = h('input', { type: 'radio', name: 'sc-sat', value: String(n),
          class: 'vh-input', onchange: () => { satisfaction = n; paint(n); } });
        const label = h('label', { class: 'star', onmouseenter: () => paint(n) }, input,
          h('span', { 'aria-hidden': 'true', text: '★' }),
          h('span', { class: 'vh', text: t('widget.feedback.stars', { count: n }) }));
        stars.push(label);
        return label;
      })));
  const nps = h('fieldset', { class: 'nps' },
    h('legend', { text: t('widget.feedback.recommend') }),
    h('div', { class: 'nps-row' }, Array.from({ length: 11 }, (_, n) => h('label', { class: 'nps-opt' },
      h('input', { type: 'radio', name: 'sc-nps', value: String(n), class: 'vh-input',
        onchange: () => { recommendation = n; } }),
      h('span', { text: String(n) })))),
    h('div', { class: 'nps-scale', 'aria-hidden': 'true' },
      h('span', { text: t('widget.feedback.notLikely') }),
      h('span', { text: t('widget.feedback.veryLikely') })));
  const comment = h('textarea', { id: 'sc-comment', rows: 3, maxLength: 2000 });
  const status = h('div', { class: 'error-slot' });
  const submit = h('button', { class: 'btn primary', type: 'submit', text: t('widget.feedback.send') });
  const form = h('form', { class: 'stack feedback', novalidate: true },
    h('p', { class: 'lead', text: t('widget.feedback.lead') }),
    starField, nps,
    h('label', { for: 'sc-comment', text: t('widget.feedback.comment') }), comment,
    h('div', { class: 'row' }, submit,
      h('button', { class: 'link', type: 'button', text: t('widget.feedback.skip'),
        onclick: () => finishFeedback(false) })),
    status);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!satisfaction || recommendation === null) {
      status.replaceChildren(errorBox(t('widget.feedback.incomplete')));
      return;
    }
    submit.disabled = true;
    try {
      await ensureClient();
      const fields = { conversation_id: conversationId, satisfaction, recommendation };
      if (comment.value.trim()) fields.comment = comment.value.trim();
      await client.request('feedback.submit', fields);
      finishFeedback(true);
    } catch (err) {
      if (err.code === 'invalid_state') {
        finishFeedback(true); // already rated (e.g. from another tab)
        return;
      }
      submit.disabled = false;
      status.replaceChildren(errorBox(errorText(err)));
    }
  });
  show('feedback', form);
}

function finishFeedback(sent) {
  saveSession({ feedback_due: null });
  subEl.textContent = t('widget.subtitle');
  show('done', h('div', { class: 'done' },
    h('div', { class: 'done-icon', 'aria-hidden': 'true' }, icon(ICONS.check, { size: 28 })),
    h('h3', { text: sent ? t('widget.done.thanksFeedback') : t('widget.done.thanksVisit') }),
    h('p', { text: t('widget.done.more') }),
    h('button', { class: 'btn primary', type: 'button', text: t('widget.done.restart'),
      'data-autofocus': true, onclick: () => renderHome() })));
}

// Calls --------------------------------------------------------------------------------
async function proposeCall(kind) {
  if (!conv || conv.state !== 'accepted') return;
  try {
    const result = await client.request('call.propose', { conversation_id: conv.id, kind });
    conv.call = result.call;
    conv.callNote = '';
    renderCall();
    announce(kind === 'video' ? t('widget.call.video.requested') : t('widget.call.audio.requested'));
  } catch (err) {
    setCallNote(err.code === 'invalid_state' ? t('widget.call.notPossible') : errorText(err));
  }
}

function onCall(call, status, join) {
  if (!conv || !call || call.conversation_id !== conv.id) return;
  const known = conv.call && conv.call.call_id === call.call_id;
  if (known && status === 'started' && conv.call.started_at != null) return;
  conv.call = call;
  conv.join = join || conv.join;
  conv.callNote = '';
  if (status === 'started') startMedia(call, join);
  renderCall();
  if (!panelOpen) setBadge(unread + 1);
  let said = t('widget.call.started');
  if (status !== 'started') {
    said = call.kind === 'video' ? t('widget.call.video.proposed') : t('widget.call.audio.proposed');
  }
  announce(said);
}

/** The specialist's name, or null when not known (texts then say "the specialist"). */
function staffName() {
  return (conv && conv.staff && conv.staff.name) || null;
}

function staffFirstName() {
  const name = staffName();
  return name ? name.split(' ')[0] : null;
}

/** The call started (or is running when this page came back): ask before opening the
 * camera or microphone. */
function startMedia(call, join, { rejoin = false } = {}) {
  stopMedia();
  if (!join || join.media_available === false) {
    conv.callNote = t('widget.call.noMedia');
    return;
  }
  consent = { call, join, rejoin };
  announce(call.kind === 'video' ? t('widget.consent.video.title') : t('widget.consent.audio.title'));
}

/** The shopper answered the consent question: camera (video calls) and microphone, or not.
 * `audioOnly`: after a failed connection, the call again with sound only. */
function joinCall(camera, { audioOnly = false } = {}) {
  if (!consent || !conv) return;
  const { call, join } = consent;
  consent = null;
  const media = new CallMedia({ client, call, join, camera, microphone: true, audioOnly });
  callMedia = media;
  callStage = new CallStage(media, { remoteLabel: staffFirstName() || t('widget.message.specialist'),
    onHangUp: () => callAction('call.end', call),
    // Same call, new connection: the server takes the new offer as a fresh attempt.
    onRetry: ({ audioOnly: soundOnly }) => {
      stopMedia();
      if (conv) conv.callNote = '';
      consent = { call, join, rejoin: true };
      joinCall(camera && !soundOnly, { audioOnly: soundOnly });
    } });
  media.on('problem', (text) => addNote(text));
  media.on('error', (err) => {
    if (media !== callMedia) return;
    clearInterval(callTimer); // no clock running over a call that is not happening
    callTimer = null;
    let note = t('widget.call.error.lost');
    if (err.code === 'media_unavailable') note = t('widget.call.error.unavailable');
    else if (err.code === 'media_blocked') note = t('widget.call.error.blocked');
    setCallNote(note);
  });
  media.on('state', (state) => {
    if (state !== 'connected') return;
    const name = staffName();
    announce(name ? t('widget.call.connectedWith', { name }) : t('widget.call.connected'));
  });
  if (media.kind === 'video') offerTryOn(call, callStage, join);
  clearInterval(callTimer);
  callTimer = setInterval(updateCallClock, 1000);
  renderCall();
  media.start().catch(() => {});
}

function stopMedia() {
  consent = null;
  clearInterval(callTimer);
  callTimer = null;
  if (callStage) callStage.destroy();
  if (callMedia) callMedia.close();
  callStage = null;
  callMedia = null;
  tryOnPicker = null;
  panel.classList.remove('in-call');
}

function onMediaNotice(event) {
  if (!conv) return;
  if (callStage && callMedia && (!event.call_id || event.call_id === callMedia.callId)) {
    const text = noticeText(event);
    if (text === null) return;
    callStage.setNotice(text);
    if (text) announce(text);
  } else if (event.code !== 'video_resumed' && noticeText(event) !== null) {
    setCallNote(noticeText(event));
  }
}

function onCallGone(callId, reason) {
  if (!conv || !conv.call || conv.call.call_id !== callId) return;
  const video = conv.call.kind === 'video';
  const started = conv.call.started_at != null;
  conv.call = null;
  conv.join = null;
  renderCall();
  let text;
  if (reason === 'declined') {
    text = video ? t('widget.call.video.declined') : t('widget.call.audio.declined');
  } else if (reason === 'declined_by_me') {
    text = video ? t('widget.call.video.declinedByMe') : t('widget.call.audio.declinedByMe');
  } else if (started) {
    text = video ? t('widget.call.video.ended') : t('widget.call.audio.ended');
  } else {
    text = video ? t('widget.call.video.cancelled') : t('widget.call.audio.cancelled');
  }
  setCallNote(text);
}

function setCallNote(text) {
  if (!conv) return;
  conv.callNote = text;
  renderCall();
  if (text) announce(text);
}

function updateCallClock() {
  const el = callBar && callBar.querySelector('.call-clock');
  const call = conv && conv.call;
  if (!el || !call || call.started_at == null || !client) return;
  el.textContent = formatDuration(client.serverNow() - call.started_at, language());
}

function consentCard(call) {
  const video = call.kind === 'video';
  const name = staffName();
  let title = video ? t('widget.consent.video.title') : t('widget.consent.audio.title');
  if (consent && consent.rejoin) {
    title = video ? t('widget.consent.video.rejoin') : t('widget.consent.audio.rejoin');
  }
  let text;
  if (video) {
    text = name ? t('widget.consent.video.text', { name, first: staffFirstName() })
      : t('widget.consent.video.textUnknown');
  } else {
    text = name ? t('widget.consent.audio.text', { name }) : t('widget.consent.audio.textUnknown');
  }
  return h('div', { class: 'consent', role: 'alertdialog', 'aria-labelledby': 'sc-consent-title',
    'aria-describedby': 'sc-consent-text' },
  h('div', { class: 'consent-icon', 'aria-hidden': 'true' }, icon(video ? ICONS.video : ICONS.phone, { size: 26 })),
  h('h3', { id: 'sc-consent-title', text: title }),
  h('p', { id: 'sc-consent-text', text }),
  h('div', { class: 'consent-actions' },
    h('button', { class: 'btn primary', type: 'button', 'data-autofocus': true,
      onclick: () => joinCall(true) }, icon(video ? ICONS.video : ICONS.phone, { size: 18 }),
    video ? t('widget.consent.video.accept') : t('widget.consent.audio.accept')),
    video ? h('button', { class: 'btn', type: 'button', text: t('widget.consent.noCamera'),
      onclick: () => joinCall(false) }) : null,
    h('button', { class: 'link', type: 'button', text: t('widget.call.hangUp'),
      onclick: () => { consent = null; callAction('call.end', call); } })));
}

function renderCall() {
  if (!callBar || !conv) return;
  const call = conv.call;
  if (!call || call.started_at == null) stopMedia();
  const items = [];
  if (call) {
    const video = call.kind === 'video';
    const name = staffFirstName();
    const mine = String(call.proposed_by || '').startsWith('shopper');
    if (call.started_at != null && callMedia && callMedia.state === 'failed') {
      let text = video ? t('widget.call.video.failed') : t('widget.call.audio.failed');
      if (name) {
        text = video ? t('widget.call.video.failedWith', { name })
          : t('widget.call.audio.failedWith', { name });
      }
      items.push(h('span', { class: 'call-state failed', text }));
    } else if (call.started_at != null) {
      let text = video ? t('widget.call.video.live') : t('widget.call.audio.live');
      if (name) {
        text = video ? t('widget.call.video.liveWith', { name })
          : t('widget.call.audio.liveWith', { name });
      }
      items.push(h('span', { class: 'call-state live' }, text, ' ', h('span', { class: 'call-clock' })));
      if (!callStage && !consent) {
        items.push(h('button', { class: 'chip-btn danger', type: 'button', text: t('widget.call.hangUp'),
          onclick: () => { consent = null; callAction('call.end', call); } }));
      }
    } else if (mine) {
      items.push(h('span', { class: 'call-state',
        text: video ? t('widget.call.video.waiting') : t('widget.call.audio.waiting') }));
      items.push(h('button', { class: 'chip-btn subtle', type: 'button', text: t('widget.call.cancel'),
        onclick: () => callAction('call.end', call) }));
    } else {
      items.push(h('span', { class: 'call-state',
        text: video ? t('widget.call.video.offered') : t('widget.call.audio.offered') }));
      items.push(h('button', { class: 'chip-btn primary', type: 'button', text: t('widget.call.accept'),
        onclick: () => callAction('call.accept', call) }));
      items.push(h('button', { class: 'chip-btn subtle', type: 'button', text: t('widget.call.decline'),
        onclick: () => callAction('call.decline', call) }));
    }
  }
  if (conv.callNote) items.push(h('p', { class: 'call-note', text: conv.callNote }));
  callBar.hidden = !items.length;
  callBar.replaceChildren(...items);
  updateCallClock();
  if (stageSlot) {
    let content = null;
    if (consent && call && consent.call.call_id === call.call_id) content = consentCard(call);
    else if (callStage) content = callStage.el;
    if (content !== stageSlot.firstChild) stageSlot.replaceChildren(...(content ? [content] : []));
    stageSlot.hidden = !content;
    if (content && content !== callStage?.el) {
      requestAnimationFrame(() => content.querySelector('[data-autofocus]')?.focus());
    }
    for (const v of stageSlot.querySelectorAll('video')) v.play?.().catch(() => {});
    scrollLog(); // the log just got shorter or taller: keep the latest message in view
  }
  panel.classList.toggle('in-call', !!(callStage && callMedia && callMedia.kind === 'video'));
  renderActions();
}

async function callAction(type, call) {
  try {
    const result = await client.request(type, { call_id: call.call_id });
    if (type === 'call.accept') onCall(result.call, 'started', result.join);
    else if (type === 'call.decline') onCallGone(call.call_id, 'declined_by_me');
    else onCallGone(call.call_id, 'hung_up');
  } catch (err) {
    if (type === 'call.end' && err.code === 'not_found') {
      onCallGone(call.call_id, 'hung_up'); // ended meanwhile
      return;
    }
    setCallNote(err.code === 'media_unavailable' ? t('widget.call.serverUnavailable') : errorText(err));
  }
}

// Virtual try-on ----------------------------------------------------------------------
// Shown in video calls only when the server offers try-on for this store and has garments
// (GET /api/garments); the shopper picks a garment, the media server draws it on their
// camera picture, which the specialist sees and which comes back as the shopper's mirror
// (shown in the self view). `tryon.set` asks, `tryon.state` tells other devices.

/** @returns {Promise<{id: string, name: string, image: string|null}[]>} */
async function loadGarments() {
  let data;
  try {
    data = await fetchJson(api('/api/garments'), { token: session.token });
  } catch {
    return []; // no catalogue endpoint: a server without try-on
  }
  const stores = Array.isArray(data && data.stores) ? data.stores : [];
  if (!data || !data.enabled || (stores.length && !stores.includes(config.store))) return [];
  return (Array.isArray(data.garments) ? data.garments : []).filter((g) => g && g.id)
    .map((g) => ({ id: String(g.id), name: String(g.name || g.id),
      image: /^data:image\/png;base64,/.test(g.thumbnail || '') ? g.thumbnail : null }));
}

let tryOnPicker = null; // {callId, el, set(state)}

async function offerTryOn(call, stage, join) {
  const list = await loadGarments();
  if (!list.length || !callStage || callStage !== stage || !conv || !conv.call
      || conv.call.call_id !== call.call_id) return;
  const name = `sc-tryon-${call.call_id}`;
  const status = h('p', { class: 'tryon-status', role: 'status' });
  let current = '';
  const option = (id, label, image) => h('label', { class: 'tryon-opt' },
    h('input', { type: 'radio', name, value: id, class: 'vh-input', checked: id === '',
      onchange: () => choose(id) }),
    image ? h('img', { src: image, alt: '' }) : null,
    h('span', { text: label }));
  const el = h('fieldset', { class: 'tryon' },
    h('legend', { text: t('widget.tryon.legend') }),
    h('div', { class: 'tryon-list' }, option('', t('widget.tryon.off'), null),
      list.map((g) => option(g.id, g.name, g.image))),
    status);
  const set = (state) => {
    const garment = state && state.enabled ? state.garment : null;
    current = garment ? String(garment.id) : '';
    for (const input of el.querySelectorAll('input')) input.checked = input.value === current;
    const who = staffFirstName();
    let seen = '';
    if (garment) {
      seen = who ? t('widget.tryon.seen', { garment: garment.name || garment.id, name: who })
        : t('widget.tryon.seenUnknown', { garment: garment.name || garment.id });
    }
    status.textContent = seen;
    stage.setMirror(!!garment);
  };
  const choose = async (id) => {
    const fields = { call_id: call.call_id, enabled: !!id };
    if (id) fields.garment_id = id;
    status.textContent = id ? t('widget.tryon.putting') : '';
    try {
      set(await client.request('tryon.set', fields));
    } catch (err) {
      for (const input of el.querySelectorAll('input')) input.checked = input.value === current;
      status.textContent = ['tryon_unavailable', 'unknown_type'].includes(err.code)
        ? t('widget.tryon.unavailable') : errorText(err);
    }
  };
  tryOnPicker = { callId: call.call_id, el, set };
  stage.addPanel(el);
  // After a reload mid-call the server may still be drawing a garment on this camera.
  if (join && join.tryon && join.tryon.enabled) set(join.tryon);
}

function onTryOnState(event) {
  if (tryOnPicker && event && event.call_id === tryOnPicker.callId) tryOnPicker.set(event);
}

// Start --------------------------------------------------------------------------------
function boot() {
  document.body.append(host);
  document.removeEventListener('click', earlyOpen);
  document.addEventListener('click', (e) => {
    const trigger = e.target.closest && e.target.closest('[data-shopcall-open]');
    if (trigger) {
      e.preventDefault();
      openPanel();
    }
  });
  window.Shopcall = { open: openPanel, close: closePanel, config };
  // Reconnect straight away when something is going on (a live conversation, a message
  // waiting to be left, an answer to collect, feedback to give); otherwise on first open.
  const busy = session.conversation_id || session.pending_leave || session.feedback_due
    || (session.awaiting && session.awaiting.length);
  if (busy && session.token) {
    if (session.conversation_id) {
      show('loading', h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner' }),
        t('widget.loading.resume')));
    } else if (session.feedback_due) renderFeedback(session.feedback_due);
    ensureClient().catch(() => { if (view === 'loading') renderHome(); });
    if (session.open && (session.conversation_id || session.feedback_due)) openPanel();
  }
  if (openRequested && !panelOpen) openPanel();
}

if (!catalogues) {
  // No texts: no widget (an empty or key-only panel would be worse than none).
} else if (document.body) boot();
else document.addEventListener('DOMContentLoaded', boot, { once: true });
