// The live dashboard: every panel is a wsd live subscription (wsd-client.js), so numbers
// move as the data changes, without polling or reloading. DOM is built with textContent
// only (no innerHTML with data): names in leads come from strangers.
import { WsdClient } from "/client/wsd-client.js";

const TOKEN_KEY = "wsd-token";  // sessionStorage: this tab only, never the URL
const STEPS = ["start", "consent", "personal_data", "bant", "requirements", "meeting", "completed"];
const STEP_NAMES = { start: "Start", consent: "Consent", personal_data: "Personal data", bant: "BANT",
  requirements: "Requirements", meeting: "Meeting", completed: "Completed" };
const SERIES = [["messages", "Messages"], ["new_leads", "New leads"], ["step_changes", "Step changes"],
  ["meetings_created", "Meetings"], ["agent_toggles", "Agent switches"]];

const $ = (id) => document.getElementById(id);
let client = null;
let leadSub = null;
let selectedLead = null;

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
    // Revoked (SIGHUP) or refused on a reconnect: nothing on screen may outlive the token.
    signOut(`Your token is no longer accepted (${info.error?.code ?? "unauthorized"}: ` +
      `${info.error?.message ?? "refused"}). Sign in again.`);
  }
}

function showLogin(message) {
  $("dashboard").hidden = true;
  closeDrawer();
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("token").focus();
}

/** Back to the sign-in form with every figure and name of the last session cleared. */
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  const old = client;
  client = null;
  if (old) old.close();
  leadSub = null;
  selectedLead = null;
  clearPanels();
  showLogin(message);
}

async function start(token) {
  if (client) client.close();
  client = new WsdClient({ url: endpoint(), token, onState: showState });
  try {
    const caller = await client.connect();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = `${caller.name} · ${caller.role}`;
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
  client.subscribe("dashboard", "get_dashboard_stats", {}, drawStats, panel("stats", "Stats"));
  client.subscribe("dashboard", "get_conversion_funnel", {}, drawFunnel, panel("funnel", "Funnel"));
  client.subscribe("dashboard", "get_activity_timeline", {}, drawActivity, panel("activity", "Activity"));
  client.subscribe("leads", "get_lead_pipeline", {}, drawPipeline, panel("pipeline", "Pipeline"));
  client.subscribe("meetings", "get_all_meetings", { filter: "today" }, drawMeetings, panel("meetings", "Meetings"));
  client.subscribe("dashboard", "get_agent_performance", { days: 7 }, drawAgent, panel("agent", "Agent"));
}

function clearPanels() {
  for (const id of ["stat-users", "stat-conversations", "stat-meetings", "stat-leads"]) $(id).textContent = "–";
  for (const id of ["funnel", "activity", "activity-legend", "pipeline", "meetings", "agent", "lead"]) $(id).replaceChildren();
  cards.clear();
  for (const section of document.querySelectorAll("[data-panel]")) markStale(section.dataset.panel, false, null);
}

// -- panels ----------------------------------------------------------------------------

function drawStats(stats) {
  $("stat-users").textContent = fmt(stats.total_users);
  $("stat-conversations").textContent = fmt(stats.active_conversations);
  $("stat-meetings").textContent = fmt(stats.meetings_today);
  $("stat-leads").textContent = fmt(Object.values(stats.leads_by_step).reduce((a, b) => a + b, 0));
}

function drawFunnel(rows) {
  const top = Math.max(1, ...rows.map((row) => row.reached));
  $("funnel").replaceChildren(...rows.map((row) => {
    const fill = el("div", { class: "fill" });
    fill.style.width = `${(row.reached / top) * 100}%`;  // CSSOM, allowed by the CSP
    return el("li", { "data-step": row.step },
      el("span", { text: STEP_NAMES[row.step] ?? row.step }),
      el("div", { class: "bar", title: `${pct(row.rate_from_previous)} of the previous step` }, fill),
      el("span", { class: "num", text: `${fmt(row.reached)} · ${pct(row.rate_from_start)}` }));
  }));
}

function drawActivity(timeline) {
  const buckets = timeline.buckets;
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
    "aria-label": `Activity per hour (${ZONE}); ${totals.reduce((a, b) => a + b, 0)} events in 24 hours` });
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
    if (i % (width < 500 ? 6 : 3) === 0 || i === buckets.length - 1) {
      const last = i === buckets.length - 1;  // anchored at its end so it is never cut off
      const label = svg("text", { x: last ? width - 1 : left + i * step + step / 2, y: height - 6,
        "text-anchor": last ? "end" : "middle", "font-size": 11, fill: "#6b7385" });
      label.textContent = `${hourOf.format(new Date(bucket.hour))}h`;
      chart.append(label);
    }
  });
  $("activity").replaceChildren(chart);
  $("activity-legend").replaceChildren(...SERIES.map(([key, name], s) => el("li", {},
    el("span", { class: `swatch s${s + 1}` }),
    `${name} ${fmt(buckets.reduce((sum, b) => sum + (b[key] ?? 0), 0))}`)));
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
      el("ul", {}));
    $("pipeline").append(column);
  }
  return column;
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

function drawPipeline(columns) {
  const focused = document.activeElement;
  const seen = new Set();
  const order = columns.map((column) => {
    const node = columnFor(column.step);
    node.querySelector(".count").textContent = fmt(column.count);
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
  const rows = [
    ["Conversations handled", "conversations_handled"], ["Agent messages", "agent_messages"],
    ["Leads advanced", "leads_advanced"], ["Meetings booked", "meetings_booked"], ["Hand-offs", "handoffs"],
  ];
  const items = [];
  for (const [name, key] of rows) {
    const delta = now[key] - before[key];
    items.push(el("dt", { text: name }), el("dd", {}, fmt(now[key]),
      el("span", { class: `delta ${delta > 0 ? "up" : delta < 0 ? "down" : "muted"}`,
        text: delta === 0 ? "=" : `${delta > 0 ? "+" : ""}${delta}` })));
  }
  const first = now.first_response_seconds;
  items.push(el("dt", { text: "First reply, median" }),
    el("dd", { text: first.median === null ? "–" : `${first.median.toFixed(1)} s` }));
  items.push(el("dt", { text: "Completion rate" }), el("dd", { text: pct(now.completion_rate) }));
  $("agent").replaceChildren(...items);
}

// -- the lead drawer ---------------------------------------------------------------------

function selectLead(leadId) {
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
  const reopen = selectedLead !== null ? cards.get(selectedLead)?.button : null;
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

function drawLead(lead) {
  if (lead.id !== selectedLead) return;
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
      `${STEP_NAMES[change.to_step] ?? change.to_step} (${change.source})`))));
  $("drawer").scrollTop = scrolled;  // a live update does not send the reader back to the top
}

// -- start -----------------------------------------------------------------------------

$("zone").textContent = `· ${ZONE} time`;
$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  $("login-error").hidden = true;
  start(token);
});
$("logout").addEventListener("click", () => signOut());
$("drawer-close").addEventListener("click", closeDrawer);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("drawer").hidden) closeDrawer();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved); else showLogin();
