// Types of wsd-client.js for editors (hand-written; the payload of each action is in
// docs/protocol.md and in `wsd schema`'s JSON Schemas).

export type State = "idle" | "connecting" | "ready" | "reconnecting" | "failed" | "closed";

export interface Person { provider: string; subject: string; name: string; email: string | null }

/** `person` and `expires_at` only for a person signed in with an OpenID provider's token. */
export interface Caller { name: string; role: "viewer" | "admin" | string; person?: Person; expires_at?: string }

export interface StateInfo {
  /** reconnect attempts since the last success */
  attempt: number;
  /** ms until the next attempt (state "reconnecting") */
  delay?: number;
  /** why the connection dropped or the login was refused */
  error?: WsdError;
  /** who we are (state "ready") */
  caller?: Caller;
}

export interface ClientOptions {
  url: string;
  /** an API token; or `idToken` */
  token?: string;
  /** a person's token from an OpenID provider (auth.login with id_token) */
  idToken?: string;
  /** a fresh idToken of the same person, or null: called on "auth.expiring" (then sent with
   * auth.refresh, subscriptions kept) and after a close for expiry (4401) */
  renew?: () => Promise<string | null>;
  /** default request timeout in ms (10000); 0 = none */
  timeout?: number;
  /** first reconnect delay, ms (500) */
  minDelay?: number;
  /** largest reconnect delay, ms (15000) */
  maxDelay?: number;
  /** backoff growth per attempt (2) */
  factor?: number;
  /** share of each delay drawn at random, 0..1 (0.5) */
  jitter?: number;
  onState?: (state: State, info: StateInfo) => void;
  /** server events: "agent_status" ({conversation_id, enabled}) always; "changes" ({topic}) with
   * `hints`; "auth.expiring" ({expires_at, seconds_left}) for a person's connection */
  onEvent?: (topic: string, payload: unknown) => void;
  /** ask for "changes" hints (live.hints) after each login; default false */
  hints?: boolean;
  WebSocket?: typeof WebSocket;
}

export interface RequestOptions {
  timeout?: number;
  /** whether the action writes (default: in WRITE_ACTIONS); a write while not connected fails at once with "unavailable" */
  write?: boolean;
}
/** fresh: the last answer came on the current connection; stale: none yet, or the connection dropped since */
export type SubscriptionState = "fresh" | "stale";
export interface SubscribeOptions {
  onError?: (error: WsdError) => void;
  /** fresh/stale changes; updatedAt: Date.now() of the last answer (null before the first) */
  onState?: (state: SubscriptionState, info: { updatedAt: number | null }) => void;
}
/** `total`: how many match in all, on `get_all_leads` with a `filter`. */
export interface Page<T = unknown> { data: T; next_cursor: string | null; total?: number }
export interface UpdateMeta { initial: boolean; next_cursor?: string | null; total?: number }

/** Client-side codes, distinct from every server code. */
export const TIMEOUT: "timeout";
export const CONNECTION_LOST: "connection_lost";
export const CLOSED: "closed";
/** the server's code; also the client's own for a write while not connected */
export const UNAVAILABLE: "unavailable";
/** the registry's write actions, "resource.action" */
export const WRITE_ACTIONS: ReadonlySet<string>;

export type ErrorCode =
  | "bad_json" | "bad_request" | "unknown_action" | "invalid_payload" | "unauthorized"
  | "forbidden" | "not_found" | "conflict" | "rate_limited" | "unavailable"
  | "upstream_error" | "internal"
  | typeof TIMEOUT | typeof CONNECTION_LOST | typeof CLOSED | "bad_reply";

export class WsdError extends Error {
  constructor(code: string, message: string, details?: unknown, requestId?: string | number | null);
  code: ErrorCode | string;
  details: unknown;
  requestId: string | number | null;
}

export class WsdClient {
  constructor(options: ClientOptions);
  readonly state: State;
  readonly caller: Caller | null;
  /** reconnect attempts since the last successful login */
  readonly attempt: number;
  /** Opens the connection and logs in (auth.login); rejects when the token is refused. */
  connect(): Promise<Caller>;
  /** Resolves with the reply's data, or {data, next_cursor} for paged actions. A read waits for
   *  the connection (within its timeout); a write while not connected rejects at once with "unavailable". */
  request<T = any>(resource: string, action: string, payload?: object, options?: RequestOptions): Promise<T>;
  /** A list (leads, abandoned_leads, meetings, trail) as CSV, once all its chunks are in. */
  exportCsv(list: string, payload?: object, options?: RequestOptions):
    Promise<{ csv: string; filename: string; content_type: string; rows: number }>;
  /** Live subscription; onData gets the first answer, each new one, and a fresh one after a
   *  reconnect; options.onState hears "stale" on a drop and "fresh" once renewed. */
  subscribe<T = any>(resource: string, action: string, payload: object,
                     onData: (data: T, meta: UpdateMeta) => void, options?: SubscribeOptions): () => void;
  /** Closes for good; pending requests are rejected with "closed". */
  close(): void;
  /** The delay before the next reconnect attempt, ms. */
  nextDelay(): number;
}
