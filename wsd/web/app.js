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
const time = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

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
}

function showLogin(message) {
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("token").focus();
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
    sessionStorage.removeItem(TOKEN_KEY);
    const reason = error.code === "unauthorized"
      ? "This token was refused. Check it and try again."
      : error.code === "rate_limited" ? "Too many failed attempts from here; wait a minute."
      : `Could not sign in: ${error.message}`;
    showLogin(`${reason} (${error.code}: ${error.message})`);
  }
}

function refused(panel) {
  return { onError: (error) => toast(`${panel}: ${error.code} — ${error.message}`) };
}

function subscribeAll() {
  client.subscribe("dashboard", "get_dashboard_stats", {}, drawStats, refused("Stats"));
  client.subscribe("dashboard", "get_conversion_funnel", {}, drawFunnel, refused("Funnel"));
  client.subscribe("dashboard", "get_activity_timeline", {}, drawActivity, refused("Activity"));
  client.subscribe("leads", "get_lead_pipeline", {}, drawPipeline, refused("Pipeline"));
  client.subscribe("meetings", "get_all_meetings", { filter: "today" }, drawMeetings, refused("Meetings"));
  client.subscribe("dashboard", "get_agent_performance", { days: 7 }, drawAgent, refused("Agent"));
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
  const height = width < 500 ? 180 : 220, left = 34, bottom = 22, top = 8;
  const totals = buckets.map((b) => SERIES.reduce((sum, [key]) => sum + (b[key] ?? 0), 0));
  const max = Math.max(4, ...totals);
  const step = (width - left) / buckets.length;
  const scale = (v) => ((height - bottom - top) * v) / max;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Activity per hour; ${totals.reduce((a, b) => a + b, 0)} events in 24 hours` });
  for (const frac of [0, 0.5, 1]) {
    const y = height - bottom - (height - bottom - top) * frac;
    chart.append(svg("line", { x1: left, x2: width, y1: y, y2: y, stroke: "#e2e6ee" }));
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#6b7385" });
    label.textContent = String(Math.round(max * frac));
    chart.append(label);
  }
  buckets.forEach((bucket, i) => {
    let y = height - bottom;
    SERIES.forEach(([key], s) => {
      const h = scale(bucket[key] ?? 0);
      if (h > 0) {
        chart.append(svg("rect", { x: left + i * step + 2, y: y - h, width: Math.max(1, step - 4), height: h,
          fill: `var(--c${s + 1})` }));
        y -= h;
      }
    });
    if (i % (width < 500 ? 6 : 3) === 0 || i === buckets.length - 1) {
      const label = svg("text", { x: left + i * step + step / 2, y: height - 6, "text-anchor": "middle",
        "font-size": 11, fill: "#6b7385" });
      label.textContent = `${new Date(bucket.hour).getHours()}h`;
      chart.append(label);
    }
  });
  $("activity").replaceChildren(chart);
  $("activity-legend").replaceChildren(...SERIES.map(([key, name], s) => el("li", {},
    el("span", { class: `swatch s${s + 1}` }),
    `${name} ${fmt(buckets.reduce((sum, b) => sum + (b[key] ?? 0), 0))}`)));
}

function drawPipeline(columns) {
  $("pipeline").replaceChildren(...columns.map((column) => el("div", { class: "column", "data-step": column.step },
    el("h3", {}, el("span", { text: STEP_NAMES[column.step] ?? column.step }),
      el("span", { class: "count", text: fmt(column.count) })),
    el("ul", {}, ...column.leads.map((lead) => el("li", {},
      el("button", { type: "button", class: `card${lead.id === selectedLead ? " selected" : ""}`,
        "data-lead": lead.id, onclick: () => selectLead(lead.id) },
        el("span", { class: "name", text: lead.full_name ?? "—" }),
        el("span", { class: "company", text: lead.company ?? "" }),
        lead.agent_enabled === false ? el("span", { class: "off", text: "agent off" }) : null)))))));
  if (selectedLead === null) {
    const first = columns.find((column) => column.leads.length > 0);
    if (first) selectLead(first.leads[0].id);
  }
}

function drawMeetings(meetings) {
  const list = $("meetings");
  if (meetings.length === 0) {
    list.replaceChildren(el("li", { class: "muted", text: "No meetings today." }));
    return;
  }
  list.replaceChildren(...meetings.map((meeting) => el("li", {},
    el("span", { class: "time", text: `${time(meeting.start_time)}–${time(meeting.end_time)}` }),
    el("span", {}, meeting.subject, el("br"),
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

function selectLead(leadId) {
  selectedLead = leadId;
  for (const card of document.querySelectorAll(".card")) card.classList.toggle("selected", card.dataset.lead === leadId);
  if (leadSub) leadSub();
  leadSub = client.subscribe("leads", "get_lead_with_complete_data", { lead_id: leadId }, drawLead, {
    onError: (error) => {
      if (error.code === "not_found") { selectedLead = null; $("lead").replaceChildren(el("p", { class: "muted", text: "That lead is gone." })); }
      else toast(`Lead: ${error.code} — ${error.message}`);
    },
  });
}

function drawLead(lead) {
  if (lead.id !== selectedLead) return;
  const user = lead.user ?? {};
  const details = el("dl", {},
    el("dt", { text: "Step" }), el("dd", { id: "lead-step", text: STEP_NAMES[lead.current_step] ?? lead.current_step }),
    el("dt", { text: "Company" }), el("dd", { text: user.company ?? "–" }),
    el("dt", { text: "Email" }), el("dd", { text: user.email ?? "–" }),
    el("dt", { text: "Phone" }), el("dd", { text: user.phone ?? "–" }),
    el("dt", { text: "Budget" }), el("dd", { text: lead.bant_data?.budget ?? "–" }),
    el("dt", { text: "App" }), el("dd", { text: lead.requirements?.app_type ?? "–" }),
    el("dt", { text: "Meetings" }), el("dd", { text: String(lead.meetings?.length ?? 0) }));
  const conversation = lead.conversation;
  let control;
  if (!conversation) {
    control = el("p", { class: "muted", text: "No conversation yet." });
  } else {
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
    control = el("label", { class: "switch", for: "agent-switch" }, box,
      el("span", { text: admin ? "AI agent answers this lead" : "AI agent answers this lead (admins can switch it)" }));
  }
  $("lead").replaceChildren(el("div", { class: "lead" },
    el("h3", { id: "lead-name", text: user.full_name ?? "—" }), details, control));
}

// -- start -----------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  $("login-error").hidden = true;
  start(token);
});
$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (client) client.close();
  client = null;
  selectedLead = null;
  showLogin();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved); else showLogin();
