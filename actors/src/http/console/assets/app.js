// The nodegrid console: one page, no build step, no dependencies. Every number it shows comes
// from the public API with the signed-in user's token; live pages listen to the server's
// WebSockets (the admin feed, the pNode changes, the registry events) and reconnect with
// backoff. Server data only ever reaches the page as text (never as HTML).
'use strict';

(() => {
  // ---------------------------------------------------------------- DOM helpers

  /** An element: `h('td', {class: 'num'}, 'text', child, [more])`. */
  function h(tag, props, ...children) {
    const node = tag === 'svg' || SVG_TAGS.has(tag)
      ? document.createElementNS('http://www.w3.org/2000/svg', tag)
      : document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'on') {
        for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      } else if (key === 'text') {
        node.textContent = String(value);
      } else if (key === 'style') {
        // Through the CSSOM: the page's policy refuses style attributes.
        node.style.cssText = value;
      } else {
        node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    append(node, children);
    return node;
  }
  const SVG_TAGS = new Set(['path', 'line', 'circle', 'text', 'g', 'polyline', 'rect', 'title']);

  function append(node, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const $ = (selector, root = document) => root.querySelector(selector);
  const main = () => $('#main');

  function notice(text) {
    const box = $('#notice');
    box.textContent = text;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.textContent = ''; }, 6000);
  }

  function errorBox(error) {
    const text = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
    return h('div', {class: 'error', role: 'alert'}, text);
  }

  /** Replaces the content of `slot` with an error box for `error`. */
  function showError(slot, error) {
    slot.replaceChildren(errorBox(error));
  }

  const fmt = {
    int: (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US')),
    num: (n, digits = 1) => (n === null || n === undefined ? '—' : Number(n).toFixed(digits)),
    time: (t) => (t ? new Date(typeof t === 'number' ? t * 1000 : t).toISOString().replace('T', ' ').slice(0, 19) : '—'),
    bytes(n) {
      if (n === null || n === undefined) return '—';
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      let value = Number(n);
      while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
      return `${value.toFixed(i ? 1 : 0)} ${units[i]}`;
    },
    days: (seconds) => (seconds === null || seconds === undefined ? '—' : `${(seconds / 86400).toFixed(1)} d`),
    short: (id) => String(id).slice(0, 8),
  };

  const badge = (text, kind) => h('span', {class: `badge ${kind || String(text).toLowerCase()}`}, text);

  // ---------------------------------------------------------------- API and session

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** One HTTP call; a JSON error body becomes an `ApiError` with its `code`. */
  async function request(method, path, body, token) {
    const headers = {Accept: 'application/json'};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (error) {
      throw new ApiError(0, 'network', `the server cannot be reached (${error.message})`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!response.ok) {
      throw new ApiError(response.status, (data && data.code) || `http_${response.status}`,
        (data && data.message) || response.statusText || 'request failed');
    }
    return data;
  }

  // The session lives in this page's memory only: a reload or another tab signs in again. A
  // copied tab holding the same refresh token would spend it twice, and the server ends a
  // session whose refresh token is presented twice.
  let session = null;
  let refreshing = null;

  function saveSession(value) {
    session = value;
  }

  function sessionFrom(pair, username) {
    return {
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: Date.now() + pair.expires_in * 1000,
      userId: pair.user_id,
      role: pair.role,
      username,
    };
  }

  async function login(username, password) {
    const pair = await request('POST', '/api/auth/login', {username, password});
    return sessionFrom(pair, username);
  }

  /** A new token pair by the refresh flow; one refresh at a time. */
  function refreshSession() {
    if (!session) return Promise.reject(new ApiError(401, 'unauthenticated', 'signed out'));
    if (!refreshing) {
      const current = session;
      refreshing = request('POST', '/api/auth/refresh', {refresh_token: current.refresh})
        .then((pair) => { if (session === current) saveSession(sessionFrom(pair, current.username)); })
        .catch((error) => {
          // Refused: the session is over. Anything else (the server away, a rate limit) did not
          // spend the refresh token: the next call tries again.
          if (error.status === 401 || error.status === 403) signedOut('Your session ended; sign in again.');
          throw error;
        })
        .finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  /** The access token, refreshed first when it has less than a minute left. */
  async function freshToken() {
    if (!session) throw new ApiError(401, 'unauthenticated', 'signed out');
    if (session.expiresAt - Date.now() < 60000) await refreshSession();
    return session.access;
  }

  /** A call with the signed-in user's token, refreshed and retried once on a 401. */
  async function api(method, path, body) {
    const token = await freshToken();
    try {
      return await request(method, path, body, token);
    } catch (error) {
      if (error.status !== 401 || !session) throw error;
      await refreshSession();
      return request(method, path, body, session.access);
    }
  }

  const isAdmin = () => session && session.role === 'admin';

  // ---------------------------------------------------------------- sockets

  /** A WebSocket that reconnects with backoff (1 s doubling to 30 s) until closed. */
  class LiveSocket {
    constructor(pathFor, handlers) {
      this.pathFor = pathFor;
      this.handlers = handlers;
      this.attempts = 0;
      this.stopped = false;
      this.open();
    }

    async open() {
      if (this.stopped) return;
      let path;
      try {
        path = await this.pathFor();
      } catch (error) {
        this.retry();
        return;
      }
      // Closed while the path (a token refresh) was awaited.
      if (this.stopped) return;
      this.token = session ? session.access : null;
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const socket = new WebSocket(`${scheme}//${location.host}${path}`);
      socket.binaryType = 'arraybuffer';
      this.socket = socket;
      socket.onopen = () => {
        this.attempts = 0;
        if (this.handlers.state) this.handlers.state(true);
        if (this.handlers.open) this.handlers.open(socket);
      };
      socket.onmessage = (event) => this.handlers.message(event.data);
      socket.onclose = (event) => {
        if (this.handlers.state) this.handlers.state(false, event.code, event.reason);
        if (this.socket === socket) this.retry(event.code);
      };
    }

    async retry(code) {
      if (this.stopped) return;
      if (this.handlers.authenticated && (code === 4003 || code === 4004)) {
        // Blocked, or the session ended: no token of it will be taken again.
        signedOut(code === 4003 ? 'This account is blocked.' : 'Your session ended; sign in again.');
        return;
      }
      // Expired on the server's clock: a new token, unless one came since this socket opened.
      if (code === 4001 && session && session.access === this.token) {
        try { await refreshSession(); } catch { /* tried again at the next attempt */ }
      }
      const delay = Math.min(30000, 1000 * 2 ** this.attempts) * (0.8 + Math.random() * 0.4);
      this.attempts = Math.min(this.attempts + 1, 5);
      this.timer = setTimeout(() => this.open(), delay);
    }

    send(data) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(data);
        return true;
      }
      return false;
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.socket) this.socket.close(1000);
    }
  }

  const json = (data) => {
    try { return JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data)); } catch { return null; }
  };

  // ---------------------------------------------------------------- MessagePack (the subset JSON needs)

  const msgpack = {
    encode(value) {
      const out = [];
      const bytes = (list) => { for (const b of list) out.push(b); };
      const u16 = (n) => [(n >> 8) & 255, n & 255];
      const u32 = (n) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
      const write = (v) => {
        if (v === null || v === undefined) out.push(0xc0);
        else if (v === false) out.push(0xc2);
        else if (v === true) out.push(0xc3);
        else if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32) {
          if (v < 128) out.push(v);
          else if (v < 256) bytes([0xcc, v]);
          else if (v < 65536) bytes([0xcd, ...u16(v)]);
          else bytes([0xce, ...u32(v)]);
        } else if (typeof v === 'number' && Number.isInteger(v) && v < 0 && v >= -(2 ** 31)) {
          if (v >= -32) out.push(v & 255);
          else bytes([0xd2, ...u32(v >>> 0)]);
        } else if (typeof v === 'number') {
          const view = new DataView(new ArrayBuffer(8));
          view.setFloat64(0, v);
          bytes([0xcb, ...new Uint8Array(view.buffer)]);
        } else if (typeof v === 'string') {
          const encoded = new TextEncoder().encode(v);
          const n = encoded.length;
          if (n < 32) out.push(0xa0 | n);
          else if (n < 256) bytes([0xd9, n]);
          else if (n < 65536) bytes([0xda, ...u16(n)]);
          else bytes([0xdb, ...u32(n)]);
          bytes(encoded);
        } else if (Array.isArray(v)) {
          const n = v.length;
          if (n < 16) out.push(0x90 | n);
          else if (n < 65536) bytes([0xdc, ...u16(n)]);
          else bytes([0xdd, ...u32(n)]);
          v.forEach(write);
        } else {
          const entries = Object.entries(v);
          const n = entries.length;
          if (n < 16) out.push(0x80 | n);
          else if (n < 65536) bytes([0xde, ...u16(n)]);
          else bytes([0xdf, ...u32(n)]);
          for (const [key, item] of entries) { write(key); write(item); }
        }
      };
      write(value);
      return new Uint8Array(out);
    },

    decode(buffer) {
      const data = new Uint8Array(buffer);
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      let at = 0;
      const str = (n) => { const s = new TextDecoder().decode(data.subarray(at, at + n)); at += n; return s; };
      const arr = (n) => { const list = []; for (let i = 0; i < n; i += 1) list.push(read()); return list; };
      const map = (n) => { const o = {}; for (let i = 0; i < n; i += 1) { const k = read(); o[k] = read(); } return o; };
      const next = (size, getter) => { const v = view[getter](at); at += size; return v; };
      function read() {
        if (at >= data.length) throw new Error('truncated MessagePack');
        const b = data[at++];
        if (b < 0x80) return b;
        if (b >= 0xe0) return b - 256;
        if ((b & 0xf0) === 0x80) return map(b & 15);
        if ((b & 0xf0) === 0x90) return arr(b & 15);
        if ((b & 0xe0) === 0xa0) return str(b & 31);
        switch (b) {
          case 0xc0: return null;
          case 0xc2: return false;
          case 0xc3: return true;
          case 0xc4: { const n = data[at++]; const v = data.slice(at, at + n); at += n; return v; }
          case 0xca: return next(4, 'getFloat32');
          case 0xcb: return next(8, 'getFloat64');
          case 0xcc: return next(1, 'getUint8');
          case 0xcd: return next(2, 'getUint16');
          case 0xce: return next(4, 'getUint32');
          case 0xcf: return Number(next(8, 'getBigUint64'));
          case 0xd0: return next(1, 'getInt8');
          case 0xd1: return next(2, 'getInt16');
          case 0xd2: return next(4, 'getInt32');
          case 0xd3: return Number(next(8, 'getBigInt64'));
          case 0xd9: return str(next(1, 'getUint8'));
          case 0xda: return str(next(2, 'getUint16'));
          case 0xdb: return str(next(4, 'getUint32'));
          case 0xdc: return arr(next(2, 'getUint16'));
          case 0xdd: return arr(next(4, 'getUint32'));
          case 0xde: return map(next(2, 'getUint16'));
          case 0xdf: return map(next(4, 'getUint32'));
          default: throw new Error(`unsupported MessagePack byte 0x${b.toString(16)}`);
        }
      }
      return read();
    },
  };

  // ---------------------------------------------------------------- charts (SVG, no library)

  /** A line chart of `series` ([{name, color, points: [[x, y]]}]) with its y range labelled. */
  function lineChart(series, label) {
    const width = 600;
    const height = 140;
    const pad = 28;
    const all = series.flatMap((s) => s.points);
    const svg = h('svg', {class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label});
    if (all.length < 2) {
      svg.append(h('text', {x: pad, y: height / 2, text: 'Not enough data yet'}));
      return svg;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    if (x0 === x1) {
      svg.append(h('text', {x: pad, y: height / 2, text: 'Not enough data yet'}));
      return svg;
    }
    const y1 = Math.max(1, ...ys);
    const sx = (x) => pad + ((x - x0) / Math.max(1, x1 - x0)) * (width - pad - 8);
    const sy = (y) => height - 16 - (y / y1) * (height - 30);
    svg.append(h('line', {x1: pad, y1: sy(0), x2: width - 8, y2: sy(0), stroke: '#dde1e7'}));
    svg.append(h('text', {x: 2, y: sy(y1) + 4, text: fmt.num(y1, y1 < 10 ? 1 : 0)}));
    svg.append(h('text', {x: 2, y: sy(0), text: '0'}));
    series.forEach((s, i) => {
      if (s.points.length === 0) return;
      const points = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
      svg.append(h('polyline', {points, fill: 'none', stroke: s.color, 'stroke-width': 2}));
      svg.append(h('text', {x: pad + 4 + i * 150, y: 10, fill: s.color, text: s.name}));
    });
    return svg;
  }

  /** Horizontal bars of `entries` ([[name, value]]). */
  function bars(entries, max) {
    const top = max || Math.max(1, ...entries.map((e) => e[1]));
    return h('div', {class: 'bars'}, entries.map(([name, value]) => h('div', {class: 'row'},
      h('span', {title: name}, name),
      h('div', {'aria-hidden': 'true'}, h('div', {class: 'fill', style: `width:${Math.max(1, (value / top) * 100)}%`})),
      h('span', {class: 'num'}, fmt.num(value, Number.isInteger(value) ? 0 : 1)))));
  }

  /** The gossip graph: seeds on an inner ring, pNodes on an outer one, a line per report. */
  function topologyGraph(topology) {
    const svg = h('svg', {class: 'topology', viewBox: '0 0 600 420', role: 'img',
      'aria-label': `Topology: ${topology.stats.ip_nodes} seeds, ${topology.stats.pnodes} pNodes`});
    const seeds = topology.nodes.filter((n) => n.type === 'ip_node');
    const pnodes = topology.nodes.filter((n) => n.type === 'pnode');
    const where = new Map();
    const place = (list, radius) => list.forEach((node, i) => {
      const angle = (2 * Math.PI * i) / Math.max(1, list.length);
      where.set(node.id, [300 + radius * Math.cos(angle), 210 + radius * Math.sin(angle)]);
    });
    place(seeds, 70);
    place(pnodes, 180);
    for (const edge of topology.edges.slice(0, 4000)) {
      const a = where.get(edge.source);
      const b = where.get(edge.target);
      if (a && b) svg.append(h('line', {x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: '#c7d2fe', 'stroke-width': 0.6}));
    }
    for (const node of [...seeds, ...pnodes]) {
      const [x, y] = where.get(node.id);
      const color = node.type === 'ip_node' ? '#1d4ed8' : node.group === 'public' ? '#15803d' : '#b45309';
      svg.append(h('circle', {cx: x, cy: y, r: node.type === 'ip_node' ? 7 : 4, fill: color},
        h('title', {text: `${node.label} (${node.group})`})));
    }
    return svg;
  }

  // ---------------------------------------------------------------- the admin live feed

  /** The admin feed, shared by the pages that show it; its history feeds the overview charts. */
  const feed = {
    socket: null,
    listeners: new Set(),
    overview: null,
    connections: null,
    history: [],
    live: false,
    start() {
      if (this.socket || !isAdmin()) return;
      this.socket = new LiveSocket(async () => `/api/admin/live?token=${encodeURIComponent(await freshToken())}`, {
        authenticated: true,
        message: (data) => {
          const message = json(data);
          if (!message) return;
          if (message.type === 'overview') {
            this.overview = message;
            this.history.push([Date.parse(message.timestamp) / 1000, message.messages_in_per_sec, message.deliveries_per_sec]);
            if (this.history.length > 150) this.history.shift();
          } else if (message.type === 'connections') {
            this.connections = message;
          }
          this.listeners.forEach((listener) => listener(message));
        },
        state: (live) => { this.live = live; this.listeners.forEach((listener) => listener({type: 'state', live})); },
      });
    },
    stop() {
      if (this.socket) this.socket.close();
      this.socket = null;
      this.overview = null;
      this.connections = null;
      this.history = [];
    },
    listen(listener) {
      this.listeners.add(listener);
      return () => this.listeners.delete(listener);
    },
  };

  const liveDot = (live, what) => h('span', {class: 'muted', 'data-live': live ? 'yes' : 'no'},
    h('span', {class: `status-dot${live ? ' live' : ''}`}), live ? `${what}: live` : `${what}: reconnecting…`);

  // ---------------------------------------------------------------- pages

  function loginPage(message) {
    const error = h('div');
    const form = h('form', {class: 'panel', 'aria-label': 'Sign in'},
      h('h1', {text: 'Sign in to nodegrid'}),
      message ? h('p', {class: 'muted', text: message}) : null,
      h('label', {}, 'Username', h('input', {name: 'username', autocomplete: 'username', autofocus: true})),
      h('label', {}, 'Password', h('input', {name: 'password', type: 'password', autocomplete: 'current-password'})),
      error,
      h('button', {class: 'primary', type: 'submit', text: 'Sign in'}));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.replaceChildren();
      try {
        saveSession(await login(form.username.value.trim(), form.password.value));
        location.hash = isAdmin() ? '#/overview' : '#/pnodes';
        route();
      } catch (failure) {
        showError(error, failure);
      }
    });
    return h('div', {class: 'login'}, form);
  }

  function overviewPage() {
    const body = h('div', {id: 'overview'});
    const render = () => {
      const o = feed.overview;
      if (!o) {
        body.replaceChildren(liveDot(feed.live, 'Live feed'), h('p', {class: 'muted', text: 'Waiting for the first report…'}));
        return;
      }
      const card = (label, value, id) => h('div', {class: 'panel card', 'data-card': id},
        h('div', {class: 'label', text: label}), h('div', {class: 'value', text: value}));
      const pn = o.pnodes;
      const registry = o.registry || {};
      body.replaceChildren(
        liveDot(feed.live, 'Live feed'),
        h('div', {class: 'grid'},
          card('Instances', fmt.int(o.instances.length), 'instances'),
          card('Producers', fmt.int(o.producers), 'producers'),
          card('Consumers', fmt.int(o.consumers), 'consumers'),
          card('Messages in / s', fmt.num(o.messages_in_per_sec), 'messages'),
          card('Deliveries / s', fmt.num(o.deliveries_per_sec), 'deliveries'),
          card('pNodes online', pn ? `${fmt.int(pn.online_pnodes)} / ${fmt.int(pn.total_pnodes)}` : '—', 'pnodes'),
          card('Registry nodes', fmt.int(Object.values(registry).reduce((a, b) => a + b, 0)), 'registry')),
        h('div', {class: 'cols'},
          h('section', {class: 'panel'}, h('h2', {text: 'Message rates'}),
            lineChart([
              {name: 'messages in / s', color: '#1d4ed8', points: feed.history.map((p) => [p[0], p[1]])},
              {name: 'deliveries / s', color: '#15803d', points: feed.history.map((p) => [p[0], p[2]])},
            ], 'Messages in and deliveries per second')),
          h('section', {class: 'panel'}, h('h2', {text: 'Registry by status'}),
            Object.keys(registry).length
              ? bars(Object.entries(registry))
              : h('p', {class: 'muted', text: 'No registry nodes.'}),
            h('h2', {text: 'pNode network'}),
            pn ? h('dl', {class: 'kv'},
              h('dt', {text: 'Cycle'}), h('dd', {text: fmt.int(pn.cycle)}),
              h('dt', {text: 'Online / offline'}), h('dd', {text: `${pn.online_pnodes} / ${pn.offline_pnodes}`}),
              h('dt', {text: 'Public / private'}), h('dd', {text: `${pn.public_pnodes} / ${pn.private_pnodes}`}),
              h('dt', {text: 'Seeds answering'}), h('dd', {text: `${pn.responding_ip_nodes} / ${pn.total_ip_nodes}`}),
              h('dt', {text: 'Snapshot age'}), h('dd', {text: `${pn.snapshot_age_seconds} s`}))
              : h('p', {class: 'muted', text: 'No pNode cycle yet (polling is off unless seeds are named).'}))),
        h('section', {class: 'panel'}, h('h2', {text: 'Instances'}),
          h('div', {class: 'table-wrap'}, h('table', {},
            h('thead', {}, h('tr', {}, ['Instance', 'Reported', 'Producers', 'Consumers', 'In / s', 'Out / s']
              .map((t, i) => h('th', {class: i > 1 ? 'num' : null, text: t})))),
            h('tbody', {}, o.instances.map((i) => h('tr', {},
              h('td', {title: i.instance, text: fmt.short(i.instance)}),
              h('td', {text: fmt.time(i.reported_at)}),
              h('td', {class: 'num', text: fmt.int(i.producers)}),
              h('td', {class: 'num', text: fmt.int(i.consumers)}),
              h('td', {class: 'num', text: fmt.num(i.messages_in_per_sec)}),
              h('td', {class: 'num', text: fmt.num(i.deliveries_per_sec)}))))))));
    };
    render();
    const stop = feed.listen(render);
    return [h('h1', {text: 'Overview'}), body, stop];
  }

  // ----- streams

  function connectionsPanel() {
    const panel = h('section', {class: 'panel', id: 'connections'});
    const status = h('div');
    const table = h('div', {class: 'table-wrap'});
    const actionError = h('div');
    panel.append(h('h2', {text: 'Live connections'}), status, actionError, table);
    const act = async (label, call) => {
      actionError.replaceChildren();
      try {
        await call();
        notice(label);
      } catch (error) {
        showError(actionError, error);
      }
    };
    const blockForm = (connection) => {
      const form = h('form', {class: 'inline', 'aria-label': `Block ${connection.username}`},
        h('label', {}, `Reason for blocking ${connection.username}`, h('input', {name: 'reason', maxlength: 500})),
        h('button', {class: 'danger', type: 'submit', text: 'Block user'}),
        h('button', {type: 'button', text: 'Cancel', on: {click: () => form.remove()}}));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        act(`Blocked ${connection.username}`, async () => {
          await api('POST', `/api/admin/users/${connection.user_id}/block`, {reason: form.reason.value});
          form.remove();
        });
      });
      return form;
    };
    // Rows are kept by connection id and updated in place, so that a block form being typed
    // into survives the feed's next message.
    const rows = new Map();
    const summary = h('p', {class: 'muted'});
    const tbody = h('tbody');
    table.append(summary, h('table', {},
      h('thead', {}, h('tr', {}, ['Kind', 'User', 'Instance', 'Since', 'In', 'Out', 'Buffered', 'Actions']
        .map((t, i) => h('th', {class: i >= 4 && i <= 6 ? 'num' : null, text: t})))),
      tbody));
    const newRow = (r) => {
      const cells = {in: h('td', {class: 'num'}), out: h('td', {class: 'num'}), buffered: h('td', {class: 'num'})};
      const actions = h('td', {});
      actions.append(
        h('button', {type: 'button', text: 'Disconnect', 'aria-label': `Disconnect ${r.username}'s ${r.kind} socket`,
          on: {click: () => act(`Disconnecting ${r.username}`, () => api('DELETE', `/api/admin/connections/${r.id}`))}}),
        ' ',
        h('button', {class: 'danger', type: 'button', text: 'Block…', 'aria-label': `Block ${r.username}`,
          on: {click: () => {
            if (actions.querySelector('form')) return;
            const form = blockForm(r);
            actions.append(form);
            form.reason.focus();
          }}}));
      const tr = h('tr', {'data-connection': r.id, 'data-user': r.username},
        h('td', {}, badge(r.kind, 'ok')),
        h('td', {text: `${r.username} (#${r.user_id})`}),
        h('td', {title: r.instance, text: fmt.short(r.instance)}),
        h('td', {text: fmt.time(r.connected_at)}),
        cells.in, cells.out, cells.buffered, actions);
      return {tr, cells};
    };
    const render = () => {
      status.replaceChildren(liveDot(feed.live, 'Connections'));
      const c = feed.connections;
      if (!c) return;
      summary.textContent = `${c.producers} producers, ${c.consumers} consumers${c.truncated ? ' (list truncated)' : ''}`;
      const seen = new Set();
      for (const r of c.instances.flatMap((i) => i.connections)) {
        seen.add(r.id);
        let row = rows.get(r.id);
        if (!row) {
          row = newRow(r);
          rows.set(r.id, row);
          tbody.append(row.tr);
        }
        row.cells.in.textContent = fmt.int(r.frames_in);
        row.cells.out.textContent = fmt.int(r.frames_out);
        row.cells.buffered.textContent = `${fmt.int(r.buffered_messages)} / ${fmt.bytes(r.buffered_bytes)}`;
      }
      for (const [id, row] of rows) {
        if (!seen.has(id)) { row.tr.remove(); rows.delete(id); }
      }
    };
    render();
    return [panel, feed.listen((message) => { if (message.type !== 'overview') render(); })];
  }

  /** A tester's sign-in and socket: its own session, apart from the console's. */
  function testerLogin(kind, onOpen, onMessage) {
    const log = h('ol', {class: 'log', 'aria-label': `${kind} tester log`, 'data-log': kind});
    const state = h('span', {class: 'muted', 'data-state': kind}, h('span', {class: 'status-dot'}), 'not connected');
    const error = h('div');
    let socket = null;
    let tokens = null;
    // Set when the page is left: a sign-in still in flight then opens nothing.
    let retired = false;
    const write = (line) => {
      log.prepend(h('li', {text: `${new Date().toISOString().slice(11, 23)}  ${line}`}));
      while (log.children.length > 200) log.lastChild.remove();
    };
    const form = h('form', {class: 'inline', 'aria-label': `${kind} tester sign-in`},
      h('label', {}, `${kind} username`, h('input', {name: 'username', autocomplete: 'off'})),
      h('label', {}, 'Password', h('input', {name: 'password', type: 'password', autocomplete: 'off'})),
      h('button', {class: 'primary', type: 'submit', text: 'Connect'}),
      h('button', {type: 'button', name: 'disconnect', text: 'Disconnect', disabled: true}));
    const disconnect = async () => {
      if (socket) { socket.onclose = null; socket.close(1000); }
      socket = null;
      state.replaceChildren(h('span', {class: 'status-dot'}), 'not connected');
      form.disconnect.disabled = true;
      if (tokens) {
        request('POST', '/api/auth/logout', undefined, tokens.access_token).catch(() => {});
        tokens = null;
      }
    };
    form.disconnect.addEventListener('click', disconnect);
    const connect = (query = '') => {
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const path = kind === 'Producer' ? '/producer' : '/consumer';
      const ws = new WebSocket(`${scheme}//${location.host}${path}?token=${encodeURIComponent(tokens.access_token)}${query}`);
      ws.binaryType = 'arraybuffer';
      socket = ws;
      ws.onopen = () => {
        state.replaceChildren(h('span', {class: 'status-dot live'}), `connected as ${form.username.value}`);
        form.disconnect.disabled = false;
        write('connected');
        onOpen(ws);
      };
      ws.onmessage = (event) => {
        const binary = typeof event.data !== 'string';
        let frame = null;
        try { frame = binary ? msgpack.decode(event.data) : JSON.parse(event.data); } catch (e) { write(`undecodable frame: ${e.message}`); return; }
        onMessage(frame, binary, write);
      };
      ws.onclose = (event) => {
        write(`closed ${event.code} ${event.reason}`);
        state.replaceChildren(h('span', {class: 'status-dot'}), `closed (${event.code} ${event.reason || ''})`);
        form.disconnect.disabled = true;
      };
    };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.replaceChildren();
      await disconnect();
      try {
        tokens = await request('POST', '/api/auth/login', {username: form.username.value.trim(), password: form.password.value});
        if (retired) {
          await disconnect();
          return;
        }
        connect(kind === 'Consumer' ? '&events=subscriptions' : '');
      } catch (failure) {
        showError(error, failure);
      }
    });
    return {
      form, log, state, error, write,
      disconnect: () => { retired = true; return disconnect(); },
      send(frame, binary) {
        if (!socket || socket.readyState !== WebSocket.OPEN) { write('not connected'); return false; }
        socket.send(binary ? msgpack.encode(frame) : JSON.stringify(frame));
        write(`→ ${JSON.stringify(frame)}${binary ? ' (MessagePack)' : ''}`);
        return true;
      },
      reconnect(query) { if (socket) { socket.onclose = null; socket.close(1000); } connect(query); },
      connected: () => Boolean(socket && socket.readyState === WebSocket.OPEN),
    };
  }

  function producerTester() {
    const tester = testerLogin('Producer', () => {}, (frame, binary, write) => {
      if (frame.type === 'ack') write(`← ack seq ${frame.seq}, ${frame.subscriberCount} subscribers${binary ? ' (MessagePack)' : ''}`);
      else write(`← ${JSON.stringify(frame)}`);
    });
    const error = h('div');
    const sendForm = h('form', {class: 'inline', 'aria-label': 'Send a frame'},
      h('label', {style: 'flex:1 1 100%'}, 'Payload (JSON)', h('textarea', {name: 'payload', text: '{"temperature": 21.5, "humidity": 40}'})),
      h('label', {}, 'Message id (optional)', h('input', {name: 'message_id', autocomplete: 'off'})),
      h('label', {}, 'Encoding', h('select', {name: 'encoding'},
        h('option', {value: 'json', text: 'JSON (text)'}), h('option', {value: 'msgpack', text: 'MessagePack (binary)'}))),
      h('button', {class: 'primary', type: 'submit', text: 'Send'}));
    sendForm.addEventListener('submit', (event) => {
      event.preventDefault();
      error.replaceChildren();
      let payload;
      try { payload = JSON.parse(sendForm.payload.value); } catch (e) {
        showError(error, new ApiError(0, 'bad_payload', `the payload is not JSON: ${e.message}`));
        return;
      }
      const frame = {type: 'data', payload};
      if (sendForm.message_id.value.trim()) frame.id = sendForm.message_id.value.trim();
      tester.send(frame, sendForm.encoding.value === 'msgpack');
    });
    return [h('section', {class: 'panel', id: 'producer-tester'},
      h('h2', {text: 'Producer tester'}),
      h('p', {class: 'muted', text: 'Sign in as a producer, send frames, and see each ack with its seq.'}),
      tester.form, tester.error, tester.state, sendForm, error, tester.log), tester.disconnect];
  }

  function consumerTester() {
    // The last seq (and its epoch) seen of each producer: where a reconnect resumes.
    const last = new Map();
    const resumeFrame = (producer, since) => {
      const frame = {type: 'resume', producer_id: producer, since_seq: since};
      const seen = last.get(producer);
      if (seen && seen.epoch) frame.epoch = seen.epoch;
      return frame;
    };
    const tester = testerLogin('Consumer', () => {
      for (const [producer, seen] of last) tester.send(resumeFrame(producer, seen.seq));
    }, (frame, binary, write) => {
      if (frame.type === 'data') {
        last.set(frame.producer_id, {seq: frame.seq, epoch: frame.epoch});
        write(`← data producer ${frame.producer_id} seq ${frame.seq}: ${JSON.stringify(frame.payload)}`);
      } else {
        write(`← ${JSON.stringify(frame)}`);
      }
    });
    const form = h('form', {class: 'inline', 'aria-label': 'Subscriptions'},
      h('label', {}, 'Producer id', h('input', {name: 'producer', inputmode: 'numeric', autocomplete: 'off'})),
      h('button', {type: 'submit', class: 'primary', text: 'Subscribe'}),
      h('button', {type: 'button', name: 'unsubscribe', text: 'Unsubscribe'}),
      h('label', {}, 'Resume after seq', h('input', {name: 'since', inputmode: 'numeric', autocomplete: 'off'})),
      h('button', {type: 'button', name: 'resume', text: 'Resume'}),
      h('button', {type: 'button', name: 'reconnect', text: 'Reconnect and resume'}));
    const producer = () => Number(form.producer.value);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      tester.send({type: 'subscribe', producer_id: producer()});
    });
    form.unsubscribe.addEventListener('click', () => tester.send({type: 'unsubscribe', producer_id: producer()}));
    form.resume.addEventListener('click', () => tester.send(resumeFrame(producer(), Number(form.since.value || 0))));
    form.reconnect.addEventListener('click', () => tester.reconnect('&events=subscriptions'));
    return [h('section', {class: 'panel', id: 'consumer-tester'},
      h('h2', {text: 'Consumer tester'}),
      h('p', {class: 'muted', text: 'Sign in as a consumer, subscribe to a producer, and watch its deliveries with their seq; a reconnect resumes after the last seq seen.'}),
      tester.form, tester.error, tester.state, form, tester.log), tester.disconnect];
  }

  function streamsPage() {
    const parts = [h('h1', {text: 'Streams'})];
    const cleanups = [];
    if (isAdmin()) {
      const [panel, stop] = connectionsPanel();
      parts.push(panel);
      cleanups.push(stop);
    }
    const [producer, stopProducer] = producerTester();
    const [consumer, stopConsumer] = consumerTester();
    parts.push(h('div', {class: 'cols'}, producer, consumer));
    cleanups.push(stopProducer, stopConsumer);
    return [...parts, () => cleanups.forEach((stop) => stop())];
  }

  // ----- users and audit

  function usersPage() {
    const list = h('div', {class: 'table-wrap'});
    const error = h('div');
    let page = 1;
    const filters = h('form', {class: 'filters', 'aria-label': 'Filter users'},
      h('label', {}, 'Search', h('input', {name: 'search', type: 'search', autocomplete: 'off'})),
      h('label', {}, 'Role', h('select', {name: 'role'}, ['', 'admin', 'producer', 'consumer'].map((r) => h('option', {value: r, text: r || 'any'})))),
      h('label', {}, 'Blocked', h('select', {name: 'blocked'}, [['', 'any'], ['true', 'blocked'], ['false', 'not blocked']].map(([v, t]) => h('option', {value: v, text: t})))),
      h('button', {class: 'primary', type: 'submit', text: 'Apply'}));
    const load = async () => {
      error.replaceChildren();
      const query = new URLSearchParams({page, per_page: 25});
      for (const name of ['search', 'role', 'blocked']) if (filters[name].value) query.set(name, filters[name].value);
      let result;
      try { result = await api('GET', `/api/admin/users?${query}`); } catch (failure) { showError(error, failure); return; }
      list.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['Id', 'Username', 'Role', 'Created', 'State', 'Actions'].map((t) => h('th', {text: t})))),
        h('tbody', {}, result.items.map((u) => h('tr', {'data-user': u.username},
          h('td', {text: u.user_id}),
          h('td', {text: u.username}),
          h('td', {text: u.role}),
          h('td', {text: fmt.time(u.created_at)}),
          h('td', {}, u.blocked ? badge('blocked') : badge('active', 'ok'), u.blocked_reason ? ` ${u.blocked_reason}` : ''),
          h('td', {}, u.blocked
            ? h('button', {type: 'button', text: 'Unblock', on: {click: () => change(() => api('POST', `/api/admin/users/${u.user_id}/unblock`), `Unblocked ${u.username}`)}})
            : blockButton(u)))))),
      h('div', {class: 'pager'},
        h('button', {type: 'button', text: 'Previous', disabled: page <= 1, on: {click: () => { page -= 1; load(); }}}),
        h('span', {class: 'muted', text: `page ${result.page} of ${Math.max(1, Math.ceil(result.total / result.per_page))} (${result.total} users)`}),
        h('button', {type: 'button', text: 'Next', disabled: page * result.per_page >= result.total, on: {click: () => { page += 1; load(); }}})));
    };
    const change = async (call, done) => {
      error.replaceChildren();
      try { await call(); notice(done); await load(); } catch (failure) { showError(error, failure); }
    };
    const blockButton = (u) => {
      const cell = h('span');
      cell.append(h('button', {class: 'danger', type: 'button', text: 'Block…', 'aria-label': `Block ${u.username}`, on: {click: () => {
        if (cell.querySelector('form')) return;
        const form = h('form', {class: 'inline', 'aria-label': `Block ${u.username}`},
          h('label', {}, 'Reason', h('input', {name: 'reason', maxlength: 500})),
          h('button', {class: 'danger', type: 'submit', text: 'Block user'}));
        form.addEventListener('submit', (event) => {
          event.preventDefault();
          change(() => api('POST', `/api/admin/users/${u.user_id}/block`, {reason: form.reason.value}), `Blocked ${u.username}`);
        });
        cell.append(form);
        form.reason.focus();
      }}}));
      return cell;
    };
    filters.addEventListener('submit', (event) => { event.preventDefault(); page = 1; load(); });
    load();
    return [h('h1', {text: 'Users & audit'}),
      h('section', {class: 'panel', id: 'users'}, h('h2', {text: 'Users'}), filters, error, list),
      auditPanel()];
  }

  function auditPanel() {
    const list = h('div', {class: 'table-wrap'});
    const error = h('div');
    let page = 1;
    const filters = h('form', {class: 'filters', 'aria-label': 'Filter the audit log'},
      h('label', {}, 'Actor', h('input', {name: 'actor', autocomplete: 'off'})),
      h('label', {}, 'Action', h('input', {name: 'action', placeholder: 'user.block', autocomplete: 'off'})),
      h('label', {}, 'Since', h('input', {name: 'since', type: 'datetime-local'})),
      h('label', {}, 'Until', h('input', {name: 'until', type: 'datetime-local'})),
      h('button', {class: 'primary', type: 'submit', text: 'Apply'}));
    const load = async () => {
      error.replaceChildren();
      const query = new URLSearchParams({page, per_page: 25});
      for (const name of ['actor', 'action']) if (filters[name].value.trim()) query.set(name, filters[name].value.trim());
      for (const name of ['since', 'until']) if (filters[name].value) query.set(name, new Date(filters[name].value).toISOString());
      let result;
      try { result = await api('GET', `/api/admin/audit?${query}`); } catch (failure) { showError(error, failure); return; }
      list.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['When', 'Actor', 'Action', 'Target', 'From', 'Details'].map((t) => h('th', {text: t})))),
        h('tbody', {}, result.items.map((e) => h('tr', {},
          h('td', {text: fmt.time(e.at)}),
          h('td', {text: e.actor || '—'}),
          h('td', {text: e.action}),
          h('td', {text: e.target || '—'}),
          h('td', {text: e.source_ip || '—'}),
          h('td', {class: 'muted', text: JSON.stringify(e.details || {}).slice(0, 120)}))))),
      h('div', {class: 'pager'},
        h('button', {type: 'button', text: 'Newer', disabled: page <= 1, on: {click: () => { page -= 1; load(); }}}),
        h('span', {class: 'muted', text: `${result.total} entries`}),
        h('button', {type: 'button', text: 'Older', disabled: page * result.per_page >= result.total, on: {click: () => { page += 1; load(); }}})));
    };
    filters.addEventListener('submit', (event) => { event.preventDefault(); page = 1; load(); });
    load();
    return h('section', {class: 'panel', id: 'audit'}, h('h2', {text: 'Audit log'}), filters, error, list);
  }

  // ----- pNodes

  const PNODE_API = '/api/xandeum';

  /** Storage used, as a share of what the node committed (the seed's figure when it gave one). */
  const usedPercent = (n) => {
    if (n.storage_usage_percent != null) return n.storage_usage_percent;
    if (n.storage_committed && n.storage_used != null) return (100 * n.storage_used) / n.storage_committed;
    return null;
  };

  function pnodesPage() {
    const selected = new Set();
    let skip = 0;
    const summary = h('div', {class: 'grid', id: 'pnode-summary'});
    const health = h('div');
    const table = h('div', {class: 'table-wrap', id: 'pnode-table'});
    const error = h('div');
    const changes = h('ol', {class: 'log', 'aria-label': 'Changes of the last cycles'});
    const charts = h('div', {class: 'cols'});
    const state = h('div', {}, liveDot(false, 'pNode changes'));
    const compare = h('button', {type: 'button', text: 'Compare selected', disabled: true,
      on: {click: () => { location.hash = `#/compare/${[...selected].map(encodeURIComponent).join(',')}`; }}});
    const filters = h('form', {class: 'filters', 'aria-label': 'Filter pNodes'},
      h('label', {}, 'Status', h('select', {name: 'status'}, ['online', 'offline', 'all'].map((s) => h('option', {value: s, text: s})))),
      h('label', {}, 'Version', h('input', {name: 'version', size: 8, autocomplete: 'off'})),
      h('label', {}, 'Public', h('select', {name: 'public'}, [['', 'any'], ['true', 'public'], ['false', 'private']].map(([v, t]) => h('option', {value: v, text: t})))),
      h('label', {}, 'Min score', h('input', {name: 'min_score', size: 5, inputmode: 'decimal', autocomplete: 'off'})),
      h('label', {}, 'Search', h('input', {name: 'search', type: 'search', placeholder: 'address or pubkey', autocomplete: 'off'})),
      h('label', {}, 'Sort by', h('select', {name: 'sort_by'}, ['score', 'uptime', 'last_seen', 'storage_used', 'storage_usage_percent', 'first_seen'].map((s) => h('option', {value: s, text: s})))),
      h('label', {}, 'Order', h('select', {name: 'sort_order'}, h('option', {value: 'desc', text: 'desc'}), h('option', {value: 'asc', text: 'asc'}))),
      h('label', {}, 'Per page', h('select', {name: 'limit'}, ['25', '50', '100'].map((s) => h('option', {value: s, text: s})))),
      h('button', {class: 'primary', type: 'submit', text: 'Apply'}),
      compare);
    filters.status.value = 'all';

    const query = () => {
      const q = new URLSearchParams({limit: filters.limit.value, skip});
      for (const name of ['status', 'version', 'public', 'min_score', 'search', 'sort_by', 'sort_order']) {
        if (filters[name].value.trim()) q.set(name, filters[name].value.trim());
      }
      return q;
    };
    const load = async () => {
      let result;
      try { result = await request('GET', `${PNODE_API}/pnodes?${query()}`); } catch (failure) {
        showError(error, failure);
        return;
      }
      error.replaceChildren();
      renderSummary(result.summary);
      const p = result.pagination;
      table.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['', 'Address', 'Status', 'Version', 'Score', 'Tier', 'Uptime', 'Storage used', 'Peers', 'Last seen']
          .map((t, i) => h('th', {class: i >= 4 && i !== 5 && i !== 9 ? 'num' : null, text: t})))),
        h('tbody', {}, result.pnodes.map((n) => h('tr', {'data-address': n.address, 'data-online': String(n.is_online)},
          h('td', {}, h('input', {type: 'checkbox', 'aria-label': `Select ${n.address} to compare`, checked: selected.has(n.address),
            on: {change: (event) => {
              if (event.target.checked) selected.add(n.address); else selected.delete(n.address);
              if (selected.size > 5) { selected.delete(n.address); event.target.checked = false; notice('Compare takes up to 5 nodes.'); }
              compare.disabled = selected.size < 2;
            }}})),
          h('td', {}, h('a', {href: `#/pnodes/${encodeURIComponent(n.address)}`, text: n.address})),
          h('td', {}, badge(n.is_online ? 'online' : 'offline')),
          h('td', {text: n.version || '—'}),
          h('td', {class: 'num', text: fmt.num(n.score)}),
          h('td', {}, badge(n.tier)),
          h('td', {class: 'num', text: fmt.days(n.uptime)}),
          h('td', {class: 'num', text: usedPercent(n) === null ? '—' : `${fmt.num(usedPercent(n))} %`}),
          h('td', {class: 'num', text: n.peer_count}),
          h('td', {text: fmt.time(n.last_seen)}))))),
      h('div', {class: 'pager'},
        h('button', {type: 'button', text: 'Previous', disabled: skip === 0, on: {click: () => { skip = Math.max(0, skip - p.limit); load(); }}}),
        h('span', {class: 'muted', text: `${p.total ? skip + 1 : 0}–${skip + p.returned} of ${p.total}`}),
        h('button', {type: 'button', text: 'Next', disabled: !p.has_more, on: {click: () => { skip += p.limit; load(); }}})));
      const versions = Object.entries(result.network_stats.version_distribution || {}).sort((a, b) => b[1] - a[1]);
      charts.querySelector('[data-chart="versions"]').replaceChildren(
        h('h2', {text: 'Version distribution (online)'}),
        versions.length ? bars(versions) : h('p', {class: 'muted', text: 'No online nodes.'}));
    };
    const renderSummary = (s) => {
      const card = (label, value) => h('div', {class: 'panel card'}, h('div', {class: 'label', text: label}), h('div', {class: 'value', text: value}));
      summary.replaceChildren(
        card('Total', fmt.int(s.total_pnodes)), card('Online', fmt.int(s.online_pnodes)),
        card('Offline', fmt.int(s.offline_pnodes)), card('Public', fmt.int(s.public_pnodes)),
        card('Seeds answering', `${s.responding_ip_nodes} / ${s.total_ip_nodes}`), card('Cycle', fmt.int(s.cycle)));
    };
    const loadCharts = async () => {
      try {
        const [healthAnswer, history, topology] = await Promise.all([
          request('GET', `${PNODE_API}/network/health`),
          request('GET', `${PNODE_API}/network/history?hours=24`),
          request('GET', `${PNODE_API}/network/topology`),
        ]);
        const hl = healthAnswer.health;
        health.replaceChildren(h('p', {}, 'Network health ', badge(`${fmt.num(hl.health_score)} · ${hl.status}`, hl.status)),
          bars(Object.entries(hl.factors), 100));
        const rows = history.history || [];
        charts.querySelector('[data-chart="history"]').replaceChildren(h('h2', {text: 'Nodes online (24 h)'}),
          lineChart([
            {name: 'total', color: '#64748b', points: rows.map((r) => [r.timestamp, r.total_pnodes])},
            {name: 'online', color: '#15803d', points: rows.map((r) => [r.timestamp, r.online_pnodes])},
          ], 'pNodes online over the last day'));
        charts.querySelector('[data-chart="topology"]').replaceChildren(h('h2', {text: 'Topology'}), topologyGraph(topology.topology || topology));
      } catch (failure) {
        showError(health, failure);
      }
    };
    charts.append(h('section', {class: 'panel', 'data-chart': 'versions'}),
      h('section', {class: 'panel', 'data-chart': 'history'}),
      h('section', {class: 'panel', 'data-chart': 'topology', style: 'grid-column: 1 / -1'}));
    filters.addEventListener('submit', (event) => { event.preventDefault(); skip = 0; load(); });

    let reload = null;
    const live = new LiveSocket(async () => '/api/xandeum/ws/pnodes', {
      message: (data) => {
        const message = json(data);
        if (!message) return;
        renderSummary(message.summary);
        if (message.type === 'cycle' && message.changes.length) {
          for (const change of message.changes) {
            changes.prepend(h('li', {text: `cycle ${message.summary.cycle}: ${change.node.address} ${change.change.replace(/_/g, ' ')}`}));
          }
          while (changes.children.length > 100) changes.lastChild.remove();
          clearTimeout(reload);
          reload = setTimeout(() => { load(); loadCharts(); }, 250);
        }
      },
      state: (isLive) => state.replaceChildren(liveDot(isLive, 'pNode changes')),
    });
    load();
    loadCharts();
    return [h('h1', {text: 'pNodes'}), state, summary,
      h('section', {class: 'panel'}, h('h2', {text: 'Nodes'}), filters, error, table),
      h('div', {class: 'cols'},
        h('section', {class: 'panel'}, h('h2', {text: 'Network health'}), health),
        h('section', {class: 'panel'}, h('h2', {text: 'Changes'}), changes)),
      charts, () => { clearTimeout(reload); live.close(); }];
  }

  async function pnodeDetail(address) {
    const body = h('div');
    const title = h('h1', {text: `pNode ${address}`});
    try {
      const [list, alerts, history] = await Promise.all([
        request('GET', `${PNODE_API}/pnodes?status=all&limit=10&search=${encodeURIComponent(address)}`),
        request('GET', `${PNODE_API}/pnodes/${encodeURIComponent(address)}/alerts`).catch(() => null),
        request('GET', `${PNODE_API}/node/${encodeURIComponent(address)}/history?days=7`).catch(() => ({history: []})),
      ]);
      const node = list.pnodes.find((n) => n.address === address);
      if (!node) throw new ApiError(404, 'not_found', `no pNode ${address}`);
      const t = node.scores.trust;
      const c = node.scores.capacity;
      const rows = history.history || [];
      body.append(
        h('p', {}, h('a', {href: '#/pnodes', text: '← all pNodes'})),
        h('div', {class: 'cols'},
          h('section', {class: 'panel'}, h('h2', {text: 'Node'}), h('dl', {class: 'kv'},
            h('dt', {text: 'Status'}), h('dd', {}, badge(node.is_online ? 'online' : 'offline')),
            h('dt', {text: 'Pubkey'}), h('dd', {text: node.pubkey || '—'}),
            h('dt', {text: 'Version'}), h('dd', {text: node.version || '—'}),
            h('dt', {text: 'Uptime'}), h('dd', {text: fmt.days(node.uptime)}),
            h('dt', {text: 'Storage'}), h('dd', {text: `${fmt.bytes(node.storage_used)} of ${fmt.bytes(node.storage_committed)}`}),
            h('dt', {text: 'Seen by'}), h('dd', {text: node.peer_sources.join(', ') || '—'}),
            h('dt', {text: 'First / last seen'}), h('dd', {text: `${fmt.time(node.first_seen)} / ${fmt.time(node.last_seen)}`}),
            h('dt', {text: 'Consistency'}), h('dd', {text: fmt.num(node.consistency_score, 2)}))),
          h('section', {class: 'panel', id: 'score-breakdown'}, h('h2', {}, `Score ${fmt.num(node.score)} `, badge(node.tier)),
            h('p', {class: 'muted', text: `trust ${fmt.num(t.score)} (60 %) · capacity ${fmt.num(c.score)} (40 %)`}),
            bars([...Object.entries(t.breakdown).map(([k, v]) => [`trust: ${k}`, v]),
              ...Object.entries(c.breakdown).map(([k, v]) => [`capacity: ${k}`, v])], 40))),
        h('section', {class: 'panel'}, h('h2', {text: 'Alerts'}),
          alerts && alerts.alerts.length
            ? h('ul', {}, alerts.alerts.map((a) => h('li', {}, badge(a.severity), ` ${a.message} — ${a.recommendation}`)))
            : h('p', {class: 'muted', text: 'No alerts.'})),
        h('div', {class: 'cols'},
          h('section', {class: 'panel'}, h('h2', {text: 'Scores (7 days)'}), lineChart([
            {name: 'score', color: '#1d4ed8', points: rows.map((r) => [r.timestamp, r.score])},
            {name: 'trust', color: '#15803d', points: rows.map((r) => [r.timestamp, r.trust_score])},
            {name: 'capacity', color: '#b45309', points: rows.map((r) => [r.timestamp, r.capacity_score])},
          ], 'Scores over seven days')),
          h('section', {class: 'panel'}, h('h2', {text: 'Storage used % (7 days)'}), lineChart([
            {name: 'used %', color: '#7c3aed', points: rows.filter((r) => r.storage_usage_percent !== null).map((r) => [r.timestamp, r.storage_usage_percent])},
          ], 'Storage use over seven days'))));
    } catch (failure) {
      body.append(errorBox(failure));
    }
    return [title, body];
  }

  async function comparePage(addresses) {
    const body = h('div');
    try {
      const result = await request('GET', `${PNODE_API}/pnodes/compare?addresses=${addresses.map(encodeURIComponent).join(',')}`);
      const nodes = result.comparison;
      const row = (label, value) => h('tr', {}, h('th', {text: label}), nodes.map((n) => h('td', {text: value(n)})));
      body.append(
        h('p', {}, h('a', {href: '#/pnodes', text: '← all pNodes'})),
        h('section', {class: 'panel'}, h('div', {class: 'table-wrap'}, h('table', {},
          h('thead', {}, h('tr', {}, h('th', {text: ''}), nodes.map((n) => h('th', {text: n.address})))),
          h('tbody', {},
            row('Status', (n) => (n.is_online ? 'online' : 'offline')),
            row('Score', (n) => fmt.num(n.score)),
            row('Tier', (n) => n.tier),
            row('Trust', (n) => fmt.num(n.scores.trust.score)),
            row('Capacity', (n) => fmt.num(n.scores.capacity.score)),
            row('Uptime', (n) => fmt.days(n.uptime)),
            row('Storage committed', (n) => fmt.bytes(n.storage_committed)),
            row('Storage used %', (n) => fmt.num(n.storage_usage_percent)),
            row('Peers', (n) => n.peer_count),
            row('Version', (n) => n.version || '—'))))),
        h('section', {class: 'panel'}, h('h2', {text: 'Recommendation'}),
          h('p', {text: result.recommendation.recommended_node ? `${result.recommendation.recommended_node}: ${result.recommendation.reason || ''}` : 'No recommendation.'}),
          h('ul', {}, result.recommendation.considerations.map((c) => h('li', {text: c})))));
    } catch (failure) {
      body.append(errorBox(failure));
    }
    return [h('h1', {text: 'Compare pNodes'}), body];
  }

  // ----- registry

  function registryPage() {
    const tokens = [];
    let pageToken = '';
    const table = h('div', {class: 'table-wrap'});
    const detail = h('div');
    const error = h('div');
    const events = h('ol', {class: 'log', 'aria-label': 'Registry events', id: 'registry-events'});
    const state = h('div', {}, liveDot(false, 'Registry events'));
    const filters = h('form', {class: 'filters', 'aria-label': 'Filter registry nodes'},
      h('label', {}, 'Type', h('select', {name: 'type'}, ['', 'BAREMETAL', 'VM', 'CONTAINER', 'IOT_DEVICE', 'PNODE', 'CHILD', 'CUSTOM'].map((t) => h('option', {value: t, text: t || 'any'})))),
      h('label', {}, 'Status', h('select', {name: 'status'}, ['', 'UP', 'DOWN', 'DEGRADED', 'UNKNOWN'].map((t) => h('option', {value: t, text: t || 'any'})))),
      h('label', {}, 'Label selector', h('input', {name: 'label', placeholder: 'env=prod', autocomplete: 'off'})),
      h('label', {}, 'Search', h('input', {name: 'search', type: 'search', autocomplete: 'off'})),
      h('button', {class: 'primary', type: 'submit', text: 'Apply'}));
    const query = () => {
      const q = new URLSearchParams({page_size: 50});
      for (const name of ['type', 'status', 'label', 'search']) if (filters[name].value.trim()) q.set(name, filters[name].value.trim());
      if (pageToken) q.set('page_token', pageToken);
      return q;
    };
    const load = async () => {
      let result;
      try { result = await api('GET', `/api/nodes?${query()}`); } catch (failure) { showError(error, failure); return; }
      error.replaceChildren();
      table.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['Name', 'Type', 'Status', 'Labels', 'Last seen'].map((t) => h('th', {text: t})))),
        h('tbody', {}, result.nodes.map((n) => h('tr', {'data-node': n.id},
          h('td', {}, h('button', {class: 'link', type: 'button', text: n.name, 'aria-label': `Show ${n.name}`, on: {click: () => showNode(n)}})),
          h('td', {text: n.type}),
          h('td', {}, badge(n.status)),
          h('td', {class: 'muted', text: Object.entries(n.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ')}),
          h('td', {text: fmt.time(n.last_seen)}))))),
      h('div', {class: 'pager'},
        h('button', {type: 'button', text: 'First page', disabled: !pageToken, on: {click: () => { tokens.length = 0; pageToken = ''; load(); }}}),
        h('button', {type: 'button', text: 'Next page', disabled: !result.next_page_token, on: {click: () => { tokens.push(pageToken); pageToken = result.next_page_token; load(); }}})));
    };
    const showNode = (n) => {
      detail.replaceChildren(h('section', {class: 'panel'}, h('h2', {text: n.name}), h('dl', {class: 'kv'},
        ...[['Id', n.id], ['Type', n.type], ['Status', n.status], ['Revision', n.revision], ['Created', fmt.time(n.created_at)],
          ['Updated', fmt.time(n.updated_at)], ['Last seen', fmt.time(n.last_seen)],
          ['Labels', JSON.stringify(n.labels)], ['Metadata', JSON.stringify(n.metadata)]]
          .flatMap(([k, v]) => [h('dt', {text: k}), h('dd', {text: v})]))));
    };
    filters.addEventListener('submit', (event) => { event.preventDefault(); tokens.length = 0; pageToken = ''; load(); });
    let reload = null;
    const live = new LiveSocket(async () => `/api/nodes/watch?token=${encodeURIComponent(await freshToken())}`, {
      authenticated: true,
      message: (data) => {
        const event = json(data);
        if (!event) return;
        events.prepend(h('li', {text: `#${event.event_id} ${event.event_type} ${event.node ? `${event.node.type} ${event.node.name} ${event.node.status}` : ''} ${(event.changed_fields || []).join(',')}`}));
        while (events.children.length > 200) events.lastChild.remove();
        clearTimeout(reload);
        reload = setTimeout(load, 1000);
      },
      state: (isLive) => state.replaceChildren(liveDot(isLive, 'Registry events')),
    });
    load();
    return [h('h1', {text: 'Registry'}), state,
      h('section', {class: 'panel'}, filters, error, table), detail,
      h('section', {class: 'panel'}, h('h2', {text: 'Live events'}), events),
      () => { clearTimeout(reload); live.close(); }];
  }

  // ----- children, clients, plans, maintenance and versions

  function childrenPage() {
    const error = h('div');
    const keyBox = h('div', {id: 'child-key'});
    const childrenTable = h('div', {class: 'table-wrap', id: 'children'});
    const childrenCount = h('p', {class: 'muted'});
    const clientsTable = h('div', {class: 'table-wrap', id: 'clients'});
    const plansTable = h('div', {class: 'table-wrap', id: 'plans'});
    let plans = [];
    let clients = [];
    const showKey = (issued, what) => {
      keyBox.replaceChildren(h('section', {class: 'panel', role: 'status'},
        h('h2', {text: `Key of ${issued.child.name} (${what})`}),
        h('p', {text: 'Shown this once: give it to the child\'s operator now. The mother keeps only a hash of it.'}),
        h('code', {class: 'secret', text: issued.api_key})));
    };
    const act = async (call, done) => {
      error.replaceChildren();
      try { const result = await call(); if (done) notice(done); await load(); return result; } catch (failure) { showError(error, failure); return null; }
    };
    const liveness = {online: 'ok', late: 'warn', offline: 'bad', revoked: 'bad', new: ''};
    const versionKind = {ok: 'ok', update_available: 'warn', update_required: 'bad'};
    const load = async () => {
      let page;
      try {
        [plans, clients, page] = await Promise.all([
          api('GET', '/api/admin/plans').then((r) => r.plans),
          api('GET', '/api/admin/clients').then((r) => r.clients),
          api('GET', '/api/admin/children?limit=1000'),
        ]);
      } catch (failure) { showError(error, failure); return; }
      const children = page.children;
      const clientName = Object.fromEntries(clients.map((c) => [c.id, c.name]));
      const planName = Object.fromEntries(plans.map((p) => [p.id, p.name]));
      childrenCount.textContent = page.total > children.length ? `The newest ${children.length} of ${page.total} children.` : '';
      childrenTable.replaceChildren(children.length === 0 ? h('p', {class: 'muted', text: 'No child yet: provision one for a client below.'}) : h('table', {},
        h('thead', {}, h('tr', {}, ['Child', 'Client', 'Liveness', 'Last heartbeat', 'Version', 'Lease', 'Control socket', 'Key', 'Actions'].map((t) => h('th', {text: t})))),
        h('tbody', {}, children.map((c) => h('tr', {'data-child': c.name},
          h('td', {text: c.name}),
          h('td', {text: clientName[c.client_id] || c.client_id}),
          h('td', {}, badge(c.liveness, liveness[c.liveness] || '')),
          h('td', {text: fmt.time(c.last_heartbeat_at)}),
          h('td', {}, c.version || '—', ' ', c.version_status ? badge(c.version_status, versionKind[c.version_status]) : ''),
          h('td', {text: c.lease_valid_until ? `#${c.lease_seq} until ${fmt.time(c.lease_valid_until)}` : '—'}),
          h('td', {title: c.control ? `instance ${c.control.instance}` : ''}, c.control ? `instance ${c.control.instance.slice(0, 8)} since ${fmt.time(c.control.connected_at)}` : '—'),
          h('td', {}, h('code', {text: `${c.key_prefix}…`})),
          h('td', {}, c.revoked_at ? badge('revoked', 'bad') : h('span', {},
            h('button', {type: 'button', text: 'Rotate key', 'aria-label': `Rotate the key of ${c.name}`, on: {click: async () => {
              const issued = await act(() => api('POST', `/api/admin/children/${c.id}/rotate-key`), `New key for ${c.name}`);
              if (issued) showKey(issued, 'rotated');
            }}}),
            ' ',
            h('button', {class: 'danger', type: 'button', text: 'Revoke', 'aria-label': `Revoke ${c.name}`, on: {click: () => {
              if (window.confirm(`Revoke ${c.name}? Its key stops working at once.`)) act(() => api('DELETE', `/api/admin/children/${c.id}`), `Revoked ${c.name}`);
            }}}))))))));
      clientsTable.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['Client', 'Plan', 'Subscription', 'Expires', 'Children', 'Users', 'Config hash'].map((t) => h('th', {text: t})))),
        h('tbody', {}, clients.map((c) => h('tr', {'data-client': c.name},
          h('td', {text: c.name}),
          h('td', {text: planName[c.plan_id] || c.plan_id}),
          h('td', {}, badge(c.subscription.status, c.subscription.status === 'active' ? 'ok' : (c.subscription.status === 'past_due' ? 'warn' : 'bad'))),
          h('td', {text: fmt.time(c.subscription.expires_at)}),
          h('td', {text: c.children}),
          h('td', {text: c.users}),
          h('td', {}, h('code', {text: fmt.short(c.config_hash)})))))));
      plansTable.replaceChildren(h('table', {},
        h('thead', {}, h('tr', {}, ['Plan', 'Max children', 'Max users', 'Features'].map((t) => h('th', {text: t})))),
        h('tbody', {}, plans.map((p) => h('tr', {},
          h('td', {text: p.name}), h('td', {text: p.limits.max_children}), h('td', {text: p.limits.max_users}),
          h('td', {text: p.features.join(', ') || '—'}))))));
      for (const select of [newClient.plan_id]) {
        select.replaceChildren(...plans.map((p) => h('option', {value: p.id, text: p.name})));
      }
      newChild.client_id.replaceChildren(...clients.map((c) => h('option', {value: c.id, text: c.name})));
    };

    const maintenance = h('form', {class: 'filters', 'aria-label': 'Maintenance'},
      h('label', {}, h('input', {name: 'enabled', type: 'checkbox'}), 'Maintenance on'),
      h('label', {}, 'Message', h('input', {name: 'message', maxlength: 500, autocomplete: 'off'})),
      h('button', {class: 'primary', type: 'submit', text: 'Save maintenance'}));
    maintenance.addEventListener('submit', (event) => {
      event.preventDefault();
      act(() => api('PUT', '/api/admin/maintenance', {enabled: maintenance.enabled.checked, message: maintenance.message.value || null}),
        maintenance.enabled.checked ? 'Maintenance is on: every child hears it now' : 'Maintenance is off');
    });
    const versions = h('form', {class: 'filters', 'aria-label': 'Versions'},
      h('label', {}, 'Minimum version', h('input', {name: 'min_version', placeholder: '1.2.0', autocomplete: 'off'})),
      h('label', {}, 'Latest version', h('input', {name: 'latest_version', placeholder: '1.4.0', autocomplete: 'off'})),
      h('button', {class: 'primary', type: 'submit', text: 'Save versions'}));
    versions.addEventListener('submit', (event) => {
      event.preventDefault();
      act(() => api('PUT', '/api/admin/versions', {min_version: versions.min_version.value || null, latest_version: versions.latest_version.value || null}), 'Version policy saved');
    });
    const newPlan = h('form', {class: 'filters', 'aria-label': 'New plan'},
      h('label', {}, 'Name', h('input', {name: 'name', required: true, maxlength: 100})),
      h('label', {}, 'Max children', h('input', {name: 'max_children', type: 'number', min: 0, value: 3})),
      h('label', {}, 'Max users', h('input', {name: 'max_users', type: 'number', min: 0, value: 50})),
      h('label', {}, 'Features', h('input', {name: 'features', placeholder: 'bots, analytics'})),
      h('button', {class: 'primary', type: 'submit', text: 'Create plan'}));
    newPlan.addEventListener('submit', (event) => {
      event.preventDefault();
      act(() => api('POST', '/api/admin/plans', {name: newPlan.name.value,
        limits: {max_children: Number(newPlan.max_children.value), max_users: Number(newPlan.max_users.value)},
        features: newPlan.features.value.split(',').map((f) => f.trim()).filter(Boolean)}), `Plan ${newPlan.name.value} created`);
    });
    const newClient = h('form', {class: 'filters', 'aria-label': 'New client'},
      h('label', {}, 'Name', h('input', {name: 'name', required: true, maxlength: 100})),
      h('label', {}, 'Plan', h('select', {name: 'plan_id'})),
      h('label', {}, 'Subscription', h('select', {name: 'status'}, ['active', 'past_due', 'cancelled'].map((v) => h('option', {value: v, text: v})))),
      h('button', {class: 'primary', type: 'submit', text: 'Create client'}));
    newClient.addEventListener('submit', (event) => {
      event.preventDefault();
      act(() => api('POST', '/api/admin/clients', {name: newClient.name.value, plan_id: Number(newClient.plan_id.value),
        subscription: {status: newClient.status.value}}), `Client ${newClient.name.value} created`);
    });
    const newChild = h('form', {class: 'filters', 'aria-label': 'Provision a child'},
      h('label', {}, 'Client', h('select', {name: 'client_id'})),
      h('label', {}, 'Name', h('input', {name: 'name', required: true, maxlength: 100})),
      h('button', {class: 'primary', type: 'submit', text: 'Provision child'}));
    newChild.addEventListener('submit', async (event) => {
      event.preventDefault();
      const issued = await act(() => api('POST', `/api/admin/clients/${newChild.client_id.value}/children`, {name: newChild.name.value}), `Child ${newChild.name.value} provisioned`);
      if (issued) showKey(issued, 'new');
    });
    (async () => {
      try {
        const [m, v] = await Promise.all([api('GET', '/api/admin/maintenance'), api('GET', '/api/admin/versions')]);
        maintenance.enabled.checked = m.enabled;
        maintenance.message.value = m.message || '';
        versions.min_version.value = v.min_version || '';
        versions.latest_version.value = v.latest_version || '';
      } catch (failure) { showError(error, failure); }
    })();
    load();
    const timer = setInterval(load, 5000);
    return [h('h1', {text: 'Children'}), error, keyBox,
      h('section', {class: 'panel'}, h('h2', {text: 'Child nodes'}), childrenCount, childrenTable),
      h('section', {class: 'panel'}, h('h2', {text: 'System control'}), maintenance, versions),
      h('section', {class: 'panel'}, h('h2', {text: 'Clients'}), clientsTable, newClient, newChild),
      h('section', {class: 'panel'}, h('h2', {text: 'Plans'}), plansTable, newPlan),
      () => clearInterval(timer)];
  }

  // ---------------------------------------------------------------- router

  const PAGES = {
    overview: {admin: true, render: overviewPage},
    streams: {admin: false, render: streamsPage},
    users: {admin: true, render: usersPage},
    pnodes: {admin: false, render: (arg) => (arg ? pnodeDetail(arg) : pnodesPage())},
    compare: {admin: false, render: (arg) => comparePage((arg || '').split(',').filter(Boolean))},
    registry: {admin: false, render: registryPage},
    children: {admin: true, render: childrenPage},
  };

  let cleanup = [];
  // Each route() call's number: a page that finishes loading after a later call is dropped.
  let routeSerial = 0;

  function signedOut(message) {
    feed.stop();
    saveSession(null);
    route(message);
  }

  async function route(message) {
    routeSerial += 1;
    const serial = routeSerial;
    cleanup.forEach((stop) => { try { stop(); } catch { /* already stopped */ } });
    cleanup = [];
    const [name, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
    const arg = rest.length ? decodeURIComponent(rest.join('/')) : '';
    const nav = $('#nav');
    if (!session) {
      nav.hidden = true;
      $('#logout').hidden = true;
      $('#who').textContent = '';
      main().replaceChildren(loginPage(typeof message === 'string' ? message : ''));
      return;
    }
    nav.hidden = false;
    $('#logout').hidden = false;
    $('#who').textContent = `${session.username} · ${session.role}`;
    for (const link of nav.querySelectorAll('a')) {
      link.hidden = link.hasAttribute('data-admin') && !isAdmin();
    }
    const key = PAGES[name] ? name : (isAdmin() ? 'overview' : 'pnodes');
    const page = PAGES[key];
    for (const link of nav.querySelectorAll('a')) {
      if (link.dataset.page === (key === 'compare' ? 'pnodes' : key)) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    if (page.admin && !isAdmin()) {
      main().replaceChildren(h('h1', {text: 'Admins only'}), h('p', {text: 'This page needs the admin role.'}));
      return;
    }
    if (isAdmin()) feed.start();
    main().replaceChildren(h('p', {class: 'muted', text: 'Loading…'}));
    const parts = await page.render(arg);
    const stops = parts.filter((part) => typeof part === 'function');
    if (serial !== routeSerial) {
      // Another page was asked for meanwhile (or the user signed out): this one is not shown.
      stops.forEach((stop) => { try { stop(); } catch { /* already stopped */ } });
      return;
    }
    cleanup.push(...stops);
    const nodes = parts.filter((part) => typeof part !== 'function');
    main().replaceChildren(...nodes);
    document.title = `${key} · nodegrid console`;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#logout').addEventListener('click', async () => {
      if (session) request('POST', '/api/auth/logout', undefined, session.access).catch(() => {});
      signedOut('Signed out.');
    });
    window.addEventListener('hashchange', () => route());
    // Refreshed ahead of expiry while the page is open, so that calls and new sockets get a
    // fresh token (open sockets keep theirs until the server closes them with 4001).
    setInterval(() => { if (session && session.expiresAt - Date.now() < 120000) refreshSession().catch(() => {}); }, 30000);
    route();
  });
})();
