// Call media shared by the shopper widget and the staff console.
//
// One RTCPeerConnection per call, with the shopcall SFU at the other end:
//   - the client sends its own `media.offer` (camera/microphone, plus receive slots) and
//     applies the SDP answer carried by the ack;
//   - the server pushes `media.offer` events when it has more to send (another participant's
//     streams): they are answered with `media.answer`;
//   - the server (aiortc) has no trickle ICE, so every SDP leaves only once ICE gathering is
//     complete, with all candidates inside;
//   - negotiation steps run one at a time (a promise queue): a server offer never interleaves
//     with our own offer/answer.
//
// CallMedia is the logic (no DOM); CallStage draws remote videos, self view, the notice
// banner and the controls into any container, with classes both stylesheets know.

import { ShopcallError } from './protocol.js';
import { h, icon } from './ui.js';

const GATHER_TIMEOUT_MS = 5000;
const MAX_RESTARTS = 2;

/** RTCIceServer list from `join.ice_servers` (tolerates a bare `urls` string). */
function iceServers(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((s) => s && s.urls).map((s) => {
    const server = { urls: s.urls };
    if (s.username) server.username = s.username;
    if (s.credential) server.credential = s.credential;
    return server;
  });
}

/** Message for the user when the camera or microphone cannot be opened. */
export function deviceErrorText(err, wanted) {
  const what = wanted === 'video' ? 'camera' : 'microphone';
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return `Access to your ${what} was refused. The others cannot see or hear you; you can still see and hear them.`;
    case 'NotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found on this device.`;
    case 'NotReadableError':
    case 'AbortError':
      return `Your ${what} is in use by another application.`;
    default:
      return `Your ${what} could not be started.`;
  }
}

export class CallMedia {
  /**
   * @param {object} o
   * @param {import('./protocol.js').SignalingClient} o.client
   * @param {object} o.call   the call (call_id, kind)
   * @param {object} o.join   `join` from call.started / call.accept (ice_servers, kind)
   * @param {boolean} [o.camera=true]     send video (video calls only)
   * @param {boolean} [o.microphone=true] send audio
   */
  constructor({ client, call, join, camera = true, microphone = true }) {
    this.client = client;
    this.callId = call.call_id;
    this.kind = (join && join.kind) || call.kind || 'video';
    this.iceServers = iceServers(join && join.ice_servers);
    this.wantCamera = this.kind === 'video' && camera;
    this.wantMicrophone = microphone;
    this.pc = null;
    this.localStream = null;
    this.remote = new Map(); // track id -> {track, mid}
    this.state = 'new'; // new | starting | connecting | connected | reconnecting | failed | closed
    this.muted = false;
    this.cameraOff = !this.wantCamera;
    this.closed = false;
    this.problems = []; // texts for the user (device refused...)
    this._chain = Promise.resolve();
    this._restarts = 0;
    this._handlers = new Map();
    this._lastStats = null;
  }

  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  _emit(type, payload) {
    for (const handler of [...(this._handlers.get(type) || [])]) {
      try {
        handler(payload);
      } catch (err) {
        console.error(`shopcall media: ${type} handler failed`, err);
      }
    }
  }

  _setState(state) {
    if (this.state === state || (this.closed && state !== 'closed')) return;
    this.state = state;
    this._emit('state', state);
  }

  /** Open devices, create the connection and negotiate with the SFU. */
  async start() {
    this._setState('starting');
    await this._openDevices();
    if (this.closed) return;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.addEventListener('track', (e) => this._onTrack(e));
    pc.addEventListener('connectionstatechange', () => this._onConnectionState());
    const stream = this.localStream;
    const audio = stream && stream.getAudioTracks()[0];
    const video = stream && stream.getVideoTracks()[0];
    // Always one audio and (video calls) one video transceiver: we receive the other side
    // on them even when we do not send.
    pc.addTransceiver(audio || 'audio',
      { direction: audio ? 'sendrecv' : 'recvonly', streams: audio ? [stream] : [] });
    if (this.kind === 'video') {
      pc.addTransceiver(video || 'video',
        { direction: video ? 'sendrecv' : 'recvonly', streams: video ? [stream] : [] });
    }
    this._setState('connecting');
    await this._enqueue(() => this._offer());
  }

  async _openDevices() {
    const wantVideo = this.wantCamera;
    const wantAudio = this.wantMicrophone;
    if (!wantVideo && !wantAudio) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.problems.push('This browser cannot use a camera or microphone here (a secure https page is needed).');
      this.cameraOff = true;
      return;
    }
    const videoConstraints = { width: { ideal: 640 }, height: { ideal: 480 },
      frameRate: { ideal: 30, max: 30 } };
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia(
        { audio: wantAudio, video: wantVideo ? videoConstraints : false });
    } catch (err) {
      if (wantVideo) {
        this.problems.push(deviceErrorText(err, 'video'));
        this.cameraOff = true;
        if (wantAudio) {
          try {
            this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
          } catch (err2) {
            this.problems.push(deviceErrorText(err2, 'audio'));
          }
        }
      } else {
        this.problems.push(deviceErrorText(err, 'audio'));
      }
    }
    if (this.closed && this.localStream) this._stopLocal();
    if (this.localStream) this._emit('local', this.localStream);
    for (const text of this.problems) this._emit('problem', text);
  }

  /** Run negotiation steps strictly one after the other. */
  _enqueue(step) {
    const run = this._chain.then(() => (this.closed ? null : step()));
    this._chain = run.catch(() => {});
    return run;
  }

  /** Resolves once ICE gathering is complete (aiortc has no trickle ICE), or after 5 s. */
  _gathered() {
    const pc = this.pc;
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const onCandidate = (e) => { if (!e.candidate) done(); };
      const timer = setTimeout(done, GATHER_TIMEOUT_MS);
      pc.addEventListener('icegatheringstatechange', check);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  async _offer({ iceRestart = false, retries = 2 } = {}) {
    const pc = this.pc;
    await pc.setLocalDescription(await pc.createOffer({ iceRestart }));
    await this._gathered();
    let result;
    try {
      result = await this.client.request('media.offer',
        { call_id: this.callId, sdp: pc.localDescription.sdp }, { timeoutMs: 20000 });
    } catch (err) {
      if (this.closed) return;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      // The server had an offer of its own out (glare): answer it first (it is queued
      // behind this step), then offer again.
      if (err.code === 'negotiation_failed' && retries > 0) {
        this._enqueue(() => this._offer({ iceRestart, retries: retries - 1 }));
        return;
      }
      this._fail(err);
      throw err;
    }
    if (this.closed) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: result.sdp });
    this._pruneRemote();
  }

  /** A `media.offer` event pushed by the server (renegotiation). */
  handleServerOffer(sdp) {
    return this._enqueue(async () => {
      const pc = this.pc;
      if (!pc) return;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await this._gathered();
      if (this.closed) return;
      await this.client.request('media.answer',
        { call_id: this.callId, sdp: pc.localDescription.sdp }, { timeoutMs: 20000 });
      this._pruneRemote();
    }).catch((err) => {
      if (!this.closed) console.warn('shopcall media: server offer failed', err);
    });
  }

  _onTrack(event) {
    const { track, transceiver } = event;
    if (this.remote.has(track.id)) return;
    this.remote.set(track.id, { track, mid: transceiver && transceiver.mid });
    const gone = () => {
      if (this.remote.delete(track.id)) this._emit('remote-removed', track);
    };
    track.addEventListener('ended', gone);
    for (const stream of event.streams || []) {
      stream.addEventListener('removetrack', (e) => { if (e.track === track) gone(); });
    }
    this._emit('remote-added', track);
  }

  /** After a negotiation: drop remote tracks whose transceiver no longer receives. */
  _pruneRemote() {
    if (!this.pc) return;
    for (const t of this.pc.getTransceivers()) {
      const track = t.receiver && t.receiver.track;
      if (!track || !this.remote.has(track.id)) continue;
      const dir = t.currentDirection;
      if (t.stopped || dir === 'inactive' || dir === 'sendonly') {
        this.remote.delete(track.id);
        this._emit('remote-removed', track);
      }
    }
  }

  _onConnectionState() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    switch (pc.connectionState) {
      case 'connected':
        this._restarts = 0;
        this._setState('connected');
        break;
      case 'disconnected':
        this._setState('reconnecting');
        break;
      case 'failed':
        if (this._restarts < MAX_RESTARTS) {
          this._restarts += 1;
          this._setState('reconnecting');
          this._enqueue(() => this._offer({ iceRestart: true })).catch(() => {});
        } else {
          this._fail(new ShopcallError('media_failed', 'the media connection failed'));
        }
        break;
      default:
        break;
    }
  }

  _fail(err) {
    console.warn('shopcall media: call media failed:', err && (err.code || err.name), err && err.message);
    this._setState('failed');
    this._emit('error', err);
  }

  setMuted(muted) {
    this.muted = !!muted;
    for (const t of this.localStream ? this.localStream.getAudioTracks() : []) t.enabled = !this.muted;
    this._emit('controls', this);
  }

  /** Camera off sends black frames (track disabled): no renegotiation, instant back on. */
  setCameraOff(off) {
    const tracks = this.localStream ? this.localStream.getVideoTracks() : [];
    if (!tracks.length) return;
    this.cameraOff = !!off;
    for (const t of tracks) t.enabled = !this.cameraOff;
    this._emit('controls', this);
  }

  get hasMicrophone() {
    return !!(this.localStream && this.localStream.getAudioTracks().length);
  }

  get hasCamera() {
    return !!(this.localStream && this.localStream.getVideoTracks().length);
  }

  /** A summary of what is received: bitrate (kbit/s since the last call), loss, frames. */
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const now = performance.now();
    const out = { bytes: 0, packetsReceived: 0, packetsLost: 0, framesDecoded: 0,
      framesPerSecond: null, width: null, height: null, rttMs: null, kbps: null };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out.bytes += s.bytesReceived || 0;
        out.packetsReceived += s.packetsReceived || 0;
        out.packetsLost += Math.max(0, s.packetsLost || 0);
        if (s.kind === 'video') {
          out.framesDecoded += s.framesDecoded || 0;
          if (s.framesPerSecond != null) out.framesPerSecond = s.framesPerSecond;
          if (s.frameWidth) {
            out.width = s.frameWidth;
            out.height = s.frameHeight;
          }
        }
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded'
          && s.currentRoundTripTime != null) {
        out.rttMs = Math.round(s.currentRoundTripTime * 1000);
      }
    });
    const last = this._lastStats;
    if (last && now > last.at) {
      out.kbps = Math.max(0, ((out.bytes - last.bytes) * 8) / (now - last.at));
    }
    this._lastStats = { at: now, bytes: out.bytes };
    return out;
  }

  _stopLocal() {
    for (const t of this.localStream ? this.localStream.getTracks() : []) t.stop();
  }

  /** Release devices and the connection (the call itself is ended with call.end). */
  close() {
    if (this.closed) return;
    this.closed = true;
    this._stopLocal();
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        /* already closed */
      }
    }
    for (const { track } of this.remote.values()) this._emit('remote-removed', track);
    this.remote.clear();
    this._setState('closed');
  }
}

const MEDIA_ICONS = {
  mic: ['M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  micOff: ['M9 9v3a3 3 0 0 0 5.1 2.1', 'M15 9.3V6a3 3 0 0 0-5.7-1.3', 'M5 11a7 7 0 0 0 11.9 5',
    'M19 11a7 7 0 0 1-.6 2.8', 'M12 18v3', 'M3 3l18 18'],
  cam: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  camOff: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3', 'M2 3l20 18'],
  hangup: ['M3 14c5-5 13-5 18 0l-2 3-4-1v-3a11 11 0 0 0-6 0v3l-4 1z'],
  user: ['M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M4 21a8 8 0 0 1 16 0'],
};

const STATE_TEXT = {
  starting: 'Starting camera…', connecting: 'Connecting…', reconnecting: 'Reconnecting…',
  failed: 'The connection failed.',
};

/**
 * The call's on-screen part: remote videos (one tile per remote video track), remote audio,
 * self view, a notice banner, the connection state and the controls.
 *
 * @param {CallMedia} media
 * @param {object} o
 * @param {string} o.remoteLabel  name shown on the remote tile ("Camille", "Shopper")
 * @param {() => void} o.onHangUp
 */
export class CallStage {
  constructor(media, { remoteLabel = 'Remote', onHangUp }) {
    this.media = media;
    this.remoteLabel = remoteLabel;
    this.tiles = new Map(); // track id -> element
    this.remoteWrap = h('div', { class: 'stage-remote' });
    this.placeholder = h('div', { class: 'stage-wait', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'stage-wait-text', text: 'Connecting…' }));
    this.remoteWrap.append(this.placeholder);
    this.selfVideo = h('video', { class: 'self-video', autoplay: true, playsInline: true,
      muted: true, 'aria-label': 'Your camera' });
    this.selfVideo.muted = true;
    this.selfOff = h('div', { class: 'self-off', hidden: true }, icon(MEDIA_ICONS.camOff, { size: 18 }));
    this.selfView = h('div', { class: 'stage-self', hidden: true }, this.selfVideo, this.selfOff);
    this.notice = h('div', { class: 'stage-notice', role: 'status', hidden: true });
    this.audioWrap = h('div', { class: 'stage-audio', hidden: true });
    this.muteBtn = h('button', { class: 'media-btn', type: 'button', 'aria-pressed': 'false',
      onclick: () => media.setMuted(!media.muted) });
    this.camBtn = h('button', { class: 'media-btn', type: 'button', 'aria-pressed': 'false',
      onclick: () => media.setCameraOff(!media.cameraOff) });
    this.hangBtn = h('button', { class: 'media-btn hangup', type: 'button', onclick: onHangUp },
      icon(MEDIA_ICONS.hangup, { size: 20 }), h('span', { text: 'Hang up' }));
    this.controls = h('div', { class: 'stage-controls', role: 'group', 'aria-label': 'Call controls' },
      this.muteBtn, media.kind === 'video' ? this.camBtn : null, this.hangBtn);
    this.video = h('div', { class: `stage-video kind-${media.kind}` },
      this.remoteWrap, this.selfView, this.notice);
    this.el = h('section', { class: 'stage', 'aria-label': `${media.kind === 'video' ? 'Video' : 'Audio'} call` },
      this.video, this.controls, this.audioWrap);
    this._offs = [
      media.on('local', (stream) => {
        this._showSelf(stream);
        this._renderControls();
      }),
      media.on('remote-added', (track) => this._addRemote(track)),
      media.on('remote-removed', (track) => this._removeRemote(track)),
      media.on('state', (state) => this._renderState(state)),
      media.on('controls', () => this._renderControls()),
    ];
    if (media.localStream) this._showSelf(media.localStream);
    for (const { track } of media.remote.values()) this._addRemote(track);
    this._renderControls();
    this._renderState(media.state);
  }

  _showSelf(stream) {
    if (!stream.getVideoTracks().length) return;
    this.selfVideo.srcObject = stream;
    this.selfView.hidden = false;
    this.selfVideo.play?.().catch(() => {});
  }

  _addRemote(track) {
    if (this.tiles.has(track.id)) return;
    const stream = new MediaStream([track]);
    let el;
    if (track.kind === 'video') {
      const video = h('video', { class: 'remote-video', autoplay: true, playsInline: true,
        muted: true, 'aria-label': `${this.remoteLabel}'s camera` });
      video.muted = true; // sound comes from the audio element
      video.srcObject = stream;
      el = h('div', { class: 'remote-tile', dataset: { trackId: track.id } }, video,
        h('span', { class: 'remote-name', text: this.remoteLabel }),
        h('div', { class: 'remote-off', hidden: true }, icon(MEDIA_ICONS.user, { size: 40 }),
          h('span', { text: 'Camera paused' })));
      const off = el.querySelector('.remote-off');
      track.addEventListener('mute', () => { off.hidden = false; });
      track.addEventListener('unmute', () => { off.hidden = true; });
      this.remoteWrap.append(el);
      video.play?.().catch(() => {});
    } else {
      el = h('audio', { class: 'remote-audio', autoplay: true, dataset: { trackId: track.id } });
      el.srcObject = stream;
      this.audioWrap.append(el);
      el.play?.().catch(() => {});
    }
    this.tiles.set(track.id, el);
    this._layout();
  }

  _removeRemote(track) {
    const el = this.tiles.get(track.id);
    if (!el) return;
    this.tiles.delete(track.id);
    const media = el.querySelector ? el.querySelector('video') || el : el;
    media.srcObject = null;
    el.remove();
    this._layout();
  }

  _layout() {
    const videos = this.remoteWrap.querySelectorAll('.remote-tile').length;
    this.remoteWrap.dataset.count = String(videos);
    this.placeholder.hidden = videos > 0;
  }

  _renderState(state) {
    const text = this.placeholder.querySelector('.stage-wait-text');
    if (state === 'connected') {
      text.textContent = this.media.kind === 'video'
        ? `Waiting for ${this.remoteLabel}'s camera…` : `Connected with ${this.remoteLabel}`;
    } else {
      text.textContent = STATE_TEXT[state] || 'Connecting…';
    }
    this.placeholder.querySelector('.spinner').hidden = ['connected', 'failed', 'closed'].includes(state);
    this.el.dataset.state = state;
    this._layout();
  }

  _renderControls() {
    const m = this.media;
    this.muteBtn.replaceChildren(icon(m.muted ? MEDIA_ICONS.micOff : MEDIA_ICONS.mic, { size: 20 }),
      h('span', { text: m.muted ? 'Unmute' : 'Mute' }));
    this.muteBtn.setAttribute('aria-pressed', String(m.muted));
    this.muteBtn.classList.toggle('is-on', m.muted);
    this.muteBtn.disabled = !m.hasMicrophone;
    this.camBtn.replaceChildren(icon(m.cameraOff ? MEDIA_ICONS.camOff : MEDIA_ICONS.cam, { size: 20 }),
      h('span', { text: m.cameraOff ? 'Start camera' : 'Stop camera' }));
    this.camBtn.setAttribute('aria-pressed', String(m.cameraOff));
    this.camBtn.classList.toggle('is-on', m.cameraOff);
    this.camBtn.disabled = !m.hasCamera;
    this.selfOff.hidden = !m.cameraOff;
  }

  /** Show (or with an empty text, hide) a banner over the video, e.g. "Video paused". */
  setNotice(text) {
    this.notice.hidden = !text;
    this.notice.textContent = text || '';
  }

  destroy() {
    for (const off of this._offs) off();
    for (const el of this.tiles.values()) {
      const media = el.querySelector ? el.querySelector('video') || el : el;
      media.srcObject = null;
    }
    this.tiles.clear();
    this.selfVideo.srcObject = null;
    this.el.remove();
  }
}

/** Text for a `media.notice` event: the known codes get our wording, others the server's. */
export function noticeText(event) {
  switch (event && event.code) {
    case 'video_paused':
      return event.direction === 'sending'
        ? 'Video paused: low bandwidth on the other side (they still hear you)'
        : 'Video paused: low bandwidth';
    case 'video_resumed':
      return '';
    default:
      return (event && (event.message || event.text)) || '';
  }
}
