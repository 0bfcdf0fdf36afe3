// wsd-client.js — the browser (or any WebSocket-capable runtime) client of wsd.
// One ES module, no dependencies, no build step. Served by wsd at /client/wsd-client.js;
// types for editors at /client/wsd-client.d.ts (and in the JSDoc below).
//
//   import { WsdClient } from "/client/wsd-client.js";
//   const client = new WsdClient({ url: "ws://localhost:8765/ws", token });
//   await client.connect();                       // auth.login first: browsers cannot send
//                                                 // an Authorization header
//   const stats = await client.request("dashboard", "get_dashboard_stats");
//   const stop = client.subscribe("dashboard", "get_dashboard_stats", {}, (data) => draw(data));
//   stop();                                       // live.unsubscribe
//
// After a dropped connection it reconnects with exponential backoff and jitter, logs in
// again and subscribes again (each subscriber gets the fresh answer; meanwhile its state is
// "stale"); requests in flight during the drop are rejected with code "connection_lost",
// because whether a write among them happened is unknown and only the caller can decide to
// retry it. A write asked for while not connected fails at once with "unavailable": a
// switch that lands seconds later is worse than one that fails. Reads wait (within their
// timeout).

/**
 * An error reply of wsd, or one of the client's own failures.
 * Server codes: see docs/protocol.md (unauthorized, forbidden, invalid_payload, ...).
 * Client codes: "timeout" (no reply in time; the request may still run),
 * "connection_lost" (the socket dropped with the request in flight; a write's outcome is
 * unknown), "closed" (close() was called), "bad_reply" (a frame that is not wsd's JSON).
 * The client also answers "unavailable" itself (details {reason: "not_connected", outcome:
 * "not_applied"}) to a write asked for while not connected: nothing was sent.
 */
export class WsdError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {unknown} [details]
   * @param {string|number|null} [requestId]
   */
  constructor(code, message, details = null, requestId = null) {
    super(message);
    this.name = "WsdError";
    /** @type {string} */ this.code = code;
    /** @type {unknown} */ this.details = details;
    /** @type {string|number|null} */ this.requestId = requestId;
  }
}

/** Client-side error codes, distinct from every code the server sends. */
export const TIMEOUT = "timeout";
export const CONNECTION_LOST = "connection_lost";
export const CLOSED = "closed";
/** The server's code for "not now"; the client uses it for a write while not connected. */
export const UNAVAILABLE = "unavailable";

/**
 * The write actions of wsd's registry ("resource.action"; `wsd schema` marks them
 * `writes`). A request for one fails at once while not connected instead of being queued;
 * `request(..., {write})` decides for an action not listed here. tests/test_client_js.py
 * holds this list equal to the registry.
 */
export const WRITE_ACTIONS = new Set([
  "conversations.update_agent_status",
  "leads.update_lead_step",
  "meetings.create_meeting", "meetings.update_meeting", "meetings.cancel_meeting",
  "meetings.sync_outlook_calendar",
  "requirements.create_requirement_package", "requirements.update_requirements",
  "requirements.add_feature", "requirements.add_integration",
]);

/**
 * @typedef {"idle"|"connecting"|"ready"|"reconnecting"|"failed"|"closed"} State
 *   idle: not started; connecting: first attempt; ready: logged in;
 *   reconnecting: waiting or trying again after a drop; failed: the token was refused
 *   (no more attempts); closed: close() was called.
 */

/**
 * @typedef {object} StateInfo
 * @property {number} attempt   reconnect attempts since the last success
 * @property {number} [delay]   ms until the next attempt (reconnecting)
 * @property {WsdError} [error] why (failed; reconnecting after a refused login)
 * @property {{name: string, role: string}} [caller] who we are (ready)
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} url          ws:// or wss:// URL of wsd's endpoint
 * @property {string} [token]      an API token (see `wsd token new`); or:
 * @property {string} [idToken]    a person's token from an OpenID provider (`auth.login`
 *   with `id_token`, docs/protocol.md)
 * @property {() => Promise<string|null>} [renew] a fresh idToken of the same person, or
 *   null when there is none without the person: called on `auth.expiring` (then sent with
 *   `auth.refresh`, subscriptions kept) and after a close for expiry (4401, then logged in
 *   again on a new connection). Without it, or when it gives null, the client ends
 *   "failed" with an `unauthorized` error whose details.reason is "expired"
 * @property {number} [timeout]    default request timeout, ms (10000; 0 = none)
 * @property {number} [minDelay]   first reconnect delay, ms (500)
 * @property {number} [maxDelay]   largest reconnect delay, ms (15000)
 * @property {number} [factor]     backoff growth per attempt (2)
 * @property {number} [jitter]     share of each delay drawn at random, 0..1 (0.5)
 * @property {(state: State, info: StateInfo) => void} [onState] state changes
 * @property {(topic: string, payload: unknown) => void} [onEvent] server events:
 *   "agent_status" ({conversation_id, enabled}) always, "changes" ({topic}) with `hints`,
 *   "auth.expiring" ({expires_at, seconds_left}) for a person's connection (refreshed by itself)
 * @property {boolean} [hints] ask for "changes" hints (live.hints) after each login; off by
 *   default: subscriptions are how a client stays current
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (tests, other runtimes)
 */

/**
 * @typedef {object} RequestOptions
 * @property {number} [timeout] ms; overrides the client's default; 0 = none
 * @property {boolean} [write] whether the action writes (default: listed in WRITE_ACTIONS);
 *   a write while not connected fails at once with "unavailable"
 */

/**
 * @typedef {"stale"|"fresh"} SubscriptionState
 *   fresh: the last answer came on the current connection, which is still up; stale: no
 *   answer yet, or the connection dropped since (what was shown may be out of date).
 */

/**
 * @typedef {object} SubscribeOptions
 * @property {(error: WsdError) => void} [onError] the subscription was refused (it is
 *   dropped: it will not be tried again after a reconnect)
 * @property {(state: SubscriptionState, info: {updatedAt: number|null}) => void} [onState]
 *   fresh/stale changes; updatedAt: Date.now() of the last answer (null before the first)
 */

/**
 * @typedef {object} Page
 * @property {unknown} data
 * @property {string|null} next_cursor
 * @property {number} [total] how many match in all (`get_all_leads` with a `filter`)
 */

const LOGIN_TIMEOUT_MS = 10000;
// The server's close code for a person's token that expired unrefreshed (docs/protocol.md).
const TOKEN_EXPIRED = 4401;

export class WsdClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || !options.url || !(options.token || options.idToken)) {
      throw new TypeError("url and token (or idToken) are required");
    }
    this.url = options.url;
    this.token = options.token ?? null;
    this.idToken = options.idToken ?? null;
    this.renew = options.renew ?? (async () => null);
    this._renewing = null;
    this.timeout = options.timeout ?? 10000;
    this.minDelay = options.minDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 15000;
    this.factor = options.factor ?? 2;
    this.jitter = options.jitter ?? 0.5;
    this.onState = options.onState ?? (() => {});
    this.onEvent = options.onEvent ?? (() => {});
    this.hints = options.hints ?? false;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    /** @type {State} */ this.state = "idle";
    /** @type {{name: string, role: string}|null} */ this.caller = null;
    this.attempt = 0;
    this._nextId = 1;
    this._nextSub = 1;
    /** @type {WebSocket|null} */ this._ws = null;
    /** @type {Map<string|number, {resolve: Function, reject: Function, timer: any, frame: string, sent: boolean}>} */
    this._pending = new Map();
    /** @type {Map<number, {resource: string, action: string, payload: object, onData: Function, onError: Function, onState: Function, sid: string|null, state: SubscriptionState, updatedAt: number|null}>} */
    this._subs = new Map();
    /** @type {Map<string, number>} server subscription id → local id */
    this._bySid = new Map();
    this._retryTimer = null;
    this._ready = null;
  }

  /**
   * Open the connection and log in. Resolves with the caller ({name, role}) once logged
   * in; rejects with a WsdError when the token is refused or close() is called first. A
   * server that cannot be reached is retried with backoff meanwhile.
   * @returns {Promise<{name: string, role: string}>}
   */
  connect() {
    if (!this._ready) {
      this._ready = {};
      this._ready.promise = new Promise((resolve, reject) => {
        this._ready.resolve = resolve;
        this._ready.reject = reject;
      });
      this._open("connecting");
    }
    return this._ready.promise;
  }

  /**
   * One request. Resolves with the reply's `data`; for paged actions (whose reply carries
   * `next_cursor`) with `{data, next_cursor}` (and `total` where the reply has it). Rejects with a WsdError. A read made while
   * reconnecting waits for the connection (within its timeout); a write fails at once
   * with "unavailable" (nothing is sent: retry when the state is "ready").
   * @param {string} resource
   * @param {string} action
   * @param {object} [payload]
   * @param {RequestOptions} [options]
   * @returns {Promise<any>}
   */
  request(resource, action, payload = {}, options = {}) {
    return this._request(resource, action, payload, options, null);
  }

  /**
   * A list as CSV (docs/protocol.md, Exports): `list` is leads, abandoned_leads, meetings or
   * trail, `payload` the list read's filters plus `bom`. Resolves once every chunk is in with
   * `{csv, filename, content_type, rows}`; no timeout unless one is given (an export of a
   * large list takes a while).
   * @param {string} list
   * @param {object} [payload]
   * @param {RequestOptions} [options]
   * @returns {Promise<{csv: string, filename: string, content_type: string, rows: number}>}
   */
  exportCsv(list, payload = {}, options = {}) {
    return this._request("export", list, payload, { timeout: options.timeout ?? 0 }, []);
  }

  /** A request whose entry collects `chunk` messages when `chunks` is an array. */
  _request(resource, action, payload, options, chunks) {
    if (this.state === "closed" || this.state === "failed") {
      return Promise.reject(new WsdError(CLOSED, `the client is ${this.state}`));
    }
    const write = options.write ?? WRITE_ACTIONS.has(`${resource}.${action}`);
    if (write && this.state !== "ready") {
      return Promise.reject(new WsdError(UNAVAILABLE,
        `not connected (${this.state}): ${resource}.${action} was not sent`,
        { reason: "not_connected", outcome: "not_applied", state: this.state }));
    }
    const id = this._nextId++;
    const frame = JSON.stringify({ resource, action, id, payload });
    const timeout = options.timeout ?? this.timeout;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null, frame, sent: false, chunks };
      if (timeout > 0) {
        entry.timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new WsdError(TIMEOUT, `no reply to ${resource}.${action} within ${timeout} ms`,
            { timeout_ms: timeout }, id));
        }, timeout);
      }
      this._pending.set(id, entry);
      if (this.state === "ready") this._send(id, entry);
    });
  }

  /**
   * A live subscription: `onData` gets the first answer, then every new one, and the fresh
   * answer again after each reconnect; `options.onState` hears when it turns "stale" (the
   * connection dropped) and "fresh" again (renewed). Returns a function that unsubscribes.
   * @param {string} resource
   * @param {string} action
   * @param {object} payload
   * @param {(data: any, meta: {next_cursor?: string|null, total?: number, initial: boolean}) => void} onData
   * @param {SubscribeOptions} [options]
   * @returns {() => void}
   */
  subscribe(resource, action, payload, onData, options = {}) {
    const local = this._nextSub++;
    const sub = { resource, action, payload: payload ?? {}, onData,
      onError: options.onError ?? ((error) => console.error("wsd subscription refused", error)),
      onState: options.onState ?? (() => {}), sid: null, state: "stale", updatedAt: null };
    this._subs.set(local, sub);
    if (this.state === "ready") this._subscribe(local, sub);
    return () => {
      if (!this._subs.delete(local)) return;
      if (sub.sid !== null) {
        this._bySid.delete(sub.sid);
        if (this.state === "ready") {
          this.request("live", "unsubscribe", { subscription: sub.sid }).catch(() => {});
        }
      }
    };
  }

  /** Close for good: no reconnect; pending requests are rejected with code "closed". */
  close() {
    this._setState("closed", {});
    clearTimeout(this._retryTimer);
    this._failAll(CLOSED, "the client was closed");
    this._subs.clear();
    this._bySid.clear();
    if (this._ready) this._ready.reject(new WsdError(CLOSED, "the client was closed"));
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000, "client closed");
  }

  // -- internals ------------------------------------------------------------------------

  _setState(state, info) {
    if (this.state === "closed" || this.state === "failed") return;
    this.state = state;
    try { this.onState(state, { attempt: this.attempt, ...info }); } catch (error) { console.error(error); }
  }

  _open(state) {
    this._setState(state, {});
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (error) {
      this._dropped(new WsdError(CONNECTION_LOST, String(error)));
      return;
    }
    this._ws = ws;
    ws.onopen = () => this._login(ws);
    ws.onmessage = (event) => this._onMessage(ws, event.data);
    ws.onclose = (event) => {
      if (this._ws !== ws) return;
      this._ws = null;
      if (event.code === TOKEN_EXPIRED) {
        this._expired();
        return;
      }
      this._dropped(new WsdError(CONNECTION_LOST,
        `connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`,
        { close_code: event.code }));
    };
    ws.onerror = () => {};  // onclose follows and decides
  }

  _login(ws) {
    const id = `login-${this._nextId++}`;
    const timer = setTimeout(() => ws.close(4000, "login timeout"), LOGIN_TIMEOUT_MS);
    this._loginId = id;
    this._loginDone = (reply) => {
      clearTimeout(timer);
      if (reply.type === "success") {
        this.caller = reply.payload.data;
        this.attempt = 0;
        this._setState("ready", { caller: this.caller });
        if (this._ready) this._ready.resolve(this.caller);
        for (const [local, sub] of this._subs) this._subscribe(local, sub);
        for (const [reqId, entry] of this._pending) if (!entry.sent) this._send(reqId, entry);
        if (this.hints) this.request("live", "hints", { enabled: true }).catch(() => {});
        return;
      }
      const error = toError(reply, id);
      if (error.code === "unauthorized" || error.code === "forbidden") {
        // A refused token stays refused: retrying would only trip the failure throttle.
        this._fail(error);
        this._ws = null;
        ws.close(1000, "login refused");
      } else {
        ws.close(4001, error.message);  // e.g. rate_limited: try again later
      }
    };
    const payload = this.idToken ? { id_token: this.idToken } : { token: this.token };
    ws.send(JSON.stringify({ resource: "auth", action: "login", id, payload }));
  }

  /** `auth.expiring`: a fresh token from `renew`, sent with `auth.refresh` (one at a time). */
  _refresh() {
    if (!this.idToken || this._renewing) return;
    this._renewing = this.renew()
      .then((fresh) => fresh && this.request("auth", "refresh", { id_token: (this.idToken = fresh) }))
      .then((caller) => { if (caller) this.caller = caller; })
      .catch((error) => console.error("wsd: refresh failed", error))
      .finally(() => { this._renewing = null; });
  }

  /** Closed with 4401: log in again with a fresh token, or fail as a refused login does. */
  _expired() {
    this._renewing = null;
    Promise.resolve(this.renew()).catch(() => null).then((fresh) => {
      if (fresh && this.state !== "closed") {
        this.idToken = fresh;
        this._dropped(new WsdError(CONNECTION_LOST, "the token expired; signing in again", { close_code: TOKEN_EXPIRED }));
        return;
      }
      const error = new WsdError("unauthorized", "the sign-in expired", { reason: "expired" });
      this._dropped(error);
      this._fail(error);
    });
  }

  _send(id, entry) {
    entry.sent = true;
    try {
      this._ws.send(entry.frame);
    } catch (error) {
      this._settle(id, null, new WsdError(CONNECTION_LOST, String(error), null, id));
    }
  }

  _subscribe(local, sub) {
    sub.sid = null;
    this.request("live", "subscribe", { resource: sub.resource, action: sub.action, payload: sub.payload })
      .then((body) => {  // {subscription, data, next_cursor?}
        if (!this._subs.has(local)) {  // unsubscribed while the subscribe was in flight
          this.request("live", "unsubscribe", { subscription: body.subscription }).catch(() => {});
          return;
        }
        sub.sid = body.subscription;
        this._bySid.set(sub.sid, local);
        const meta = { initial: true };
        if ("next_cursor" in body) meta.next_cursor = body.next_cursor;
        if ("total" in body) meta.total = body.total;
        sub.onData(body.data, meta);
        this._subState(sub, "fresh");
      })
      .catch((error) => {
        if (error.code === CONNECTION_LOST || error.code === CLOSED) return;  // retried on reconnect
        if (error.code === TIMEOUT) {  // a slow first answer: ask again on this connection
          if (this._subs.has(local) && this.state === "ready") this._subscribe(local, sub);
          return;
        }
        if (error.code === "rate_limited" && /in flight/.test(error.message)) {
          // Too many requests in flight on this connection (a page subscribing all its
          // panels at once): ask again once some have answered.
          setTimeout(() => {
            if (this._subs.has(local) && this.state === "ready") this._subscribe(local, sub);
          }, 100 + Math.random() * 200);
          return;
        }
        this._subs.delete(local);
        sub.onError(error);
      });
  }

  _onMessage(ws, raw) {
    let message;
    try {
      message = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
    } catch {
      console.error("wsd: a frame that is not JSON", raw);
      return;
    }
    if (message.type === "update") {
      const local = this._bySid.get(message.subscription);
      const sub = local !== undefined ? this._subs.get(local) : undefined;
      if (sub) {
        const meta = { initial: false };
        if ("next_cursor" in message.payload) meta.next_cursor = message.payload.next_cursor;
        if ("total" in message.payload) meta.total = message.payload.total;
        sub.onData(message.payload.data, meta);
        sub.updatedAt = Date.now();
      }
      return;
    }
    if (message.type === "event") {
      if (message.topic === "auth.expiring") this._refresh();
      try { this.onEvent(message.topic, message.payload); } catch (error) { console.error(error); }
      return;
    }
    if (message.type === "chunk") {
      this._pending.get(message.id)?.chunks?.push(message.payload.data);
      return;
    }
    if (message.id === this._loginId && this._loginDone) {
      const done = this._loginDone;
      this._loginDone = null;
      done(message);
      return;
    }
    if (message.type === "success") {
      const payload = message.payload ?? {};
      this._settle(message.id, "next_cursor" in payload
        ? { data: payload.data, next_cursor: payload.next_cursor, ...("total" in payload ? { total: payload.total } : {}) }
        : payload.data, null);
    } else if (message.type === "error") {
      if (message.id === null || message.id === undefined) {
        console.error("wsd error without a request id", message.payload);
        return;
      }
      this._settle(message.id, null, toError(message, message.id));
    }
  }

  _subState(sub, state) {
    if (state === "fresh") sub.updatedAt = Date.now();
    if (sub.state === state) return;
    sub.state = state;
    try { sub.onState(state, { updatedAt: sub.updatedAt }); } catch (error) { console.error(error); }
  }

  _settle(id, value, error) {
    const entry = this._pending.get(id);
    if (!entry) return;  // timed out already
    this._pending.delete(id);
    clearTimeout(entry.timer);
    if (error) entry.reject(error);
    else entry.resolve(entry.chunks ? { ...value, csv: entry.chunks.join("") } : value);
  }

  _fail(error) {
    clearTimeout(this._retryTimer);
    this._setState("failed", { error });
    this.state = "failed";
    this._failAll(error.code, error.message);
    if (this._ready) this._ready.reject(error);
  }

  _failAll(code, message) {
    for (const [id, entry] of this._pending) {
      clearTimeout(entry.timer);
      entry.reject(new WsdError(code, message, null, id));
    }
    this._pending.clear();
  }

  /** The socket is gone: fail what was sent on it, keep what was not, schedule a retry. */
  _dropped(error) {
    this._loginDone = null;
    for (const sub of this._subs.values()) {
      sub.sid = null;
      this._subState(sub, "stale");
    }
    this._bySid.clear();
    for (const [id, entry] of this._pending) {
      if (!entry.sent) continue;
      this._pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(new WsdError(CONNECTION_LOST,
        "the connection dropped before the reply; a write may or may not have happened",
        error.details, id));
    }
    if (this.state === "closed" || this.state === "failed") return;
    const delay = this.nextDelay();
    this.attempt += 1;
    this._setState("reconnecting", { delay, error });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open("reconnecting"), delay);
  }

  /**
   * The wait before the next attempt: minDelay × factor^attempt, capped at maxDelay, of
   * which a `jitter` share is random, so that many dashboards cut off together do not all
   * come back in the same instant.
   * @returns {number} ms
   */
  nextDelay() {
    const base = Math.min(this.maxDelay, this.minDelay * this.factor ** this.attempt);
    return Math.round(base * (1 - this.jitter) + base * this.jitter * Math.random());
  }
}

function toError(message, id) {
  const payload = message.payload ?? {};
  return new WsdError(payload.code ?? "bad_reply", payload.message ?? "error reply without a message",
    payload.details ?? null, id);
}
