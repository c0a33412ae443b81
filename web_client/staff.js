// Shopcall staff console: presence, offers, queue, several conversations side by side,
// product cards, canned replies, transfer, and the asynchronous messages inbox.

import { errorText } from './errors.js';
import { language, pickLanguage, setLanguage, t, translatePage } from './i18n.js';
import { CallMedia, CallStage, noticeText } from './media.js';
import { SignalingClient, ShopcallError, fetchJson, newId, websocketUrl } from './protocol.js';
import {
  ICONS, formatDateTime, formatDuration, formatPrice, formatTime, h, icon, loadJson, safeUrl,
  saveJson,
} from './ui.js';

const STAFF_KEY = 'shopcall.staff';
const PRESENCE_KEY = 'shopcall.staff.presence'; // sessionStorage: survives reloads of this tab
const LANGUAGE_KEY = 'shopcall.staff.language'; // localStorage: the console's language, if chosen
const MAX_TEXT = 4000;
const PRESENCES = new Set(['online', 'away', 'busy_in_store', 'offline']);
// Why an offer went away (conversation.offer_withdrawn reason): the toast's text.
const WITHDRAWN = {
  expired: () => t('console.offer.withdrawn.expired'),
  closed_by_shopper: () => t('console.offer.withdrawn.closed_by_shopper'),
  staff_offline: () => t('console.offer.withdrawn.staff_offline'),
  staff_away: () => t('console.offer.withdrawn.staff_away'),
  staff_busy_in_store: () => t('console.offer.withdrawn.staff_busy_in_store'),
};
// Quick replies: [label, text] in the console's language (the demo shop's wording).
const CANNED = [
  [() => t('console.reply.greeting.label'),
    (member) => t('console.reply.greeting.text', { name: firstName(member) })],
  [() => t('console.reply.moment.label'), () => t('console.reply.moment.text')],
  [() => t('console.reply.video.label'), () => t('console.reply.video.text')],
  [() => t('console.reply.in_stock.label'), () => t('console.reply.in_stock.text')],
  [() => t('console.reply.goodbye.label'), () => t('console.reply.goodbye.text')],
];
// Conversation states (server values) as shown on a column.
const STATES = {
  queued: () => t('console.state.queued'),
  assigned: () => t('console.state.assigned'),
  accepted: () => t('console.state.accepted'),
  missed: () => t('console.state.missed'),
  closed: () => t('console.state.closed'),
};
// The call bar's texts by kind of call.
const CALL_TEXTS = {
  video: {
    failed: () => t('console.call.video.failed'),
    live: () => t('console.call.video.live'),
    asked: () => t('console.call.video.asked'),
    proposed: () => t('console.call.video.proposed'),
  },
  audio: {
    failed: () => t('console.call.audio.failed'),
    live: () => t('console.call.audio.live'),
    asked: () => t('console.call.audio.asked'),
    proposed: () => t('console.call.audio.proposed'),
  },
};

const $ = (id) => document.getElementById(id);

let client = null;
let me = null; // welcome.staff
let presence = 'offline';
let queue = [];
let queueAt = 0; // local time the snapshot arrived (ms)
const offers = new Map(); // conversation id -> {conversation, expires_at, transferred_by}
const convs = new Map(); // conversation id -> column state (see Column)
/** Calls this staff member was invited into (then joined) as a colleague, by call id. */
const guestCalls = new Map();
let asyncTimer = null;

function firstName(member) {
  return ((member && member.name) || '').split(' ')[0] || t('console.reply.greeting.no_name');
}

/**
 * A catalogue text with elements in it: "{name}" placeholders become the given nodes
 * (a link, a <strong>), for h(...) children.
 */
function rich(key, nodes = {}) {
  return t(key).split(/\{(\w+)\}/).map((part, i) => {
    if (i % 2 === 0) return part || null;
    return nodes[part] ?? `{${part}}`;
  });
}

/** A number with `digits` decimals, written the way the console's language writes it. */
function formatNumber(value, digits) {
  return new Intl.NumberFormat(language(), { minimumFractionDigits: digits,
    maximumFractionDigits: digits }).format(value);
}

function shortId(id) {
  return String(id || '').slice(-6);
}

// Token --------------------------------------------------------------------------------
function storedToken() {
  let raw = null;
  try {
    raw = localStorage.getItem(STAFF_KEY);
  } catch {
    return null;
  }
  if (!raw) return null;
  try {
    const value = JSON.parse(raw);
    if (value && typeof value === 'object') return value.token || null;
    if (typeof value === 'string') return value;
  } catch {
    /* a bare token string */
  }
  return raw.trim() || null;
}

function tokenFromFragment() {
  // /staff#token=... signs in without pasting (the fragment never reaches the server).
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

async function getToken({ refresh }) {
  const token = storedToken();
  if (!token || refresh) {
    const err = new ShopcallError('expired_token',
      'This token was refused or has expired. Paste a new one.');
    err.fatal = true;
    throw err;
  }
  return token;
}

// Toasts and small helpers -------------------------------------------------------------
/** A message in the corner for a few seconds; returns its element (to remove it early). */
function toast(text, kind = 'info') {
  const el = h('div', { class: `toast ${kind}`, text });
  $('toasts').append(el);
  setTimeout(() => el.remove(), 6000);
  return el;
}

// The "New request" toast of each pending offer: it must go as soon as the offer does
// (accepted here or on another device, declined, withdrawn), not linger for its 6 s.
const offerToasts = new Map(); // conversation id -> toast element

/** Forget an offer and everything on screen that announced it. */
function dropOffer(cid) {
  offerToasts.get(cid)?.remove();
  offerToasts.delete(cid);
  return offers.delete(cid);
}

let audioCtx = null;
function beep() {
  if (!$('sound').checked) return;
  try {
    audioCtx = audioCtx || new AudioContext();
    const osc = audioCtx.createOscillator();
    const gain = audioCtx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, audioCtx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.2, audioCtx.currentTime + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, audioCtx.currentTime + 0.35);
    osc.connect(gain).connect(audioCtx.destination);
    osc.start();
    osc.stop(audioCtx.currentTime + 0.4);
  } catch {
    /* no audio: the visual alert is enough */
  }
}

function updateTitle() {
  const n = offers.size;
  document.title = n ? t('console.page_title_offers', { count: n }) : t('console.page_title');
}

function pageLabel(url) {
  const safe = safeUrl(url);
  if (!safe) return null;
  const u = new URL(safe);
  return { href: safe, text: (u.pathname === '/' ? u.host : u.pathname).slice(0, 40) };
}

function wantsText(channel) {
  if (channel === 'video') return t('console.tag.wants_video');
  if (channel === 'audio') return t('console.tag.wants_audio');
  return t('console.tag.wants', { channel });
}

function contextBits(c) {
  return [
    c.sku && h('span', { class: 'tag' }, ...rich('console.tag.product', { sku: h('strong', { text: c.sku }) })),
    c.skill && h('span', { class: 'tag', text: c.skill }),
    c.language && h('span', { class: 'tag', text: c.language.toUpperCase() }),
    c.channel && c.channel !== 'chat' && h('span', { class: 'tag accent', text: wantsText(c.channel) }),
    c.store && me && c.store !== me.store && h('span', { class: 'tag', text: t('console.tag.store', { store: c.store }) }),
  ];
}

// Sign in / out ------------------------------------------------------------------------
function showSignIn(message) {
  $('console').hidden = true;
  $('who').hidden = true;
  $('presence').hidden = true;
  $('load').hidden = true;
  $('sign-out').hidden = true;
  $('sound-toggle').hidden = true;
  $('signin').hidden = false;
  $('signin-error').hidden = !message;
  $('signin-error').textContent = message || '';
  setConn(t('console.conn.not_connected'), 'off');
  $('token').focus();
}

function signOut() {
  if (client) client.stop();
  client = null;
  saveJson(STAFF_KEY, null);
  try {
    sessionStorage.removeItem(PRESENCE_KEY);
  } catch {
    /* ignore */
  }
  clearInterval(asyncTimer);
  for (const cid of [...offers.keys()]) dropOffer(cid);
  convs.clear();
  $('convs').replaceChildren();
  renderOffers();
  renderConvsEmpty();
  showSignIn();
}

function setConn(text, kind) {
  const el = $('conn');
  el.textContent = text;
  el.className = `conn-pill ${kind}`;
}

function connect() {
  $('signin').hidden = true;
  $('console').hidden = false;
  $('sign-out').hidden = false;
  $('sound-toggle').hidden = false;
  client = new SignalingClient({ url: websocketUrl(location.origin), getToken });
  client.on('state', ({ state, delayMs }) => {
    if (state === 'open') setConn(t('console.conn.connected'), 'ok');
    else if (state === 'reconnecting') {
      setConn(delayMs ? t('console.conn.reconnecting_in', { seconds: Math.ceil(delayMs / 1000) })
        : t('console.conn.reconnecting'), 'warn');
    } else if (state === 'connecting') setConn(t('console.conn.connecting'), 'warn');
  });
  client.on('fatal', (err) => {
    client = null;
    const message = err.code === 'forbidden'
      ? t('console.signin.not_staff') : errorText(err);
    if (['expired_token', 'invalid_token', 'forbidden'].includes(err.code)) {
      saveJson(STAFF_KEY, null);
    }
    showSignIn(message);
  });
  client.on('welcome', onWelcome);
  client.on('presence.changed', (m) => setPresence(m.status));
  client.on('queue.snapshot', (m) => setQueue(m.queue));
  client.on('conversation.offered', onOffered);
  client.on('conversation.offer_withdrawn', onOfferWithdrawn);
  client.on('conversation.accepted', (m) => {
    // Accepted from another device of mine.
    dropOffer(m.conversation_id);
    renderOffers();
    if (!convs.has(m.conversation_id)) openColumn({ conversation_id: m.conversation_id, state: 'accepted' });
  });
  // A shopper left a message this staff member may answer: the inbox shows it at once.
  client.on('async.left', () => { loadAsync(); });
  client.on('conversation.closed', (m) => {
    const col = convs.get(m.conversation_id);
    if (col) {
      endColumn(col, String(m.by || '').startsWith('shopper') ? t('console.conv.shopper_ended')
        : t('console.conv.closed'));
    }
  });
  client.on('chat.message', (m) => {
    const col = m.message && convs.get(m.message.conversation_id);
    if (col) addMessage(col, m.message, true);
  });
  client.on('chat.typing', (m) => {
    const col = convs.get(m.conversation_id);
    if (col && m.from !== 'staff') showTyping(col, m.typing);
  });
  client.on('chat.read', (m) => {
    const col = convs.get(m.conversation_id);
    if (col && m.from !== 'staff') {
      col.peerRead = Math.max(col.peerRead, m.seq || 0);
      updateReceipts(col);
    }
  });
  client.on('call.proposed', (m) => onCall(m.call));
  client.on('call.started', (m) => onCall(m.call, m.join));
  client.on('call.declined', (m) => onCallGone(m.call_id, 'declined'));
  client.on('call.ended', (m) => {
    onCallGone(m.call_id, m.reason);
    guestCallGone(m.call_id, t('console.invite.call_ended'));
  });
  client.on('media.offer', (m) => {
    const col = columnForCall(m.call_id) || guestCalls.get(m.call_id);
    if (col && col.media && m.sdp) col.media.handleServerOffer(m.sdp);
  });
  client.on('media.sources', (m) => {
    const col = columnForCall(m.call_id) || guestCalls.get(m.call_id);
    if (col && col.media) col.media.setSources(m.sources);
  });
  client.on('call.invited', (m) => showInvitation(m));
  client.on('call.joined', (m) => toast(t('console.invite.joined', { name: m.name }), 'ok'));
  client.on('call.left', (m) => toast(t('console.invite.left',
    { name: m.name || String(m.participant).replace(/^staff:/, '') }), 'ok'));
  client.on('tryon.state', (m) => {
    // The shopper tried a garment on: say so next to the call (the video shows it).
    const col = columnForCall(m.call_id);
    if (!col) return;
    col.tryOn = m.enabled
      ? String((m.garment && (m.garment.name || m.garment.id)) || t('console.call.a_garment'))
      : null;
    renderCall(col);
  });
  client.on('media.notice', (m) => {
    const col = columnForCall(m.call_id);
    const text = noticeText(m);
    if (col && col.stage && text !== null) col.stage.setNotice(text);
  });
  client.on('media.layer', (m) => {
    // The media server thins the shopper's video for this device's weak link.
    const col = columnForCall(m.call_id);
    if (col) col.layer = m.layer == null ? null : { layer: m.layer, layers: m.layers || 3 };
  });
  client.start().catch(() => {});
}

// Welcome and presence -----------------------------------------------------------------
async function onWelcome(w) {
  me = w.staff || { id: w.subject, name: w.subject, max_conversations: 1 };
  $('who').hidden = false;
  $('me-name').textContent = me.name;
  $('me-store').textContent = me.store ? `· ${me.store}` : '';
  $('presence').hidden = false;
  $('load').hidden = false;
  setPresence(w.presence || 'offline');
  setQueue(w.queue || []);

  const mine = new Map((w.conversations || []).map((c) => [c.conversation_id, c]));
  for (const [cid] of offers) if (!mine.has(cid)) dropOffer(cid);
  for (const c of mine.values()) {
    if (c.state === 'assigned' && !offers.has(c.conversation_id)) {
      offers.set(c.conversation_id, { conversation: c, expires_at: null });
    }
  }
  renderOffers();
  for (const col of convs.values()) {
    if (!col.ended && !(mine.get(col.id) && mine.get(col.id).state === 'accepted')) {
      endColumn(col, t('console.conv.back_to_queue'));
    }
  }
  for (const c of mine.values()) if (c.state === 'accepted') openColumn(c);

  let desired = null;
  try {
    desired = sessionStorage.getItem(PRESENCE_KEY);
  } catch {
    /* ignore */
  }
  if (desired && desired !== presence && PRESENCES.has(desired)) await changePresence(desired);
  loadAsync();
  clearInterval(asyncTimer);
  asyncTimer = setInterval(loadAsync, 60000);
}

function setPresence(status) {
  presence = status;
  for (const input of document.querySelectorAll('input[name="presence"]')) {
    input.checked = input.value === status;
  }
  $('presence').dataset.status = status;
  renderOffers();
}

async function changePresence(status) {
  try {
    sessionStorage.setItem(PRESENCE_KEY, status);
  } catch {
    /* ignore */
  }
  if (!client || !client.connected) {
    setPresence(presence);
    toast(t('console.presence.not_connected'), 'warn');
    return;
  }
  try {
    const result = await client.request('presence.set', { status });
    setPresence(result.status || status);
    if (status === 'offline') {
      for (const col of convs.values()) {
        if (!col.ended) endColumn(col, t('console.conv.went_offline'));
      }
    }
  } catch (err) {
    setPresence(presence);
    toast(errorText(err), 'error');
  }
}

// Queue --------------------------------------------------------------------------------
function setQueue(list) {
  queue = Array.isArray(list) ? list : [];
  queueAt = Date.now();
  renderQueue();
}

function renderQueue() {
  const body = $('queue').tBodies[0];
  const elapsed = (Date.now() - queueAt) / 1000;
  body.replaceChildren(...queue.map((c) => {
    const page = pageLabel(c.page_url);
    return h('tr', {},
      h('td', { class: 'num', dataset: { waiting: String(c.waiting_s || 0) } },
        formatDuration((c.waiting_s || 0) + elapsed, language()),
        c.position ? h('span', { class: 'muted', text: ` ${t('console.queue.position', { position: c.position })}` }) : null),
      h('td', { text: c.sku || '—' }),
      h('td', { text: c.skill || t('console.queue.any_skill') }),
      h('td', { text: (c.language || '—').toUpperCase() }),
      h('td', {}, page ? h('a', { href: page.href, target: '_blank', rel: 'noopener', text: page.text }) : '—'));
  }));
  $('queue').hidden = !queue.length;
  $('queue-empty').hidden = !!queue.length;
  $('queue-count').textContent = queue.length ? String(queue.length) : '';
}

// Offers -------------------------------------------------------------------------------
function onOffered(m) {
  const c = m.conversation;
  if (!c) return;
  offers.set(c.conversation_id, { conversation: c, expires_at: m.expires_at ?? null,
    transferred_by: m.transferred_by || null });
  renderOffers();
  beep();
  offerToasts.get(c.conversation_id)?.remove();
  offerToasts.set(c.conversation_id, toast(m.transferred_by
    ? t('console.offer.transfer_toast', { name: m.transferred_by }) : t('console.offer.new_toast'),
  'info'));
}

function onOfferWithdrawn(m) {
  if (!dropOffer(m.conversation_id)) return;
  renderOffers();
  toast(WITHDRAWN[m.reason] ? WITHDRAWN[m.reason]() : t('console.offer.withdrawn.other'), 'warn');
}

function activeCount() {
  return [...convs.values()].filter((c) => !c.ended).length;
}

function renderOffers() {
  const list = $('offers');
  const full = me && activeCount() >= me.max_conversations;
  list.replaceChildren(...[...offers.values()].map((offer) => {
    const c = offer.conversation;
    const page = pageLabel(c.page_url);
    const accept = h('button', { class: 'btn primary', type: 'button', text: t('console.action.accept'),
      disabled: full, onclick: () => acceptOffer(c.conversation_id, accept) });
    const decline = h('button', { class: 'btn ghost', type: 'button', text: t('console.action.decline'),
      onclick: () => declineOffer(c.conversation_id, decline) });
    return h('li', { class: 'offer', dataset: { id: c.conversation_id } },
      h('div', { class: 'offer-head' },
        h('strong', { text: offer.transferred_by
          ? t('console.offer.transfer_from', { name: offer.transferred_by }) : t('console.offer.new_shopper') }),
        h('span', { class: 'countdown', dataset: { expires: offer.expires_at ?? '' } })),
      h('div', { class: 'tags' }, contextBits(c)),
      page ? h('p', { class: 'page' }, ...rich('console.offer.on_page',
        { page: h('a', { href: page.href, target: '_blank', rel: 'noopener', text: page.text }) })) : null,
      h('div', { class: 'bar', 'aria-hidden': 'true' }, h('span')),
      full ? h('p', { class: 'muted small', text: t('console.offer.full') }) : null,
      h('div', { class: 'actions' }, accept, decline));
  }));
  $('offers-empty').hidden = offers.size > 0;
  $('offers-empty').replaceChildren(...(presence === 'online'
    ? [t('console.offers.empty')]
    : rich('console.offers.empty_offline',
      { status: h('strong', { text: t('console.presence.online') }) })).filter(Boolean));
  $('offers-count').textContent = offers.size ? String(offers.size) : '';
  updateTitle();
  updateLoad();
  tickCountdowns();
}

function tickCountdowns() {
  if (!client) return;
  const now = client.serverNow();
  for (const li of document.querySelectorAll('.offer')) {
    const offer = offers.get(li.dataset.id);
    const label = li.querySelector('.countdown');
    const bar = li.querySelector('.bar span');
    if (!offer || offer.expires_at == null) {
      label.textContent = '';
      bar.parentElement.hidden = true;
      continue;
    }
    const left = Math.max(0, offer.expires_at - now);
    if (offer.total == null) offer.total = Math.max(left, 1);
    label.textContent = left > 0 ? t('console.offer.seconds_left', { seconds: Math.ceil(left) })
      : t('console.offer.expired');
    label.classList.toggle('urgent', left < 10);
    bar.style.width = `${Math.min(100, (left / offer.total) * 100)}%`;
  }
}

async function acceptOffer(cid, button) {
  button.disabled = true;
  try {
    const result = await client.request('conversation.accept', { conversation_id: cid });
    dropOffer(cid);
    renderOffers();
    const col = openColumn(result.conversation, { fetch: false });
    for (const message of result.messages || []) addMessage(col, message, false);
    markRead(col);
    col.input.focus();
  } catch (err) {
    button.disabled = false;
    if (['not_found', 'invalid_state'].includes(err.code)) {
      dropOffer(cid);
      renderOffers();
    }
    toast(errorText(err), 'error');
  }
}

async function declineOffer(cid, button) {
  button.disabled = true;
  try {
    await client.request('conversation.decline', { conversation_id: cid });
  } catch (err) {
    if (!['not_found', 'invalid_state'].includes(err.code)) {
      button.disabled = false;
      toast(errorText(err), 'error');
      return;
    }
  }
  dropOffer(cid);
  renderOffers();
}

function updateLoad() {
  if (!me) return;
  const n = activeCount();
  $('load').textContent = t('console.load', { count: me.max_conversations, active: n });
  $('load').classList.toggle('full', n >= me.max_conversations);
}

// Conversation columns -----------------------------------------------------------------
function renderConvsEmpty() {
  $('convs-empty').hidden = convs.size > 0 || guestCalls.size > 0;
}

function openColumn(summary, { fetch = true } = {}) {
  let col = convs.get(summary.conversation_id);
  if (col && !col.ended) {
    Object.assign(col.summary, summary);
    renderHeader(col);
    if (fetch) resume(col);
    return col;
  }
  if (col) col.el.remove();
  col = {
    id: summary.conversation_id, summary: { ...summary }, messages: new Map(), lastSeq: 0,
    outbox: new Map(), peerRead: 0, readSent: 0, call: summary.call || null, ended: false,
    acceptedAt: Date.now(), typingTimer: null, typingSentAt: 0, peerTypingTimer: null,
  };
  convs.set(col.id, col);
  buildColumn(col);
  renderConvsEmpty();
  updateLoad();
  renderOffers();
  if (fetch) resume(col);
  return col;
}

async function resume(col) {
  try {
    const result = await client.request('conversation.resume',
      { conversation_id: col.id, after_seq: col.lastSeq });
    if (result.conversation) {
      Object.assign(col.summary, result.conversation);
      const call = result.conversation.call || null;
      if (col.call && (!call || call.call_id !== col.call.call_id)) {
        onCallGone(col.call.call_id, 'ended'); // ended while we were disconnected
      }
      col.call = call;
      renderHeader(col);
      renderCall(col);
      // A call is running and this page has no media for it (reloaded): rejoin it.
      if (call && result.join && result.join.call_id === call.call_id) onCall(call, result.join);
    }
    for (const message of result.messages || []) addMessage(col, message, false);
    for (const [clientId, item] of col.outbox) if (item.retryable) send(col, item.payload, clientId);
    markRead(col);
  } catch (err) {
    toast(errorText(err), 'error');
  }
}

function buildColumn(col) {
  const uid = newId('c');
  col.header = h('header', { class: 'conv-head' });
  col.callBar = h('div', { class: 'callbar', hidden: true, role: 'status' });
  col.stageSlot = h('div', { class: 'stage-slot', hidden: true });
  col.log = h('ol', { class: 'log', role: 'log', 'aria-live': 'polite',
    'aria-label': t('console.conv.messages') });
  col.typing = h('p', { class: 'typing', 'aria-live': 'polite' });
  col.input = h('textarea', { id: `${uid}-input`, rows: 2, maxLength: MAX_TEXT,
    placeholder: t('console.conv.reply_placeholder') });
  col.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      col.composer.requestSubmit();
    }
  });
  col.input.addEventListener('input', () => onInput(col));
  col.composer = h('form', { class: 'composer' },
    h('label', { class: 'vh', for: col.input.id, text: t('console.conv.reply') }), col.input,
    h('button', { class: 'btn primary send', type: 'submit', 'aria-label': t('console.conv.send') },
      icon(ICONS.send)));
  col.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = col.input.value.trim();
    if (!text) return;
    col.input.value = '';
    stopTyping(col);
    send(col, { text });
  });
  const canned = h('div', { class: 'canned', role: 'group', 'aria-label': t('console.reply.group') },
    CANNED.map(([label, make]) => h('button', { class: 'chip', type: 'button', text: label(),
      onclick: () => {
        col.input.value = make(me);
        col.input.focus();
      } })));
  col.tools = h('div', { class: 'tools' }, canned, productForm(col, uid), transferForm(col, uid),
    closeControl(col));
  col.endedEl = h('div', { class: 'ended', hidden: true, role: 'status' });
  col.outcome = outcomeForm(col, uid);
  col.el = h('article', { class: 'conv',
    'aria-label': t('console.conv.label', { id: shortId(col.summary.shopper_id || col.id) }) },
    col.header, col.callBar, col.stageSlot, col.log, col.typing, col.endedEl, col.composer, col.tools,
    col.outcome);
  col.el.addEventListener('focusin', () => markRead(col));
  col.el.addEventListener('pointerdown', () => markRead(col));
  $('convs').append(col.el);
  renderHeader(col);
  renderCall(col);
}

function renderHeader(col) {
  const c = col.summary;
  const page = pageLabel(c.page_url);
  col.header.replaceChildren(
    h('div', { class: 'conv-title' },
      h('h3', { text: t('console.conv.title', { id: shortId(c.shopper_id || col.id) }) }),
      h('span', { class: `state ${col.ended ? 'closed' : c.state}`, text: stateText(col.ended ? 'closed' : c.state) })),
    h('div', { class: 'tags' }, contextBits(c)),
    page ? h('p', { class: 'page' }, ...rich('console.conv.came_from',
      { page: h('a', { href: page.href, target: '_blank', rel: 'noopener', text: page.text }) })) : null,
    c.opened_at ? h('p', { class: 'muted small',
      text: t('console.conv.opened_at', { time: formatTime(c.opened_at, language()) }) }) : null);
}

function stateText(state) {
  if (!state) return '';
  return STATES[state] ? STATES[state]() : state;
}

function productForm(col, uid) {
  const field = (name, label, attrs = {}) => {
    const input = h('input', { id: `${uid}-${name}`, name, ...attrs });
    return h('div', { class: `field f-${name}` }, h('label', { for: input.id, text: label }), input);
  };
  const status = h('p', { class: 'error small', role: 'alert', hidden: true });
  const form = h('form', { class: 'mini-form' },
    field('sku', t('console.product.sku'), { required: true, maxLength: 64, value: col.summary.sku || '' }),
    field('title', t('console.product.title'), { required: true, maxLength: 200 }),
    field('price', t('console.product.price'), { type: 'number', min: '0', step: '0.01', inputmode: 'decimal' }),
    field('currency', t('console.product.currency'), { maxLength: 3, value: 'EUR', pattern: '[A-Z]{3}' }),
    field('image_url', t('console.product.image_url'), { type: 'url', placeholder: t('console.product.url_placeholder') }),
    field('link', t('console.product.link'), { type: 'url', placeholder: t('console.product.url_placeholder') }),
    status,
    h('button', { class: 'btn primary small', type: 'submit', text: t('console.product.send') }));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const card = { sku: data.sku.trim(), title: data.title.trim() };
    if (data.price !== '') card.price = Number(data.price);
    const currency = data.currency.trim().toUpperCase();
    if (currency && card.price !== undefined) card.currency = currency;
    for (const key of ['image_url', 'link']) {
      const value = data[key].trim();
      if (value) {
        if (!/^https?:\/\//.test(value)) {
          status.hidden = false;
          status.textContent = key === 'link' ? t('console.product.link_invalid')
            : t('console.product.image_url_invalid');
          return;
        }
        card[key] = value;
      }
    }
    if (!card.sku || !card.title) {
      status.hidden = false;
      status.textContent = t('console.product.missing');
      return;
    }
    status.hidden = true;
    send(col, { card });
    details.open = false;
  });
  const details = h('details', { class: 'tool' }, h('summary', { text: t('console.product.summary') }), form);
  return details;
}

/**
 * The conversation's outcome (order placed, value), for shops whose back end does not report
 * it: saved through the HTTP API with the staff token, during or after the conversation, and
 * it stays available once the conversation has ended (that is when it is usually known).
 */
function outcomeForm(col, uid) {
  const yes = h('input', { type: 'radio', name: `${uid}-order`, value: 'yes' });
  const no = h('input', { type: 'radio', name: `${uid}-order`, value: 'no' });
  const value = h('input', { id: `${uid}-order-value`, type: 'number', min: '0', step: '0.01',
    inputmode: 'decimal', disabled: true });
  const currency = h('input', { id: `${uid}-order-currency`, maxLength: 3, value: 'EUR',
    pattern: '[A-Z]{3}', disabled: true, autocapitalize: 'characters' });
  const state = h('p', { class: 'outcome-state small', role: 'status' });
  const sync = () => {
    value.disabled = currency.disabled = !yes.checked;
  };
  yes.addEventListener('change', sync);
  no.addEventListener('change', sync);
  const button = h('button', { class: 'btn small', type: 'submit', text: t('console.outcome.save') });
  const form = h('form', { class: 'mini-form outcome-form' },
    h('fieldset', { class: 'inline' }, h('legend', { text: t('console.outcome.order_placed') }),
      h('label', {}, yes, ' ', t('console.outcome.yes')), h('label', {}, no, ' ', t('console.outcome.no'))),
    h('div', { class: 'field f-value' }, h('label', { for: value.id, text: t('console.outcome.value') }), value),
    h('div', { class: 'field f-currency' },
      h('label', { for: currency.id, text: t('console.outcome.currency') }), currency),
    button, state);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!yes.checked && !no.checked) {
      state.textContent = t('console.outcome.choose');
      state.className = 'outcome-state small error';
      return;
    }
    const body = { order_placed: yes.checked };
    if (yes.checked && value.value !== '') {
      body.order_value = Number(value.value);
      body.currency = currency.value.trim().toUpperCase();
    }
    button.disabled = true;
    try {
      await fetchJson(`/api/conversations/${encodeURIComponent(col.id)}/outcome`,
        { method: 'POST', token: storedToken(), body });
      state.className = 'outcome-state small ok';
      let result = t('console.outcome.no_order');
      if (body.order_placed) {
        result = body.order_value != null
          ? t('console.outcome.order_value',
            { amount: formatNumber(body.order_value, 2), currency: body.currency })
          : t('console.outcome.order');
      }
      state.textContent = t('console.outcome.saved', { result });
      details.open = false;
      details.querySelector('summary').textContent = t('console.outcome.summary_result', { result });
    } catch (err) {
      state.className = 'outcome-state small error';
      state.textContent = errorText(err);
    } finally {
      button.disabled = false;
    }
  });
  const details = h('details', { class: 'tool outcome' },
    h('summary', { text: t('console.outcome.summary') }), form);
  return details;
}

function transferForm(col, uid) {
  const target = h('input', { id: `${uid}-target`, required: true, maxLength: 64 });
  const toStaff = h('input', { type: 'radio', name: `${uid}-kind`, value: 'staff', checked: true });
  const toSkill = h('input', { type: 'radio', name: `${uid}-kind`, value: 'skill' });
  const label = h('label', { for: target.id, text: t('console.transfer.colleague_id') });
  const syncLabel = () => {
    label.textContent = toStaff.checked ? t('console.transfer.colleague_id') : t('console.transfer.skill');
    target.placeholder = toStaff.checked ? t('console.transfer.colleague_example')
      : t('console.transfer.skill_example');
  };
  toStaff.addEventListener('change', syncLabel);
  toSkill.addEventListener('change', syncLabel);
  syncLabel();
  const form = h('form', { class: 'mini-form' },
    h('fieldset', { class: 'inline' }, h('legend', { text: t('console.transfer.to') }),
      h('label', {}, toStaff, ' ', t('console.transfer.to_colleague')),
      h('label', {}, toSkill, ' ', t('console.transfer.to_skill'))),
    h('div', { class: 'field' }, label, target),
    h('button', { class: 'btn small', type: 'submit', text: t('console.transfer.submit') }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = target.value.trim();
    if (!value) return;
    const fields = { conversation_id: col.id };
    if (toStaff.checked) fields.to_staff = value;
    else fields.to_skill = value;
    try {
      await client.request('conversation.transfer', fields);
      toast(t('console.transfer.done', { target: value }), 'ok');
      removeColumn(col);
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  return h('details', { class: 'tool' }, h('summary', { text: t('console.transfer.summary') }), form);
}

function closeControl(col) {
  const wrap = h('div', { class: 'close-wrap' });
  const ask = () => {
    wrap.replaceChildren(h('span', { text: t('console.close.ask') }),
      h('button', { class: 'btn danger small', type: 'button', text: t('console.close.confirm'), onclick: doClose }),
      h('button', { class: 'btn ghost small', type: 'button', text: t('console.close.cancel'), onclick: reset }));
    wrap.querySelector('button').focus();
  };
  const reset = () => wrap.replaceChildren(h('button', { class: 'btn ghost small', type: 'button',
    text: t('console.close.button'), onclick: ask }));
  const doClose = async () => {
    try {
      await client.request('conversation.close', { conversation_id: col.id });
      endColumn(col, t('console.conv.you_ended'));
    } catch (err) {
      if (err.code === 'not_found') endColumn(col, t('console.conv.closed'));
      else toast(errorText(err), 'error');
      reset();
    }
  };
  reset();
  return wrap;
}

function endColumn(col, reason) {
  if (col.ended) return;
  col.ended = true;
  col.call = null;
  stopMedia(col);
  renderCall(col);
  col.el.classList.add('is-ended');
  col.composer.hidden = true;
  col.tools.hidden = true;
  col.typing.replaceChildren();
  col.endedEl.hidden = false;
  col.endedEl.replaceChildren(h('p', { text: reason }),
    h('button', { class: 'btn small', type: 'button', text: t('console.action.dismiss'),
      onclick: () => removeColumn(col) }));
  renderHeader(col);
  updateLoad();
  renderOffers();
}

function removeColumn(col) {
  stopMedia(col);
  col.el.remove();
  convs.delete(col.id);
  renderConvsEmpty();
  updateLoad();
  renderOffers();
}

// Messages -----------------------------------------------------------------------------
function addMessage(col, message, live) {
  if (message.from === 'staff' && message.client_id && col.outbox.has(message.client_id)) {
    col.outbox.delete(message.client_id);
    col.log.querySelector(`[data-client-id="${CSS.escape(message.client_id)}"]`)?.remove();
  }
  if (col.messages.has(message.seq)) return;
  col.messages.set(message.seq, message);
  const gap = message.seq > col.lastSeq + 1;
  while (col.messages.has(col.lastSeq + 1)) col.lastSeq += 1;
  renderMessage(col, message);
  if (message.from === 'shopper') {
    showTyping(col, false);
    if (live) markRead(col);
  }
  if (gap && live && client && client.connected) {
    client.request('conversation.resume', { conversation_id: col.id, after_seq: col.lastSeq })
      .then((r) => (r.messages || []).forEach((m) => addMessage(col, m, false)))
      .catch(() => {});
  }
}

function renderMessage(col, message) {
  const mine = message.from === 'staff';
  const own = mine && message.sender_id === (me && me.id);
  let who = t('console.msg.shopper');
  if (mine) who = own ? t('console.msg.you') : t('console.msg.colleague', { id: message.sender_id });
  let content;
  if (message.kind === 'product_card' && message.card) content = productCard(message.card);
  else if (message.kind === 'async') {
    content = h('p', { class: 'text', text: t('console.msg.left_message', { text: message.text || '' }) });
  }
  else content = h('p', { class: 'text', text: message.text || '' });
  const li = h('li', { class: `msg ${mine ? 'mine' : 'theirs'} kind-${message.kind || 'text'}`,
    dataset: { seq: String(message.seq) } },
  h('span', { class: 'who', text: who }),
  h('div', { class: 'bubble' }, content),
  h('span', { class: 'meta' }, formatTime(message.at, language()), mine ? h('span', { class: 'receipt' }) : null));
  const after = [...col.log.querySelectorAll('li.msg[data-seq]')]
    .find((el) => Number(el.dataset.seq) > message.seq);
  if (after) col.log.insertBefore(li, after);
  else {
    const pending = col.log.querySelector('li.pending');
    if (pending) col.log.insertBefore(li, pending);
    else col.log.append(li);
  }
  updateReceipts(col);
  col.log.scrollTop = col.log.scrollHeight;
}

function productCard(card) {
  const link = safeUrl(card.link);
  const image = safeUrl(card.image_url);
  return h('div', { class: 'pcard' },
    image ? h('img', { src: image, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer' }) : null,
    h('div', {},
      h('strong', { text: card.title }),
      card.price != null ? h('span', { class: 'price', text: formatPrice(card.price, card.currency, language()) }) : null,
      h('span', { class: 'muted small', text: t('console.msg.ref', { sku: card.sku }) }),
      link ? h('a', { href: link, target: '_blank', rel: 'noopener', text: t('console.msg.open_link') }) : null));
}

function renderPending(col, clientId, item) {
  const existing = col.log.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`);
  const content = item.payload.card ? productCard(item.payload.card)
    : h('p', { class: 'text', text: item.payload.text });
  const meta = item.status === 'failed'
    ? h('span', { class: 'meta failed' }, t('console.msg.not_sent'), ' ', h('button', { class: 'link', type: 'button',
      text: t('console.msg.retry'), onclick: () => send(col, item.payload, clientId) }))
    : h('span', { class: 'meta', text: t('console.msg.sending') });
  const li = h('li', { class: `msg mine pending${item.payload.card ? ' kind-product_card' : ''}`, dataset: { clientId } },
    h('span', { class: 'who', text: t('console.msg.you') }), h('div', { class: 'bubble' }, content), meta);
  if (existing) existing.replaceWith(li);
  else col.log.append(li);
  col.log.scrollTop = col.log.scrollHeight;
}

async function send(col, payload, clientId = newId('msg')) {
  if (col.ended) return;
  const item = { payload, status: 'sending' };
  col.outbox.set(clientId, item);
  renderPending(col, clientId, item);
  try {
    const result = await client.request('chat.send', { conversation_id: col.id, ...payload },
      { id: clientId });
    if (result.message) addMessage(col, { ...result.message, client_id: clientId }, false);
  } catch (err) {
    if (!col.outbox.has(clientId)) return;
    item.status = 'failed';
    item.retryable = ['disconnected', 'timeout'].includes(err.code);
    renderPending(col, clientId, item);
    if (!item.retryable) toast(errorText(err), 'error');
  }
}

function updateReceipts(col) {
  const mine = [...col.log.querySelectorAll('li.msg.mine[data-seq]')];
  mine.forEach((li, i) => {
    const receipt = li.querySelector('.receipt');
    if (!receipt) return;
    const last = i === mine.length - 1;
    const status = Number(li.dataset.seq) <= col.peerRead ? t('console.msg.read') : t('console.msg.sent');
    receipt.textContent = last ? ` · ${status}` : '';
  });
}

function markRead(col) {
  if (!client || !client.connected || col.ended || document.visibilityState !== 'visible') return;
  let latest = 0;
  for (const [seq, m] of col.messages) if (m.from === 'shopper' && seq > latest) latest = seq;
  if (latest > col.readSent) {
    col.readSent = latest;
    client.notify('chat.read', { conversation_id: col.id, seq: latest });
  }
}

function onInput(col) {
  const now = Date.now();
  if (col.input.value && now - col.typingSentAt > 3000) {
    col.typingSentAt = now;
    client?.notify('chat.typing', { conversation_id: col.id, typing: true });
  }
  clearTimeout(col.typingTimer);
  col.typingTimer = setTimeout(() => stopTyping(col), 4000);
}

function stopTyping(col) {
  clearTimeout(col.typingTimer);
  if (col.typingSentAt) client?.notify('chat.typing', { conversation_id: col.id, typing: false });
  col.typingSentAt = 0;
}

function showTyping(col, typing) {
  clearTimeout(col.peerTypingTimer);
  if (!typing) {
    col.typing.replaceChildren();
    return;
  }
  col.typing.replaceChildren(h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
    t('console.msg.typing'));
  col.peerTypingTimer = setTimeout(() => col.typing.replaceChildren(), 8000);
}

// Calls --------------------------------------------------------------------------------
// Colleagues in a call ------------------------------------------------------------------
/** "Invite a colleague": a colleague of this store who is online joins the running call. */
function inviteControl(col) {
  const uid = newId('inv');
  const input = h('input', { id: `${uid}-who`, required: true, maxLength: 64,
    placeholder: t('console.invite.placeholder'), autocomplete: 'off' });
  const form = h('form', { class: 'invite-form', hidden: true },
    h('label', { class: 'vh', for: input.id, text: t('console.invite.label') }), input,
    h('button', { class: 'btn small', type: 'submit', text: t('console.invite.submit') }));
  const open = h('button', { class: 'btn ghost small', type: 'button', text: t('console.invite.open'),
    'aria-expanded': 'false',
    onclick: () => {
      form.hidden = !form.hidden;
      open.setAttribute('aria-expanded', String(!form.hidden));
      if (!form.hidden) input.focus();
    } });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const staffId = input.value.trim();
    if (!staffId || !col.call) return;
    try {
      await client.request('call.invite', { call_id: col.call.call_id, staff_id: staffId });
      toast(t('console.invite.sent', { id: staffId }), 'ok');
      input.value = '';
      form.hidden = true;
      open.setAttribute('aria-expanded', 'false');
    } catch (err) {
      toast(errorText(err), 'error');
    }
  });
  return h('span', { class: 'invite' }, open, form);
}

/** A colleague asks this staff member into their call: a card with Join and Decline. */
function showInvitation(m) {
  const call = m.call || {};
  if (!call.call_id || guestCalls.has(call.call_id)) return;
  const conv = m.conversation || {};
  const from = (m.from && (m.from.name || m.from.id)) || t('console.invite.a_colleague');
  const audio = call.kind === 'audio';
  const entry = { call, media: null, stage: null };
  const body = h('div', { class: 'guest-body' });
  const header = h('header', { class: 'conv-head' },
    h('div', { class: 'conv-title' },
      h('h3', { text: audio ? t('console.invite.title_audio', { from })
        : t('console.invite.title_video', { from }) }),
      h('span', { class: 'state accepted', text: t('console.invite.state') })),
    h('div', { class: 'tags' }, contextBits(conv)));
  entry.el = h('article', { class: 'conv guest',
    'aria-label': t('console.invite.card_label', { from }) }, header, body);
  const leave = () => {
    client.request('call.leave', { call_id: call.call_id }).catch(() => {});
    guestCallGone(call.call_id, null);
  };
  body.replaceChildren(h('div', { class: 'guest-actions' },
    h('button', { class: 'btn primary', type: 'button', text: t('console.invite.join'),
      onclick: async () => {
        try {
          const joined = await client.request('call.join', { call_id: call.call_id });
          entry.media = new CallMedia({ client, call: joined.call, join: joined.join });
          entry.stage = new CallStage(entry.media,
            { remoteLabel: t('console.invite.remote_label'), onHangUp: leave });
          header.querySelector('.state').textContent = t('console.invite.in_call');
          body.replaceChildren(entry.stage.el);
          entry.media.on('problem', (text) => toast(text, 'warn'));
          entry.media.start().catch(() => {});
        } catch (err) {
          toast(errorText(err), 'error');
          guestCallGone(call.call_id, null);
        }
      } }),
    h('button', { class: 'btn ghost', type: 'button', text: t('console.action.decline'),
      onclick: () => guestCallGone(call.call_id, null) })));
  guestCalls.set(call.call_id, entry);
  $('convs').prepend(entry.el);
  renderConvsEmpty();
  toast(audio ? t('console.invite.toast_audio', { from }) : t('console.invite.toast_video', { from }), 'ok');
}

function guestCallGone(callId, note) {
  const entry = guestCalls.get(callId);
  if (!entry) return;
  guestCalls.delete(callId);
  if (entry.stage) entry.stage.destroy();
  if (entry.media) entry.media.close();
  if (note) {
    const body = entry.el.querySelector('.guest-body');
    body.replaceChildren(h('p', { class: 'muted', text: note }),
      h('button', { class: 'btn small', type: 'button', text: t('console.action.dismiss'),
        onclick: () => { entry.el.remove(); renderConvsEmpty(); } }));
  } else {
    entry.el.remove();
    renderConvsEmpty();
  }
}

function columnForCall(callId) {
  for (const col of convs.values()) if (col.call && col.call.call_id === callId) return col;
  return null;
}

function onCall(call, join) {
  const col = call && convs.get(call.conversation_id);
  if (!col) return;
  col.call = call;
  col.join = join || col.join;
  col.callNote = '';
  // Staff join straight away: their device is the shop's, and they accepted the call.
  if (call.started_at != null && col.join && col.join.media_available !== false
      && (!col.media || col.media.callId !== call.call_id)) {
    startMedia(col, call, col.join);
  }
  renderCall(col);
  if (call.started_at == null && !String(call.proposed_by || '').startsWith('staff')) beep();
}

function startMedia(col, call, join, { audioOnly = false } = {}) {
  stopMedia(col);
  const media = new CallMedia({ client, call, join, audioOnly });
  col.media = media;
  col.stage = new CallStage(media, { remoteLabel: t('console.msg.shopper'),
    onHangUp: () => callAction(col, 'call.end'),
    onRetry: ({ audioOnly: soundOnly }) => {
      col.callNote = '';
      startMedia(col, call, join, { audioOnly: soundOnly });
      renderCall(col);
    } });
  col.quality = h('p', { class: 'quality', 'aria-live': 'off', text: t('console.call.connecting') });
  col.stage.el.append(col.quality);
  media.on('problem', (text) => toast(text, 'warn'));
  media.on('error', (err) => {
    if (col.media !== media) return;
    col.callNote = err && err.code === 'media_blocked'
      ? t('console.call.blocked') : t('console.call.lost');
    renderCall(col);
  });
  col.statsTimer = setInterval(() => updateQuality(col), 1000);
  media.start().catch(() => {});
}

function stopMedia(col) {
  clearInterval(col.statsTimer);
  col.statsTimer = null;
  if (col.stage) col.stage.destroy();
  if (col.media) col.media.close();
  col.stage = null;
  col.media = null;
  col.quality = null;
}

function formatRate(kbps) {
  if (kbps == null) return '–';
  return kbps >= 1000 ? t('console.quality.mbps', { rate: formatNumber(kbps / 1000, 2) })
    : t('console.quality.kbps', { rate: formatNumber(kbps, 0) });
}

async function updateQuality(col) {
  const media = col.media;
  if (!media || !col.quality) return;
  let s;
  try {
    s = await media.stats();
  } catch {
    return;
  }
  if (!s || col.media !== media || !col.quality) return;
  const lossPct = s.packetsReceived + s.packetsLost
    ? (100 * s.packetsLost) / (s.packetsReceived + s.packetsLost) : 0;
  const parts = [
    t('console.quality.in', { rate: formatRate(s.kbps) }),
    s.packetsLost ? t('console.quality.lost_pct', { lost: s.packetsLost, pct: formatNumber(lossPct, 1) })
      : t('console.quality.lost', { lost: s.packetsLost }),
    t('console.quality.frames', { frames: s.framesDecoded }),
  ];
  if (s.width) {
    parts.push(s.framesPerSecond
      ? t('console.quality.size_fps', { width: s.width, height: s.height, fps: Math.round(s.framesPerSecond) })
      : t('console.quality.size', { width: s.width, height: s.height }));
  }
  if (s.rttMs != null) parts.push(t('console.quality.rtt', { ms: s.rttMs }));
  parts.push(col.layer ? t('console.quality.layers', { layer: col.layer.layer + 1, layers: col.layer.layers })
    : t('console.quality.all_layers'));
  col.quality.textContent = parts.join(' · ');
  col.quality.dataset.framesDecoded = String(s.framesDecoded);
  col.quality.classList.toggle('bad', lossPct > 5);
}

function onCallGone(callId, reason) {
  for (const col of convs.values()) {
    if (col.call && col.call.call_id === callId) {
      const started = col.call.started_at != null;
      col.call = null;
      col.layer = null;
      if (reason === 'declined') col.callNote = t('console.call.shopper_declined');
      else col.callNote = started ? t('console.call.ended') : t('console.call.cancelled');
      renderCall(col);
    }
  }
}

function renderCall(col) {
  const call = col.call;
  if (!call || call.started_at == null) stopMedia(col);
  const items = [];
  if (call) {
    const texts = call.kind === 'video' ? CALL_TEXTS.video : CALL_TEXTS.audio;
    const fromShopper = String(call.proposed_by || '').startsWith('shopper');
    if (call.started_at != null) {
      const failed = col.media && col.media.state === 'failed';
      items.push(h('span', { class: failed ? 'call-state failed' : 'call-state live',
        text: failed ? texts.failed() : texts.live() }));
      if (col.tryOn) items.push(h('span', { class: 'tag accent', text: t('console.call.tryon', { garment: col.tryOn }) }));
      if (col.join && col.join.media_available === false) {
        items.push(h('span', { class: 'muted small', text: t('console.call.media_unavailable') }));
      } else if (!col.join) {
        items.push(h('span', { class: 'muted small', text: t('console.call.rejoining') }));
      }
      if (!col.stage) {
        items.push(h('button', { class: 'btn danger small', type: 'button', text: t('console.call.end'),
          onclick: () => callAction(col, 'call.end') }));
      } else {
        items.push(inviteControl(col));
      }
    } else if (fromShopper) {
      items.push(h('span', { class: 'call-state', text: texts.asked() }));
      items.push(h('button', { class: 'btn primary small', type: 'button', text: t('console.action.accept'),
        onclick: () => callAction(col, 'call.accept') }));
      items.push(h('button', { class: 'btn ghost small', type: 'button', text: t('console.action.decline'),
        onclick: () => callAction(col, 'call.decline') }));
    } else {
      items.push(h('span', { class: 'call-state', text: texts.proposed() }));
    }
  }
  if (col.callNote) items.push(h('span', { class: 'muted small', text: col.callNote }));
  col.callBar.hidden = !items.length;
  col.callBar.replaceChildren(...items);
  if (col.stageSlot) {
    if (col.stage && col.stageSlot.firstChild !== col.stage.el) col.stageSlot.replaceChildren(col.stage.el);
    if (!col.stage) col.stageSlot.replaceChildren();
    col.stageSlot.hidden = !col.stage;
    col.el?.classList.toggle('in-call', !!col.stage);
  }
}

async function callAction(col, type) {
  const call = col.call;
  if (!call) return;
  try {
    const result = await client.request(type, { call_id: call.call_id });
    if (type === 'call.accept') onCall(result.call, result.join);
    else {
      col.call = null;
      col.callNote = type === 'call.decline' ? t('console.call.you_declined') : t('console.call.ended');
      renderCall(col);
    }
  } catch (err) {
    if (type === 'call.end' && err.code === 'not_found') {
      col.call = null;
      col.callNote = t('console.call.ended');
      renderCall(col);
      return;
    }
    col.callNote = err.code === 'media_unavailable'
      ? t('console.call.unavailable') : errorText(err);
    renderCall(col);
  }
}

// Asynchronous messages ----------------------------------------------------------------
async function loadAsync() {
  const token = storedToken();
  if (!token) return;
  const showAnswered = $('async-answered').checked;
  const url = `/api/async-messages${showAnswered ? '' : '?answered=false'}`;
  try {
    const data = await fetchJson(url, { token });
    $('async-error').hidden = true;
    renderAsync(data.async_messages || []);
  } catch (err) {
    $('async-error').hidden = false;
    $('async-error').textContent = t('console.async.load_failed', { error: errorText(err) });
  }
}

function renderAsync(list) {
  const ul = $('async');
  // Keep what staff are typing in open answer boxes across refreshes.
  const drafts = new Map([...ul.querySelectorAll('textarea')].map((t) => [t.dataset.id, t.value]));
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.id : null;
  const sorted = [...list].sort((a, b) => (a.answer ? 1 : 0) - (b.answer ? 1 : 0)
    || a.created_at - b.created_at);
  ul.replaceChildren(...sorted.map((m) => asyncItem(m, drafts.get(String(m.id)))));
  if (focused) ul.querySelector(`textarea[data-id="${CSS.escape(focused)}"]`)?.focus();
  const waiting = list.filter((m) => !m.answer).length;
  $('async-count').textContent = waiting ? String(waiting) : '';
  $('async-empty').hidden = list.length > 0;
}

function contactLink(contact) {
  if (/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(contact)) {
    return h('a', { href: `mailto:${contact}`, text: contact });
  }
  if (/^\+?[0-9 ().-]{6,}$/.test(contact)) {
    return h('a', { href: `tel:${contact.replace(/[^0-9+]/g, '')}`, text: contact });
  }
  return h('span', { text: contact });
}

function asyncItem(m, draft) {
  const uid = newId('a');
  const meta = h('p', { class: 'muted small' }, formatDateTime(m.created_at, language()),
    m.skill ? ` · ${m.skill}` : '', m.store ? ` · ${m.store}` : '');
  const head = [meta, h('blockquote', { text: m.text }),
    h('p', { class: 'small' }, ...rich('console.async.contact', { contact: contactLink(m.contact) }))];
  if (m.answer) {
    const answered = m.answered_by ? t('console.async.answered_by', { name: m.answered_by })
      : t('console.async.answered');
    return h('li', { class: 'async-item answered' }, ...head,
      h('p', { class: 'answer' }, h('strong', { text: answered }), ' ', m.answer));
  }
  const text = h('textarea', { id: `${uid}-answer`, rows: 3, required: true, maxLength: 4000,
    dataset: { id: String(m.id) } });
  if (draft) text.value = draft;
  const button = h('button', { class: 'btn primary small', type: 'submit', text: t('console.async.send') });
  const form = h('form', { class: 'mini-form' },
    h('label', { for: text.id, text: t('console.async.your_answer') }), text, button);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const answer = text.value.trim();
    if (!answer) return;
    button.disabled = true;
    try {
      await fetchJson(`/api/async-messages/${encodeURIComponent(m.id)}/answer`,
        { method: 'POST', token: storedToken(), body: { answer } });
      text.value = '';
      toast(t('console.async.sent'), 'ok');
      loadAsync();
    } catch (err) {
      button.disabled = false;
      toast(errorText(err), 'error');
    }
  });
  return h('li', { class: 'async-item' }, ...head, form);
}

// Language -----------------------------------------------------------------------------
/** The console's language: the one picked in its header, else the browser's languages (the
 * page's own <html lang> is ours, not the staff member's). */
function consoleLanguage() {
  let chosen = null;
  try {
    chosen = localStorage.getItem(LANGUAGE_KEY);
  } catch {
    /* storage blocked: the browser's languages decide */
  }
  const browser = navigator.languages && navigator.languages.length
    ? navigator.languages : [navigator.language];
  return pickLanguage(chosen, browser);
}

/** Load the catalogues (before anything is rendered). */
async function loadLanguage(lang) {
  try {
    return await setLanguage(lang, ['common', 'media', 'console']);
  } catch (err) {
    // Without the call stage's texts (media.js falls back to its keys) rather than no console.
    console.warn('staff console: catalogue not loaded', err);
    return setLanguage(lang, ['common', 'console']);
  }
}

/** The picker in the header: the choice is kept on this device and applied by a reload. */
function setupLanguagePicker() {
  const select = $('language');
  select.value = language();
  select.addEventListener('change', () => {
    try {
      localStorage.setItem(LANGUAGE_KEY, select.value);
    } catch {
      /* not kept: this page still switches */
    }
    location.reload();
  });
}

// Start --------------------------------------------------------------------------------
function start() {
  const fromFragment = tokenFromFragment();
  if (fromFragment) saveJson(STAFF_KEY, { token: fromFragment });
  $('signin-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    saveJson(STAFF_KEY, { token });
    $('token').value = '';
    connect();
  });
  $('sign-out').addEventListener('click', signOut);
  for (const input of document.querySelectorAll('input[name="presence"]')) {
    input.addEventListener('change', () => changePresence(input.value));
  }
  $('async-refresh').addEventListener('click', loadAsync);
  $('async-answered').addEventListener('change', loadAsync);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') for (const col of convs.values()) markRead(col);
  });
  setInterval(() => {
    tickCountdowns();
    if (queue.length) {
      const elapsed = (Date.now() - queueAt) / 1000;
      for (const td of document.querySelectorAll('#queue td[data-waiting]')) {
        td.firstChild.textContent = formatDuration(Number(td.dataset.waiting) + elapsed, language());
      }
    }
  }, 500);
  renderConvsEmpty();
  renderOffers();
  renderQueue();
  if (storedToken()) connect();
  else showSignIn();
}

async function main() {
  await loadLanguage(consoleLanguage());
  translatePage(document);
  setupLanguagePicker();
  updateTitle();
  start();
}

main();
