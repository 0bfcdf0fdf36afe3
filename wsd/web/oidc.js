// Signing a person in with their organisation's OpenID provider, from the browser alone:
// Authorization Code with PKCE (RFC 7636, S256), no client secret (the page is a public
// client). The daemon says which providers there are (GET /oidc.json); the provider sends
// the browser back to this page with a code, which is swapped for an ID token (and, where
// the provider gives one to a browser client, a refresh token: the silent renewal). Tokens
// live in sessionStorage (this tab only, never the URL). The view (the URL's query) is kept
// across the round trip.

const PENDING_KEY = "wsd-oidc-pending";   // the verifier, state and nonce of a sign-in under way
const SESSION_KEY = "wsd-oidc-session";   // {provider, id_token, refresh_token}

const base64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = (size = 32) => base64url(crypto.getRandomValues(new Uint8Array(size)));
const redirectUri = () => `${location.origin}/`;

/** The configured providers ({name, issuer, client_id, scopes, authorization_endpoint,
 * token_endpoint}); none when sign-in is not set up or the daemon cannot be asked. */
export async function providers() {
  try {
    const reply = await fetch("/oidc.json", { cache: "no-store" });
    return reply.ok ? (await reply.json()).providers : [];
  } catch {
    return [];
  }
}

/** Off to the provider's sign-in page; the browser comes back to this page with a code. */
export async function beginSignIn(provider) {
  const verifier = random(48);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const pending = { provider, verifier, state: random(16), nonce: random(16),
    back: location.search + location.hash };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const query = new URLSearchParams({ response_type: "code", client_id: provider.client_id,
    redirect_uri: redirectUri(), scope: provider.scopes, code_challenge: challenge,
    code_challenge_method: "S256", state: pending.state, nonce: pending.nonce });
  location.assign(`${provider.authorization_endpoint}?${query}`);
}

/** On the way back from the provider: the code swapped for tokens, the URL put back as it
 * was. Resolves with the session, or null when this load is not such a return; rejects with
 * an Error saying why when the provider refused or the answer does not match. */
export async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("state") || !(params.has("code") || params.has("error"))) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? "null");
  sessionStorage.removeItem(PENDING_KEY);
  history.replaceState(null, "", `/${pending?.back ?? ""}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("the sign-in answer does not match this tab's request");
  if (params.has("error")) throw new Error(params.get("error_description") || params.get("error"));
  const tokens = await tokenRequest(pending.provider, { grant_type: "authorization_code",
    code: params.get("code"), redirect_uri: redirectUri(), code_verifier: pending.verifier });
  if (claims(tokens.id_token).nonce !== pending.nonce) throw new Error("the ID token is not this sign-in's (nonce)");
  return save(pending.provider, tokens);
}

/** The session this tab signed in with, if any. */
export function current() {
  return JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? "null");
}

export function forget() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** A fresh ID token without a page change (the refresh token), or null when the provider
 * gave none or refuses it: the person has to sign in again. */
export async function renew() {
  const session = current();
  if (!session?.refresh_token) return null;
  try {
    const tokens = await tokenRequest(session.provider, { grant_type: "refresh_token",
      refresh_token: session.refresh_token, scope: session.provider.scopes });
    return save(session.provider, { refresh_token: session.refresh_token, ...tokens }).id_token;
  } catch {
    return null;
  }
}

async function tokenRequest(provider, fields) {
  const reply = await fetch(provider.token_endpoint, { method: "POST",
    body: new URLSearchParams({ client_id: provider.client_id, ...fields }) });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok || !body.id_token) throw new Error(body.error_description || body.error || `HTTP ${reply.status}`);
  return body;
}

function save(provider, tokens) {
  const session = { provider, id_token: tokens.id_token, refresh_token: tokens.refresh_token ?? null };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

/** A JWT's claims, unchecked (the daemon checks the token; the page only reads its nonce). */
function claims(jwt) {
  const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(part), (c) => c.charCodeAt(0))));
}
