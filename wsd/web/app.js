// The live dashboard: every panel is a wsd live subscription (wsd-client.js), so numbers
// move as the data changes, without polling or reloading. DOM is built with textContent
// only (no innerHTML with data): names in leads come from strangers.
import { WsdClient } from "/client/wsd-client.js";
import * as oidc from "/oidc.js";

const TOKEN_KEY = "wsd-token";  // sessionStorage: this tab only, never the URL
const STEPS = ["start", "consent", "personal_data", "bant", "requirements", "meeting", "completed"];
const STEP_NAMES = { start: "Start", consent: "Consent", personal_data: "Personal data", bant: "BANT",
  requirements: "Requirements", meeting: "Meeting", completed: "Completed" };
const SERIES = [["messages", "Messages"], ["new_leads", "New leads"], ["step_changes", "Step changes"],
  ["meetings_created", "Meetings"], ["agent_toggles", "Agent switches"]];

const PRESETS = { today: "Today", yesterday: "Yesterday", last_7_days: "Last 7 days", last_30_days: "Last 30 days",
  last_90_days: "Last 90 days", this_week: "This week", last_week: "Last week", this_month: "This month",
  last_month: "Last month", this_quarter: "This quarter" };
const GRANULARITIES = ["hour", "day", "week", "month"];
const DRILL_PAGE = 50;  // leads per page of a count's list
const ABANDONED_DAYS = 7;

const $ = (id) => document.getElementById(id);
let client = null;
let leadSub = null;
let selectedLead = null;
// The open lead's agent switches (conversations.get_agent_history), its own subscription.
const agentHistory = { conversation: null, stop: null, switches: null, lead: null };
const subs = {};  // panel name → unsubscribe function of its live query

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const pct = (r) => (r === null || r === undefined ? "–" : `${Math.round(r * 100)}%`);

// Times are shown in the business time zone (business.timezone, from the page's meta tag):
// "today" is counted there, so a meeting "today" must read as a time of that day.
const ZONE = document.querySelector('meta[name="wsd-timezone"]')?.content || "UTC";
const hhmm = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const hourOf = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, hour: "numeric", hourCycle: "h23" });
const dayTime = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, day: "numeric", month: "short",
  hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const clock = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
const time = (iso) => hhmm.format(new Date(iso));
const when = (iso) => (iso ? dayTime.format(new Date(iso)) : "–");

function toast(text) {
  const node = $("toast");
  node.textContent = text;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 4000);
}

// -- connection ------------------------------------------------------------------------

function endpoint() {
  const path = document.querySelector('meta[name="wsd-endpoint"]').content || "/ws";
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function showState(state, info) {
  const badge = $("conn-state");
  badge.dataset.state = state;
  badge.textContent = {
    idle: "not connected", connecting: "connecting…", ready: "live",
    reconnecting: info.delay !== undefined ? `reconnecting (try ${info.attempt})…` : "reconnecting…",
    failed: "token refused", closed: "signed out",
  }[state] ?? state;
  if (state === "failed" && !$("dashboard").hidden) {
    // Revoked (SIGHUP), expired or refused on a reconnect: nothing on screen may outlive
    // the token. The view (the URL's query) stays for the next sign-in.
    signOut(info.error?.details?.reason === "expired" ? "Your sign-in has ended. Sign in again to go on where you were."
      : `Your token is no longer accepted (${info.error?.code ?? "unauthorized"}: ` +
      `${info.error?.message ?? "refused"}). Sign in again.`);
  }
}

function showLogin(message) {
  $("dashboard").hidden = true;
  closeDrawer();
  closeDrill();
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("token").focus();
  showProviders();
}

/** A "Sign in with …" button per OpenID provider the daemon is set up with. */
async function showProviders() {
  const list = await oidc.providers();
  $("providers").replaceChildren(...list.map((provider) => el("button", { type: "button", class: "provider",
    onclick: () => oidc.beginSignIn(provider) }, `Sign in with ${provider.name}`)));
  $("providers-box").hidden = list.length === 0;
}

/** Back to the sign-in form with every figure and name of the last session cleared. */
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  oidc.forget();
  const old = client;
  client = null;
  if (old) old.close();
  leadSub = null;
  selectedLead = null;
  agentHistory.stop = null;  // the closed client took its subscriptions with it
  stopHistory();
  for (const name of Object.keys(subs)) delete subs[name];
  drill = null;
  clearPanels();
  showLogin(message);
}

/** Connect with an API token (`{token}`) or a person's ID token (`{idToken}`, renewed by
 * wsd-client.js through oidc.renew before it expires). */
async function start(credentials) {
  if (client) client.close();
  client = new WsdClient({ url: endpoint(), ...credentials, renew: oidc.renew, onState: showState,
    onEvent: (topic, payload) => { if (topic === "auth.expiring" && !oidc.current()?.refresh_token) {
      toast(`Your sign-in ends at ${hhmm.format(new Date(payload.expires_at))}: sign in again then to go on.`);
    } } });
  try {
    const caller = await client.connect();
    if (credentials.token) sessionStorage.setItem(TOKEN_KEY, credentials.token);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = `${caller.person?.name ?? caller.name} · ${caller.role}`;
    subscribeAll();
  } catch (error) {
    const reason = error.code === "unauthorized"
      ? "This token was refused. Check it and try again."
      : error.code === "rate_limited" ? "Too many failed attempts from here; wait a minute."
      : `Could not sign in: ${error.message}`;
    signOut(`${reason} (${error.code}: ${error.message})`);
  }
}

/** Subscription options for a panel: errors as toasts, and the panel dimmed with
 * "updated hh:mm:ss" while its answer is stale (the connection dropped, not yet renewed). */
function panel(name, label) {
  return {
    onError: (error) => toast(`${label}: ${error.code} — ${error.message}`),
    onState: (state, info) => markStale(name, state === "stale" && info.updatedAt !== null, info.updatedAt),
  };
}

function markStale(name, stale, updatedAt) {
  const section = document.querySelector(`[data-panel="${name}"]`);
  section.classList.toggle("stale", stale);
  const label = section.querySelector(".updated");
  label.hidden = !stale;
  label.textContent = stale ? `updated ${clock.format(new Date(updatedAt))}` : "";
}

function subscribeAll() {
  subscribePeriod();
  client.subscribe("leads", "get_step_durations", {}, drawDurations, panel("pipeline", "Time in step"));
  client.subscribe("meetings", "get_all_meetings", { filter: "today" }, drawMeetings, panel("meetings", "Meetings"));
  client.subscribe("leads", "get_abandoned_leads", { days: ABANDONED_DAYS, limit: 8 }, drawAbandoned,
    panel("abandoned", "Abandoned leads"));
}

// -- the reporting period ----------------------------------------------------------------
// The view (period, timeline granularity, funnel mode) lives in the URL's query, so a view
// can be shared or bookmarked; the token never goes there. No period ("All time") asks the
// seed's own questions, answered exactly as the specification shows them.

const view = readView();

function readView() {
  const query = new URLSearchParams(location.search);
  const from = query.get("from"), to = query.get("to"), preset = query.get("period");
  const day = /^\d{4}-\d{2}-\d{2}$/;
  const period = from && to && day.test(from) && day.test(to) ? { from, to }
    : preset in PRESETS ? preset : null;
  const granularity = GRANULARITIES.includes(query.get("granularity")) ? query.get("granularity") : null;
  return { period, granularity, mode: query.get("funnel") === "activity" ? "activity" : "cohort" };
}

function writeView() {
  const query = new URLSearchParams();
  if (typeof view.period === "string") query.set("period", view.period);
  else if (view.period) { query.set("from", view.period.from); query.set("to", view.period.to); }
  if (view.period && view.granularity) query.set("granularity", view.granularity);
  if (view.period && view.mode === "activity") query.set("funnel", "activity");
  const search = query.toString();
  if (search !== location.search.slice(1)) history.pushState(null, "", search ? `?${search}` : location.pathname);
}

/** The controls as the view says (after a load, a change or the browser's Back). */
function showView() {
  const custom = view.period !== null && typeof view.period === "object";
  $("period").value = custom ? "custom" : view.period ?? "";
  $("custom-range").hidden = !custom;
  if (custom) { $("period-from").value = view.period.from; $("period-to").value = view.period.to; }
  $("granularity-box").hidden = view.period === null;
  $("granularity").value = view.granularity ?? "";
  $("funnel-mode").hidden = view.period === null;
  for (const button of $("funnel-mode").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === view.mode));
  }
  if (view.period === null) $("period-span").textContent = "";
}

function periodName() {
  if (view.period === null) return "all time";
  if (typeof view.period === "string") return PRESETS[view.period];
  return `${shortDay(view.period.from)} – ${shortDay(view.period.to)}`;
}

/** (Re)subscribes the panels that follow the period; `names` limits it to some of them.
 * A panel keeps its last answer, dimmed, until the new one arrives. */
function subscribePeriod(names = ["stats", "funnel", "activity", "pipeline", "agent", "takeover"]) {
  const base = view.period === null ? null : { period: view.period, compare: true };
  const queries = {
    stats: ["dashboard", "get_dashboard_stats", base ?? {}, drawStats, "Stats"],
    funnel: ["dashboard", "get_conversion_funnel", base ? { ...base, mode: view.mode } : {}, drawFunnel, "Funnel"],
    activity: ["dashboard", "get_activity_timeline",
      base ? { ...base, ...(view.granularity ? { granularity: view.granularity } : {}) } : {}, drawActivity, "Activity"],
    pipeline: ["leads", "get_lead_pipeline", base ?? {}, drawPipeline, "Pipeline"],
    agent: ["dashboard", "get_agent_performance", base ?? { days: 7 }, drawAgent, "Agent"],
    takeover: ["dashboard", "get_human_takeover", base ?? { days: 7 }, drawTakeover, "Take-over"],
  };
  for (const name of names) {
    if (subs[name]) subs[name]();
    const [resource, action, payload, draw, label] = queries[name];
    const section = document.querySelector(`[data-panel="${name}"]`);
    section.classList.add("loading");
    const options = panel(name, label);
    if (name === "activity") {  // e.g. hours over 90 days: too many bars, said in the panel
      options.onError = (error) => {
        section.classList.remove("loading");
        $("activity-title").textContent = `Activity · ${periodName()}`;
        $("activity").replaceChildren(el("p", { class: "error",
          text: `Too many bars for this period: choose a longer "Timeline by". (${error.code}: ${error.message})` }));
        $("activity-legend").replaceChildren();
      };
    }
    subs[name] = client.subscribe(resource, action, payload, (data) => {
      section.classList.remove("loading");
      draw(data);
    }, options);
  }
}

function applyView(names) {
  writeView();
  showView();
  if (client) subscribePeriod(names);
}

function clearPanels() {
  for (const id of ["stat-users", "stat-conversations", "stat-meetings", "stat-leads"]) $(id).textContent = "–";
  for (const id of ["funnel", "activity", "activity-legend", "pipeline", "meetings", "agent", "takeover", "abandoned",
    "lead", "in-period", "drill-rows"]) $(id).replaceChildren();
  for (const id of ["period-span", "drill-total", "drill-page", "drill-what"]) $(id).textContent = "";
  cards.clear();
  durations.clear();
  for (const section of document.querySelectorAll("[data-panel]")) {
    section.classList.remove("loading");
    markStale(section.dataset.panel, false, null);
  }
}

// -- figures -----------------------------------------------------------------------------

const dayMonth = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "numeric", month: "short" });
const monthYear = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, month: "short", year: "numeric" });
const localDay = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, day: "numeric", month: "short" });
/** A local date ("2026-11-27") as "27 Nov". */
const shortDay = (date) => dayMonth.format(new Date(`${date}T00:00:00Z`));

/** "+7 (+12%)" against the previous period, coloured; "=" when unchanged. */
function delta(change, { percent = false, compact = false } = {}) {
  if (!change) return null;
  const { absolute, relative } = change;
  const sign = absolute > 0 ? "+" : "";
  const text = absolute === 0 ? "="
    : percent ? `${sign}${Math.round(absolute * 100)} pt`
    : `${sign}${fmt(Math.round(absolute * 10) / 10)}${relative === null || compact ? "" : ` (${sign}${Math.round(relative * 100)}%)`}`;
  return el("span", { class: `delta ${absolute > 0 ? "up" : absolute < 0 ? "down" : "muted"}`, text,
    title: "against the previous period" });
}

/** A count that opens the list of the leads behind it (`filter`, as get_all_leads takes it). */
function countLink(value, filter, title, attrs = {}) {
  return el("button", { type: "button", class: "count-link", "data-filter": JSON.stringify(filter),
    title: `Show these ${fmt(value)} leads`, onclick: () => openDrill(title, filter), ...attrs }, fmt(value));
}

/** Hours in a step, read at a glance: minutes, hours or days. */
function duration(hours) {
  if (hours === null || hours === undefined) return "–";
  if (hours < 1) return `${Math.round(hours * 60)} min`;
  if (hours < 48) return `${hours < 10 ? hours.toFixed(1) : Math.round(hours)} h`;
  return `${fmt(Math.round(hours / 24))} d`;
}

// -- panels ----------------------------------------------------------------------------

const IN_PERIOD = [["new_leads", "New leads"], ["messages", "Messages"], ["step_changes", "Step changes"],
  ["meetings_created", "Meetings booked"], ["agent_toggles", "Agent switches"]];

function drawStats(stats) {
  $("stat-users").textContent = fmt(stats.total_users);
  $("stat-conversations").textContent = fmt(stats.active_conversations);
  $("stat-meetings").textContent = fmt(stats.meetings_today);
  $("stat-leads").textContent = fmt(Object.values(stats.leads_by_step).reduce((a, b) => a + b, 0));
  const box = $("in-period");
  box.hidden = !stats.in_period;
  if (!stats.in_period) return box.replaceChildren();
  const previous = stats.previous?.period;
  // Hours over more than 41 days would be over wsd's 1,000 bars: not offered.
  const days = (Date.parse(stats.period.to) - Date.parse(stats.period.from)) / 86_400_000 + 1;
  $("granularity").querySelector('option[value="hour"]').disabled = days * 24 > 1000;
  $("period-span").textContent = `${shortDay(stats.period.from)} – ${shortDay(stats.period.to)}` +
    (previous ? ` · vs ${shortDay(previous.from)} – ${shortDay(previous.to)}` : "");
  box.replaceChildren(...IN_PERIOD.map(([key, name]) => {
    const filter = stats.filters?.[key];
    return el("div", { class: "mini", "data-figure": key },
      el("span", { class: "label", text: `${name}, ${periodName().toLowerCase()}` }),
      filter ? countLink(stats.in_period[key], filter, `${name} · ${periodName()}`, { class: "count-link value" })
        : el("span", { class: "value", text: fmt(stats.in_period[key]) }),
      delta(stats.change?.in_period?.[key]));
  }));
}

/** Without a period the seed's list (furthest step reached, all time); with one, `steps`
 * counted as `mode` says, their filters and the change against the previous period. */
function drawFunnel(answer) {
  const rows = Array.isArray(answer) ? answer : answer.steps;
  const key = answer.mode === "activity" ? "entered" : "reached";
  const changes = new Map((answer.change?.steps ?? []).map((change) => [change.step, change[key]]));
  const top = Math.max(1, ...rows.map((row) => row[key]));
  $("funnel").replaceChildren(...rows.map((row) => {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(row[key] / top) * 100}%`;  // CSSOM, allowed by the CSP
    const name = STEP_NAMES[row.step] ?? row.step;
    return el("li", { "data-step": row.step },
      el("span", { text: name }),
      el("div", { class: "bar", title: `${pct(row.rate_from_previous)} of the previous step` }, fill),
      el("span", { class: "num" },
        countLink(row[key], row.filters?.[key] ?? { reached: row.step },
          `${key === "entered" ? "Entered" : "Reached"} ${name} · ${periodName()}`),
        ` · ${pct(row.rate_from_start)}`, delta(changes.get(row.step))));
  }));
}

/** A bucket's label on the time axis, by the timeline's granularity (hours without a period). */
function bucketLabel(bucket, granularity) {
  const at = new Date(bucket.start ?? bucket.hour);
  if (granularity === "month") return monthYear.format(at);
  if (granularity === "day" || granularity === "week") return localDay.format(at);
  return `${hourOf.format(at)}h`;
}

function drawActivity(timeline) {
  const buckets = timeline.buckets;
  const granularity = timeline.granularity ?? "hour";
  $("activity-title").textContent = timeline.period
    ? `Activity by ${granularity} · ${periodName()}` : "Activity, last 24 h";
  // Drawn at the panel's own pixel width, so labels keep their size on a phone.
  const width = Math.max(300, $("activity").clientWidth || 720);
  const height = width < 500 ? 180 : 220, left = 34, bottom = 22, top = 18;
  const totals = buckets.map((b) => SERIES.reduce((sum, [key]) => sum + (b[key] ?? 0), 0));
  // A burst (the demo agent's current hour, say) must not flatten the other hours: the
  // scale reaches at most twice the median of the full hours that had any activity, and a
  // taller bar is cut at the top with its total written over it.
  const busy = totals.slice(0, -1).filter((total) => total > 0).sort((a, b) => a - b);
  const typical = busy.length ? busy[Math.floor(busy.length / 2)] : 0;
  const max = Math.max(4, Math.min(Math.max(...totals), 2 * typical));
  const lastOver = [-Infinity, -Infinity];  // x of the last total written on each of 2 rows
  const step = (width - left) / buckets.length;
  const plot = height - bottom - top;
  const scale = (v) => (plot * v) / max;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Activity per ${granularity} (${ZONE}); ${totals.reduce((a, b) => a + b, 0)} events in ` +
      `${timeline.period ? periodName() : "24 hours"}` });
  // Labels no closer than their own width (an hour's "13h" is narrower than "27 Nov").
  const every = timeline.period ? Math.max(1, Math.ceil((granularity === "hour" ? 30 : 48) / step))
    : width < 500 ? 6 : 3;
  for (const frac of [0, 0.5, 1]) {
    const y = height - bottom - plot * frac;
    chart.append(svg("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e2e6ee" }));
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7385" });
    label.textContent = String(Math.round(max * frac));
    chart.append(label);
  }
  buckets.forEach((bucket, i) => {
    let y = height - bottom;
    for (const [s, [key]] of SERIES.entries()) {
      const h = Math.min(scale(bucket[key] ?? 0), y - top);
      if (h > 0) {
        chart.append(svg("rect", { x: left + i * step + 2, y: y - h, width: Math.max(1, step - 4), height: h,
          fill: `var(--c${s + 1})`, class: "bar" }));
        y -= h;
      }
    }
    const overX = left + i * step + step / 2;
    const row = lastOver.findIndex((x) => overX - x >= 34);  // above the plot, else over the bar
    if (totals[i] > max && row >= 0) {
      const atEdge = overX > width - 18;  // anchored at its end so that it is not cut off
      const over = svg("text", { x: atEdge ? width - 1 : overX, y: row === 0 ? top - 5 : top + 12,
        "text-anchor": atEdge ? "end" : "middle", "font-size": 11, "font-weight": 600, fill: "#1d2433",
        stroke: "#fff", "stroke-width": 3, "paint-order": "stroke", class: "over" });
      over.textContent = `↑${fmt(totals[i])}`;
      chart.append(over);
      lastOver[row] = overX;
    }
    const last = i === buckets.length - 1;  // anchored at its end so it is never cut off
    if ((i % every === 0 && (last || buckets.length - 1 - i >= every || !timeline.period)) || last) {
      const label = svg("text", { x: last ? width - 1 : left + i * step + step / 2, y: height - 6,
        "text-anchor": last ? "end" : "middle", "font-size": 11, fill: "#6b7385" });
      label.textContent = bucketLabel(bucket, granularity);
      chart.append(label);
    }
  });
  $("activity").replaceChildren(chart);
  const sum = (list, key) => list.reduce((total, b) => total + (b[key] ?? 0), 0);
  const before = timeline.previous?.buckets;
  $("activity-legend").replaceChildren(...SERIES.map(([key, name], s) => {
    const now = sum(buckets, key);
    const then = before ? sum(before, key) : null;
    return el("li", { "data-series": key },
      el("span", { class: `swatch s${s + 1}` }), `${name} ${fmt(now)}`,
      before ? delta({ absolute: now - then, relative: then === 0 ? null : (now - then) / then }) : null);
  }));
}

// The board keeps one element per lead (keyed by its id) and per column, and changes only
// what an update changes: a column's scroll position and the keyboard focus survive the
// pushes that arrive every few seconds while the agent works.
const cards = new Map();  // lead id → {item, button, name, company, off}

function cardFor(lead) {
  let card = cards.get(lead.id);
  if (!card) {
    const name = el("span", { class: "name" });
    const company = el("span", { class: "company" });
    const off = el("span", { class: "off", text: "agent off" });
    const button = el("button", { type: "button", class: "card", "data-lead": lead.id,
      onclick: () => selectLead(lead.id) }, name, company, off);
    card = { item: el("li", {}, button), button, name, company, off };
    cards.set(lead.id, card);
  }
  const name = lead.full_name ?? "—";
  if (card.name.textContent !== name) card.name.textContent = name;
  if (card.company.textContent !== (lead.company ?? "")) card.company.textContent = lead.company ?? "";
  card.off.hidden = lead.agent_enabled !== false;
  card.button.classList.toggle("selected", lead.id === selectedLead);
  return card;
}

function columnFor(step) {
  let column = $("pipeline").querySelector(`.column[data-step="${step}"]`);
  if (!column) {
    column = el("div", { class: "column", "data-step": step },
      el("h3", {}, el("span", { text: STEP_NAMES[step] ?? step }), el("span", { class: "count" })),
      el("div", { class: "times" }),
      el("ul", {}));
    $("pipeline").append(column);
    drawTimes(column);
  }
  return column;
}

// Time in step (leads.get_step_durations, not period-bound: it is how long the leads there
// now have been there), per agent on/off, and the stalled count; each count opens its leads.
const durations = new Map();  // step → its get_step_durations row

function drawDurations(rows) {
  for (const row of rows) durations.set(row.step, row);
  for (const step of durations.keys()) drawTimes(columnFor(step));
}

function drawTimes(column) {
  const row = durations.get(column.dataset.step);
  const box = column.querySelector(".times");
  if (!row) return box.replaceChildren();
  const name = STEP_NAMES[row.step] ?? row.step;
  // A small table: the leads at the step per AI agent on/off, and how long they have been there.
  const lines = [el("span", { class: "head", text: "AI" }), el("span", { class: "head", text: "leads" }),
    el("span", { class: "head", text: "median" }), el("span", { class: "head", text: "p90" })];
  for (const [key, label] of [["agent_on", "on"], ["agent_off", "off"]]) {
    lines.push(el("span", { class: "agent", text: label }),
      el("span", { "data-agent": key }, countLink(row[key].leads, row[key].filters.leads, `${name}, AI agent ${label} · now`)),
      el("span", { text: duration(row[key].median_hours) }), el("span", { text: duration(row[key].p90_hours) }));
  }
  if (row.stalled_after_hours !== null) {
    lines.push(el("span", { class: `line stalled${row.stalled > 0 ? " bad" : ""}`,
      title: `At ${name} longer than ${duration(row.stalled_after_hours)}` },
      countLink(row.stalled, row.filters.stalled, `${name}, stalled (over ${duration(row.stalled_after_hours)}) · now`),
      ` stalled > ${duration(row.stalled_after_hours)}`));
  }
  box.replaceChildren(...lines);
}

/** Puts `nodes` into `parent` in order, moving only those out of place. */
function arrange(parent, nodes) {
  let at = parent.firstChild;
  for (const node of nodes) {
    if (node === at) at = at.nextSibling;
    else parent.insertBefore(node, at);
  }
  while (at) {
    const next = at.nextSibling;
    at.remove();
    at = next;
  }
}

/** Runs `change` on a scrolled list and scrolls it back so that the card in view (the
 * focused one if it is there, else the first visible) stays where the reader saw it. */
function keepInView(list, focused, change) {
  if (list.scrollTop === 0) return change();  // at the top, new cards appear on top
  const top = list.getBoundingClientRect().top;
  const anchor = (focused && list.contains(focused) ? focused.closest("li") : null)
    ?? [...list.children].find((item) => item.getBoundingClientRect().bottom > top);
  const before = anchor?.getBoundingClientRect().top;
  change();
  if (anchor && anchor.parentNode === list) list.scrollTop += anchor.getBoundingClientRect().top - before;
}

function drawPipeline(answer) {
  const columns = Array.isArray(answer) ? answer : answer.steps;
  const changes = new Map((answer.change?.steps ?? []).map((change) => [change.step, change.count]));
  $("pipeline-title").textContent = Array.isArray(answer) ? "Pipeline" : `Pipeline · leads created ${periodName().toLowerCase()}`;
  $("pipeline-note").textContent = Array.isArray(answer) ? "" : `, among those created ${periodName().toLowerCase()}`;
  const focused = document.activeElement;
  const seen = new Set();
  const order = columns.map((column) => {
    const node = columnFor(column.step);
    const name = STEP_NAMES[column.step] ?? column.step;
    node.querySelector(".count").replaceChildren(countLink(column.count, column.filters?.count ?? { step: column.step },
      `At ${name} · ${Array.isArray(answer) ? "now" : `created ${periodName().toLowerCase()}`}`),
      ...[delta(changes.get(column.step), { compact: true })].filter(Boolean));
    const list = node.querySelector("ul");
    keepInView(list, focused, () => arrange(list, column.leads.map((lead) => {
      seen.add(lead.id);
      return cardFor(lead).item;
    })));
    return node;
  });
  arrange($("pipeline"), order);
  for (const id of [...cards.keys()]) if (!seen.has(id)) cards.delete(id);
  // A card moved to another column was taken out of the document for a moment.
  if (focused && focused !== document.activeElement && focused.isConnected) focused.focus({ preventScroll: true });
}

function drawMeetings(meetings) {
  const list = $("meetings");
  if (meetings.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "No meetings today." }));
    return;
  }
  list.replaceChildren(...meetings.map((meeting) => el("li", {},
    el("span", { class: "time", text: `${time(meeting.start_time)}–${time(meeting.end_time)}` }),
    el("span", { class: "what" }, meeting.subject, el("br"),
      el("span", { class: "status", text: `${meeting.attendee_email} · ${meeting.status}` })))));
}

function drawAgent(performance) {
  const now = performance.current, before = performance.previous;
  $("agent-title").textContent = performance.period
    ? `Agent performance · ${periodName()} vs previous` : "Agent performance, 7 days";
  const rows = [
    ["Conversations handled", "conversations_handled"], ["Agent messages", "agent_messages"],
    ["Leads advanced", "leads_advanced"], ["Meetings booked", "meetings_booked"], ["Hand-offs", "handoffs"],
  ];
  const items = [];
  for (const [name, key] of rows) {
    const change = performance.change?.[key]
      ?? { absolute: now[key] - before[key], relative: before[key] === 0 ? null : (now[key] - before[key]) / before[key] };
    items.push(el("dt", { text: name }), el("dd", { "data-figure": key }, fmt(now[key]), delta(change)));
  }
  const first = now.first_response_seconds;
  items.push(el("dt", { text: "First reply, median" }),
    el("dd", { text: first.median === null ? "–" : `${first.median.toFixed(1)} s` }));
  items.push(el("dt", { text: "Completion rate" }), el("dd", {}, pct(now.completion_rate),
    delta(performance.change?.completion_rate, { percent: true })));
  $("agent").replaceChildren(...items);
}

/** Human take-over (dashboard.get_human_takeover) for the same window as the agent's figures. */
function drawTakeover(report) {
  const now = report;  // the figures are the answer's own; `previous` and `change` beside them
  $("takeover-title").textContent = report.period
    ? `Human take-over · ${periodName()} vs previous` : `Human take-over, ${report.days ?? 7} days`;
  const seconds = (value) => (value === null || value === undefined ? "–"
    : value < 90 ? `${value.toFixed(0)} s` : duration(value / 3600));
  const rows = [["Hand-offs to a person", "handoffs"], ["Answered by a person", "answered"],
    ["Unanswered now", "unanswered_now"], ["Switched back to the agent", "switched_back"],
    ["Conversations a person wrote in", "conversations_human_wrote"]];
  const items = [];
  for (const [name, key] of rows) {
    items.push(el("dt", { text: name }), el("dd", { "data-figure": key }, fmt(now[key]), delta(report.change?.[key])));
  }
  const first = now.first_human_message_seconds;
  items.push(el("dt", { text: "First human reply, median" }),
    el("dd", { "data-figure": "first_median" }, seconds(first.median)),
    el("dt", { text: "First human reply, p90" }), el("dd", { "data-figure": "first_p90" }, seconds(first.p90)));
  $("takeover").replaceChildren(...items);
}

function drawAbandoned(leads) {
  $("abandoned").replaceChildren(...(leads.length === 0 ? [el("li", { class: "muted", text: "None: every lead moved this week." })]
    : leads.map((lead) => leadRow(lead, lead.user?.company ?? "", `${fmt(lead.days_inactive)} days quiet`))));
}

/** A lead in a list: name and step, `detail` under the name, `note` under the step; a click
 * opens its drawer. */
function leadRow(lead, detail, note) {
  return el("li", {}, el("button", { type: "button", class: "row", "data-lead": lead.id, onclick: () => selectLead(lead.id) },
    el("span", { class: "name", text: lead.user?.full_name ?? "—" }),
    el("span", { class: "step", text: STEP_NAMES[lead.current_step] ?? lead.current_step }),
    el("span", { class: "company", text: detail }),
    el("span", { class: "created", text: note })));
}

// -- exports -----------------------------------------------------------------------------
// A list as CSV: the export's chunks come over the socket (client.exportCsv assembles
// them) and the file is handed to the browser as a download. With a byte-order mark, which
// spreadsheet programs need to read UTF-8.

async function exportList(button, list, payload) {
  if (button.disabled) return;
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Exporting…";
  try {
    const result = await client.exportCsv(list, { ...payload, bom: true });
    const url = URL.createObjectURL(new Blob([result.csv], { type: result.content_type }));
    const link = el("a", { href: url, download: result.filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    toast(`Exported ${fmt(result.rows)} row${result.rows === 1 ? "" : "s"} to ${result.filename}`);
  } catch (error) {
    toast(`Export: ${error.code} — ${error.message}`);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

// -- the lead drawer ---------------------------------------------------------------------

function stopHistory() {
  if (agentHistory.stop) agentHistory.stop();
  Object.assign(agentHistory, { conversation: null, stop: null, switches: null, lead: null });
}

/** Follows the switches of the open lead's conversation; each answer redraws the drawer. */
function followHistory(lead) {
  agentHistory.lead = lead;
  const conversation = lead.conversation?.id ?? null;
  if (conversation === agentHistory.conversation) return;
  if (agentHistory.stop) agentHistory.stop();
  Object.assign(agentHistory, { conversation, stop: null, switches: null });
  if (conversation === null) return;
  agentHistory.stop = client.subscribe("conversations", "get_agent_history", { conversation_id: conversation }, (switches) => {
    if (agentHistory.conversation !== conversation) return;
    agentHistory.switches = switches;
    if (agentHistory.lead) drawLead(agentHistory.lead);
  }, panel("lead", "Agent switches"));
}

function historySection() {
  if (agentHistory.switches === null) return [];
  return [el("h4", { text: `Agent switches (${agentHistory.switches.length})` }),
    items([...agentHistory.switches].reverse(), "Never switched.", (change) => el("li", { class: "trail" },
      el("strong", { text: when(change.at) }),
      ` ${change.enabled ? "on" : "off"} by ${change.actor}${change.actor_role ? ` (${change.actor_role})` : ""}`,
      change.reason ? el("span", { class: "muted", text: ` — ${change.reason}` }) : null))];
}

function selectLead(leadId) {
  if (leadId !== selectedLead) stopHistory();
  selectedLead = leadId;
  for (const [id, card] of cards) card.button.classList.toggle("selected", id === leadId);
  if (leadSub) leadSub();
  markStale("lead", false, null);
  $("lead").replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  $("drawer").hidden = false;
  $("drawer-close").focus({ preventScroll: true });
  leadSub = client.subscribe("leads", "get_lead_with_complete_data", { lead_id: leadId }, drawLead, {
    ...panel("lead", "Lead"),
    onError: (error) => {
      if (error.code === "not_found") $("lead").replaceChildren(el("p", { class: "muted", text: "That lead is gone." }));
      else toast(`Lead: ${error.code} — ${error.message}`);
    },
  });
}

function closeDrawer() {
  if (leadSub) leadSub();
  leadSub = null;
  stopHistory();
  const reopen = selectedLead === null ? null
    : (!$("drill").hidden ? $("drill-rows").querySelector(`[data-lead="${selectedLead}"]`) : null)
      ?? cards.get(selectedLead)?.button;
  selectedLead = null;
  for (const card of cards.values()) card.button.classList.remove("selected");
  $("drawer").hidden = true;
  if (reopen && reopen.isConnected) reopen.focus({ preventScroll: true });
}

function pairs(rows) {
  return el("dl", {}, ...rows.flatMap(([name, value, id]) => [
    el("dt", { text: name }), el("dd", { text: value ?? "–", ...(id ? { id } : {}) })]));
}

function items(list, empty, line) {
  return list.length === 0 ? el("p", { class: "muted", text: empty }) : el("ul", { class: "items" }, ...list.map(line));
}

function agentControl(conversation) {
  if (!conversation) return el("p", { class: "muted", text: "No conversation yet." });
  const admin = client.caller?.role === "admin";
  const box = el("input", { type: "checkbox", id: "agent-switch" });
  box.checked = conversation.agent_enabled;
  box.disabled = !admin;
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      await client.request("conversations", "update_agent_status",
        { conversation_id: conversation.id, enabled: box.checked });
    } catch (error) {
      box.checked = !box.checked;
      toast(`Agent switch: ${error.code} — ${error.message}`);
    } finally {
      box.disabled = false;
    }
  });
  return el("label", { class: "switch", for: "agent-switch" }, box,
    el("span", { text: admin ? "AI agent answers this lead" : "AI agent answers this lead (admins can switch it)" }));
}

/** Who did what to the lead through wsd (its latest 50 trail entries, newest first); an
 * admin's read: a viewer's document has `trail: null` and the section is left out. */
function trailSection(lead) {
  if (!Array.isArray(lead.trail)) return [];
  const head = el("div", { class: "section-head" }, el("h4", { text: `Trail (${lead.trail.length})` }),
    el("button", { type: "button", class: "export", id: "trail-export",
      onclick: (event) => exportList(event.currentTarget, "trail", { lead_id: lead.id }) }, "Export"));
  const what = (entry) => Object.entries(entry.payload ?? {})
    .filter(([key]) => !key.endsWith("_id"))
    .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`).join(", ");
  return [head, items(lead.trail, "Nothing done through wsd yet.", (entry) => el("li", { class: "trail" },
    el("strong", { text: when(entry.at) }), ` ${entry.actor_name ?? entry.actor} (${entry.actor_role}) · ${entry.resource}.${entry.action}`,
    what(entry) ? el("span", { class: "muted", text: ` · ${what(entry)}` }) : null,
    // The usual outcomes go unsaid; an export's row count or a failure is written.
    !["done", "committed"].includes(entry.outcome) ? el("span", { class: "muted", text: ` · ${entry.outcome}` }) : null))];
}

function drawLead(lead) {
  if (lead.id !== selectedLead) return;
  followHistory(lead);
  const user = lead.user ?? {};
  const bant = lead.bant_data;
  const needs = lead.requirements;
  const conversation = lead.conversation;
  const describe = (item) => el("li", {}, el("strong", { text: item.name }),
    item.description ? ` — ${item.description}` : "");
  const scrolled = $("drawer").scrollTop;
  $("lead").replaceChildren(el("div", { class: "lead" },
    el("h3", { id: "lead-name", text: user.full_name ?? "—" }),
    el("p", { class: "muted", text: [user.company, STEP_NAMES[lead.current_step] ?? lead.current_step].filter(Boolean).join(" · ") }),
    agentControl(conversation),
    el("h4", { text: "Contact" }),
    pairs([["Step", STEP_NAMES[lead.current_step] ?? lead.current_step, "lead-step"], ["Company", user.company],
      ["Email", user.email], ["Phone", user.phone], ["Consent", lead.consent ? "given" : "not yet"],
      ["Created", when(lead.created_at)],
      ["Messages", conversation ? `${fmt(conversation.message_count)} · last ${when(conversation.last_message_at)}` : null]]),
    el("h4", { text: "BANT" }),
    bant ? pairs([["Budget", bant.budget], ["Authority", bant.authority], ["Need", bant.need], ["Timeline", bant.timeline]])
      : el("p", { class: "muted", text: "Not qualified yet." }),
    el("h4", { text: "Requirements" }),
    needs ? el("div", { id: "lead-requirements" },
      pairs([["App", needs.app_type], ["Deadline", needs.deadline]]),
      el("h5", { text: `Features (${needs.features.length})` }), items(needs.features, "None yet.", describe),
      el("h5", { text: `Integrations (${needs.integrations.length})` }), items(needs.integrations, "None yet.", describe))
      : el("p", { class: "muted", text: "None yet." }),
    el("h4", { text: `Meetings (${lead.meetings.length}) · ${ZONE} time` }),
    items(lead.meetings, "None.", (meeting) => el("li", {},
      el("strong", { text: `${when(meeting.start_time)}–${time(meeting.end_time)}` }),
      ` ${meeting.subject} · ${meeting.status}`)),
    el("h4", { text: "Step history" }),
    items(lead.step_history, "No steps yet.", (change) => el("li", {},
      el("strong", { text: when(change.changed_at) }),
      ` ${change.from_step ? `${STEP_NAMES[change.from_step] ?? change.from_step} → ` : ""}` +
      `${STEP_NAMES[change.to_step] ?? change.to_step} (${change.source})`)),
    ...historySection(),
    ...trailSection(lead)));
  $("drawer").scrollTop = scrolled;  // a live update does not send the reader back to the top
}

// -- the leads behind a count -------------------------------------------------------------
// A live subscription to one page of get_all_leads with the count's filter (plus the search
// typed here): `total` is the count, and both move when a write changes them.

let drill = null;  // {title, filter, cursors: [cursor of each page up to this one], stop}

function openDrill(title, filter) {
  closeDrill();
  drill = { title, filter, cursors: [null], stop: null };
  $("drill-title").textContent = title;
  $("drill-what").textContent = describeFilter(filter);
  $("drill-search").value = "";
  $("drill-rows").replaceChildren(el("li", { class: "muted", text: "Loading…" }));
  $("drill-total").textContent = "";
  $("drill-page").textContent = "";
  $("drill").hidden = false;
  subscribeDrill();
  $("drill-search").focus({ preventScroll: true });
}

function closeDrill() {
  if (drill?.stop) drill.stop();
  drill = null;
  $("drill").hidden = true;
  markStale("drill", false, null);
}

function drillFilter() {
  const search = $("drill-search").value.trim();
  return search ? { ...drill.filter, search } : drill.filter;
}

function subscribeDrill() {
  if (drill.stop) drill.stop();
  const cursor = drill.cursors.at(-1);
  const payload = { filter: drillFilter(), limit: DRILL_PAGE, ...(cursor ? { cursor } : {}) };
  $("drill").classList.add("loading");
  const mine = drill;
  drill.stop = client.subscribe("leads", "get_all_leads", payload, (rows, meta) => {
    if (drill === mine) drawDrill(rows, meta);
  }, panel("drill", "Leads"));
}

/** What the filter asks, in words (the title says which count it came from). */
function describeFilter(filter) {
  const step = (name) => STEP_NAMES[name] ?? name;
  const days = (range) => (range.from === range.to ? shortDay(range.from) : `${shortDay(range.from)} – ${shortDay(range.to)}`);
  const parts = [];
  if (filter.step) parts.push(`at ${step(filter.step)} now`);
  if (filter.reached) parts.push(`reached ${step(filter.reached)} or further`);
  if (filter.created) parts.push(`created ${days(filter.created)}`);
  if (filter.entered) parts.push(`entered ${step(filter.entered.step)} ${days(filter.entered)}`);
  if (filter.agent) parts.push(`AI agent ${filter.agent}`);
  if (filter.stalled !== undefined && filter.stalled !== null) parts.push(filter.stalled ? "stalled" : "not stalled");
  if (filter.meeting) parts.push(`a ${filter.meeting} meeting`);
  if (filter.wants_feature) parts.push(`wants the feature ${filter.wants_feature}`);
  if (filter.wants_integration) parts.push(`wants the integration ${filter.wants_integration}`);
  if (filter.wanted) parts.push(`asked for ${days(filter.wanted)}`);
  return parts.length ? `Leads ${parts.join(", ")} (${ZONE} days).` : "Every lead.";
}

function drawDrill(rows, meta) {
  $("drill").classList.remove("loading");
  const first = (drill.cursors.length - 1) * DRILL_PAGE;
  $("drill-total").textContent = `${fmt(meta.total)} lead${meta.total === 1 ? "" : "s"}`;
  $("drill-page").textContent = rows.length ? `${fmt(first + 1)}–${fmt(first + rows.length)} of ${fmt(meta.total)}` : "";
  $("drill-prev").disabled = drill.cursors.length === 1;
  $("drill-next").disabled = !meta.next_cursor;
  drill.next = meta.next_cursor;
  const scrolled = $("drill").scrollTop;
  $("drill-rows").replaceChildren(...(rows.length === 0
    ? [el("li", { class: "muted", text: drill.cursors.length > 1 ? "No more leads on this page." : "No leads." })]
    : rows.map((lead) => leadRow(lead, [lead.user?.company, lead.user?.email].filter(Boolean).join(" · "),
      `created ${when(lead.created_at)}${lead.agent_enabled === false ? " · agent off" : ""}`))));
  $("drill").scrollTop = scrolled;
}

// -- start -----------------------------------------------------------------------------

$("zone").textContent = `· ${ZONE} time`;
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  $("login-error").hidden = true;
  start({ token });
});
$("logout").addEventListener("click", () => signOut());
$("drawer-close").addEventListener("click", closeDrawer);
$("drill-close").addEventListener("click", closeDrill);
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  if (!$("drawer").hidden) closeDrawer();
  else if (!$("drill").hidden) closeDrill();
});
$("drill-search").addEventListener("input", () => {
  clearTimeout(subscribeDrill.timer);
  subscribeDrill.timer = setTimeout(() => {
    if (!drill) return;
    drill.cursors = [null];
    subscribeDrill();
  }, 250);
});
$("drill-next").addEventListener("click", () => {
  if (!drill?.next) return;
  drill.cursors.push(drill.next);
  subscribeDrill();
  $("drill").scrollTop = 0;
});
$("drill-prev").addEventListener("click", () => {
  if (!drill || drill.cursors.length === 1) return;
  drill.cursors.pop();
  subscribeDrill();
  $("drill").scrollTop = 0;
});
$("stat-leads").addEventListener("click", () => openDrill("All leads · now", {}));
$("drill-export").addEventListener("click", () => exportList($("drill-export"), "leads", { filter: drillFilter() }));
$("meetings-export").addEventListener("click", () => exportList($("meetings-export"), "meetings", { filter: "today" }));
$("abandoned-export").addEventListener("click", () => exportList($("abandoned-export"), "abandoned_leads",
  { days: ABANDONED_DAYS }));

$("period").addEventListener("change", () => {
  const value = $("period").value;
  if (value === "custom") {  // the range applies with its button, once both days are set
    $("custom-range").hidden = false;
    const span = typeof view.period === "object" && view.period ? view.period : null;
    if (!$("period-from").value) $("period-from").value = span?.from ?? "";
    if (!$("period-to").value) $("period-to").value = span?.to ?? "";
    $("period-from").focus();
    return;
  }
  view.period = value || null;
  applyView();
});
$("period-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const from = $("period-from"), to = $("period-to");
  const days = (Date.parse(to.value) - Date.parse(from.value)) / 86_400_000 + 1;
  to.setCustomValidity(!from.value || !to.value ? "" : days < 1 ? "The end is before the start."
    : days > 366 ? "A period is at most 366 days." : "");
  if (!from.reportValidity() || !to.reportValidity() || !from.value || !to.value) return;
  view.period = { from: from.value, to: to.value };
  applyView();
});
for (const input of [$("period-from"), $("period-to")]) input.addEventListener("input", () => $("period-to").setCustomValidity(""));
$("granularity").addEventListener("change", () => {
  view.granularity = $("granularity").value || null;
  applyView(["activity"]);
});
for (const button of $("funnel-mode").querySelectorAll("button")) {
  button.addEventListener("click", () => {
    view.mode = button.dataset.mode;
    applyView(["funnel"]);
  });
}
window.addEventListener("popstate", () => {
  Object.assign(view, readView());
  showView();
  if (client) subscribePeriod();
});
showView();

// Back from the provider's sign-in page, signed in in this tab before, an API token kept,
// or the sign-in form.
oidc.finishSignIn().then((session) => {
  if (session) {  // the URL is the view's again (it carried the provider's code)
    Object.assign(view, readView());
    showView();
  }
  const person = session ?? oidc.current();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (person) start({ idToken: person.id_token }); else if (saved) start({ token: saved }); else showLogin();
}, (error) => showLogin(`Sign-in failed: ${error.message}`));
