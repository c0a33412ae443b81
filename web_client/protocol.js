// Shared signalling client for the shopper widget and the staff console.
//
// One WebSocket to `/ws`: `hello` with a bearer token, then requests answered by exactly one
// `ack` or `error` carrying the same `id`, and events pushed by the server (no `id`).
// The client reconnects with exponential backoff and says so through its events; what to do
// after a reconnect (resume conversations, restore presence) is up to the caller, which gets
// a fresh `welcome` event each time.

export const PROTOCOL_VERSION = 1;

/** An `error` reply from the server (or a local failure such as "disconnected"). */
export class ShopcallError extends Error {
  constructor(code, message, details) {
    super(message || code);
    this.name = 'ShopcallError';
    this.code = code;
    this.details = details;
  }
}

/** Codes that mean "this token will never work": get a new one instead of retrying. */
export const TOKEN_ERRORS = new Set(['invalid_token', 'expired_token']);

let counter = 0;
const RUN = Math.random().toString(36).slice(2, 8);

/** A request id unique for this page (also used as the idempotency key of chat.send). */
export function newId(prefix = 'r') {
  counter += 1;
  return `${prefix}-${RUN}-${Date.now().toString(36)}-${counter}`;
}

/** ws(s)://host/ws for an http(s) base URL (defaults to this page's origin). */
export function websocketUrl(base = location.origin) {
  const url = new URL('/ws', base);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

/**
 * @param {object} options
 * @param {string} options.url              WebSocket URL
 * @param {(opts:{refresh:boolean}) => Promise<string>} options.getToken
 *        returns the bearer token; `refresh: true` after the server refused the last one.
 *        Throw a ShopcallError with `fatal = true` to give up (e.g. no way to get a token).
 * @param {number} [options.requestTimeoutMs=15000]
 * @param {number} [options.minBackoffMs=1000]
 * @param {number} [options.maxBackoffMs=30000]
 */
export class SignalingClient {
  constructor({ url, getToken, requestTimeoutMs = 15000, minBackoffMs = 1000,
    maxBackoffMs = 30000 }) {
    this.url = url;
    this.getToken = getToken;
    this.requestTimeoutMs = requestTimeoutMs;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.state = 'idle'; // idle | connecting | open | reconnecting | stopped
    this.welcome = null;
    this.serverOffsetS = 0; // server clock minus local clock, in seconds
    this._ws = null;
    this._pending = new Map();
    this._handlers = new Map();
    this._attempt = 0;
    this._retryTimer = null;
    this._pingTimer = null;
    this._lastHeard = 0;
    this._refreshToken = false;
    this._stopped = true;
    this._onOnline = () => this._retryNow();
    this._onVisible = () => { if (document.visibilityState === 'visible') this._retryNow(); };
  }

  /** Subscribe to an event type ('chat.message', ...), '*' for all server messages, or a
   * local event: 'welcome', 'state' ({state, attempt, delayMs}), 'fatal' (ShopcallError).
   * Returns a function that unsubscribes. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  _emit(type, payload) {
    for (const key of [type, '*']) {
      if (key === '*' && ['state', 'fatal'].includes(type)) continue;
      for (const handler of [...(this._handlers.get(key) || [])]) {
        try {
          handler(payload);
        } catch (err) {
          console.error(`shopcall: handler for ${type} failed`, err);
        }
      }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { state, ...extra });
  }

  get connected() {
    return this.state === 'open';
  }

  /** Server time now, in seconds since the epoch. */
  serverNow() {
    return Date.now() / 1000 + this.serverOffsetS;
  }

  /** Connect (resolves with the first welcome) and keep reconnecting until stop(). */
  start() {
    this._stopped = false;
    window.addEventListener('online', this._onOnline);
    document.addEventListener('visibilitychange', this._onVisible);
    return new Promise((resolve, reject) => {
      const offWelcome = this.on('welcome', (w) => { offAll(); resolve(w); });
      const offFatal = this.on('fatal', (e) => { offAll(); reject(e); });
      const offAll = () => { offWelcome(); offFatal(); };
      this._open();
    });
  }

  /** Close for good (no reconnect). */
  stop() {
    this._stopped = true;
    window.removeEventListener('online', this._onOnline);
    document.removeEventListener('visibilitychange', this._onVisible);
    clearTimeout(this._retryTimer);
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000, 'bye');
    }
    this._failPending(new ShopcallError('disconnected', 'connection closed'));
    this._setState('stopped');
  }

  /**
   * Send a request; resolves with the ack's `result`, rejects with a ShopcallError.
   * Pass `id` in options to reuse an id (chat.send is idempotent on it).
   */
  request(type, fields = {}, { id = newId(type.split('.')[0]), timeoutMs } = {}) {
    if (!this.connected) {
      return Promise.reject(new ShopcallError('disconnected', 'not connected'));
    }
    return this._send({ type, id, ...fields }, timeoutMs);
  }

  _send(message, timeoutMs = this.requestTimeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(message.id);
        reject(new ShopcallError('timeout', `no reply to ${message.type}`));
      }, timeoutMs);
      this._pending.set(message.id, { resolve, reject, timer, type: message.type });
      try {
        this._ws.send(JSON.stringify(message));
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(message.id);
        reject(new ShopcallError('disconnected', String(err)));
      }
    });
  }

  /** Fire and forget (typing indicators): no error if offline. */
  notify(type, fields = {}) {
    if (!this.connected) return;
    this.request(type, fields).catch(() => {});
  }

  async _open() {
    if (this._stopped) return;
    clearTimeout(this._retryTimer);
    this._setState(this._attempt ? 'reconnecting' : 'connecting', { attempt: this._attempt });
    let token;
    try {
      token = await this.getToken({ refresh: this._refreshToken });
      this._refreshToken = false;
    } catch (err) {
      if (err instanceof ShopcallError && err.fatal) this._fatal(err);
      else this._scheduleRetry();
      return;
    }
    if (this._stopped) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      const id = newId('hello');
      this._send({ type: 'hello', id, v: PROTOCOL_VERSION, token }).catch((err) => {
        if (ws !== this._ws) return;
        if (TOKEN_ERRORS.has(err.code)) {
          this._refreshToken = true;
        } else if (['forbidden', 'unsupported_version'].includes(err.code)) {
          this._fatal(err);
          return;
        }
        ws.close(4000, 'hello failed');
      });
    };
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      this._ws = null;
      this._stopHeartbeat();
      this._failPending(new ShopcallError('disconnected', 'connection lost'));
      if (event.code === 4401) this._refreshToken = true;
      this._scheduleRetry();
    };
    ws.onerror = () => {}; // followed by close; nothing useful to log
  }

  _fatal(err) {
    this._emit('fatal', err);
    this.stop();
  }

  _onMessage(ws, event) {
    if (ws !== this._ws) return;
    this._lastHeard = Date.now();
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'welcome') {
      this._settle(msg.id, msg, null);
      this.welcome = msg;
      if (typeof msg.server_time === 'number') {
        this.serverOffsetS = msg.server_time - Date.now() / 1000;
      }
      this._attempt = 0;
      this._setState('open');
      this._startHeartbeat(msg.heartbeat_interval_s);
      this._emit('welcome', msg);
      return;
    }
    if (msg.type === 'ack') {
      this._settle(msg.id, msg.result || {}, null);
      return;
    }
    if (msg.type === 'error') {
      const err = new ShopcallError(msg.code, msg.message, msg.details);
      if (this._settle(msg.id, null, err)) return;
      // Frames refused unread (too large, rate limited) get `id: null`. The server answers
      // frames strictly in order, so such an error belongs to the oldest unanswered request.
      const oldest = msg.id == null ? this._pending.keys().next().value : undefined;
      if (oldest === undefined || !this._settle(oldest, null, err)) this._emit('error', err);
      return;
    }
    if (msg.type === 'pong') {
      this._settle(msg.id, msg, null);
      return;
    }
    this._emit(msg.type, msg);
  }

  _settle(id, result, err) {
    const pending = id != null && this._pending.get(id);
    if (!pending) return false;
    this._pending.delete(id);
    clearTimeout(pending.timer);
    if (err) pending.reject(err);
    else pending.resolve(result);
    return true;
  }

  _failPending(err) {
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(err);
    }
    this._pending.clear();
  }

  _startHeartbeat(intervalS) {
    this._stopHeartbeat();
    const everyMs = Math.max(1, Number(intervalS) || 15) * 1000;
    this._lastHeard = Date.now();
    this._pingTimer = setInterval(() => {
      const ws = this._ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this._lastHeard > 3 * everyMs + 5000) {
        ws.close(4000, 'server silent'); // onclose reconnects
        return;
      }
      this._send({ type: 'ping', id: newId('ping') }, everyMs * 2).catch(() => {});
    }, everyMs);
  }

  _stopHeartbeat() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  _scheduleRetry() {
    if (this._stopped) return;
    const base = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this._attempt);
    const delayMs = Math.round(base * (0.75 + Math.random() * 0.5));
    this._attempt += 1;
    this._setState('reconnecting', { attempt: this._attempt, delayMs });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), delayMs);
  }

  _retryNow() {
    if (this._stopped || this._ws || this.state !== 'reconnecting') return;
    this._open();
  }
}

/** fetch() JSON with the server's error shape turned into ShopcallError. */
export async function fetchJson(url, { method = 'GET', token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(url, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit', cache: 'no-store',
    });
  } catch (err) {
    throw new ShopcallError('network', 'the server cannot be reached');
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new ShopcallError(e.code || `http_${resp.status}`, e.message || resp.statusText,
      e.details);
  }
  return data;
}
