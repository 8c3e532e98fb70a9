// Live view of the gateway: polls /ui/data and draws inline SVG charts. No dependencies.
// With API keys, open /ui#key=<admin key>: the key stays in this tab (sessionStorage) and is sent as a
// bearer token; it is never put in a URL that reaches the server.
"use strict";

const PALETTE = ["#2f6fe4", "#e4572e", "#29a36a", "#9b59b6", "#f0a202", "#17a2b8", "#e83e8c", "#6c757d",
  "#8c564b", "#7f9c1c"];
const SVGNS = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;
const colors = new Map();

function apiKey() {
  const m = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("rgKey", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("rgKey");
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: "Bearer " + key } : {};
}

function colorOf(expert) {
  if (expert === "(none)") return "#b0b6c3";  // requests no expert answered
  if (!colors.has(expert)) colors.set(expert, PALETTE[colors.size % PALETTE.length]);
  return colors.get(expert);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

const fmtMs = (v) => (v == null ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms");
const fmtUsd = (v) => (v == null ? "–" : v === 0 ? "$0" : v < 0.01 ? "$" + v.toPrecision(2) : "$" + v.toFixed(2));
const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const fmtHM = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// Draw in the element's own pixel size, so text and strokes are not stretched.
function size(node) {
  const w = Math.max(200, Math.round(node.clientWidth || 400));
  const h = Math.max(120, Math.round(node.clientHeight || 200));
  node.setAttribute("viewBox", `0 0 ${w} ${h}`);
  return [w, h];
}

// Axes and horizontal grid lines; returns the plot area.
function frame(node, w, h, yMax, yFmt) {
  node.replaceChildren();
  const area = { x0: 44, x1: w - 8, y0: 8, y1: h - 20 };
  for (let i = 0; i <= 4; i++) {
    const y = area.y1 - (i / 4) * (area.y1 - area.y0);
    node.append(svg("line", { x1: area.x0, x2: area.x1, y1: y, y2: y, stroke: "#eef0f4" }));
    node.append(svg("text", { x: area.x0 - 4, y: y + 3, "text-anchor": "end" }, yFmt((i / 4) * yMax)));
  }
  return area;
}

function emptyChart(node, w, h, text) {
  node.replaceChildren(svg("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, text));
}

function minuteSeries(data) {
  // one slot per minute over the window, so gaps show as zero traffic
  const slots = [];
  if (!data.minutes.length) return slots;
  const byT = new Map(data.minutes.map((m) => [m.t, m]));
  const last = Math.floor(data.now / 60) * 60;
  const first = Math.max(data.minutes[0].t, last - 59 * 60);
  for (let t = first; t <= last; t += 60) slots.push(byT.get(t) || { t, count: 0, by_expert: {} });
  return slots;
}

function drawShare(data) {
  const node = document.getElementById("chart-share");
  const [w, h] = size(node);
  const slots = minuteSeries(data);
  const experts = data.experts_seen;
  const legend = document.getElementById("legend");
  legend.replaceChildren(...experts.map((e) => el("span", { class: "key" },
    el("i", { style: "background:" + colorOf(e) }), e === "(none)" ? "no expert (error)" : e)));
  if (!slots.length) return emptyChart(node, w, h, "no traffic yet");
  const a = frame(node, w, h, 100, (v) => Math.round(v) + "%");
  const n = slots.length;
  const x = (i) => (n === 1 ? (a.x0 + a.x1) / 2 : a.x0 + (i / (n - 1)) * (a.x1 - a.x0));
  const y = (share) => a.y1 - share * (a.y1 - a.y0);
  const base = new Array(n).fill(0);
  for (const e of experts) {
    const top = slots.map((s, i) => base[i] + (s.count ? (s.by_expert[e] || 0) / s.count : 0));
    if (n === 1) {
      node.append(svg("rect", { x: x(0) - 20, width: 40, y: y(top[0]), height: y(base[0]) - y(top[0]),
        fill: colorOf(e), opacity: 0.85 }, null));
    } else {
      const upper = top.map((v, i) => `${x(i)},${y(v)}`);
      const lower = base.map((v, i) => `${x(i)},${y(v)}`).reverse();
      node.append(svg("polygon", { points: upper.concat(lower).join(" "), fill: colorOf(e), opacity: 0.85 }));
    }
    top.forEach((v, i) => { base[i] = v; });
  }
  const step = Math.max(1, Math.ceil(n / 8));
  slots.forEach((s, i) => {
    if (i % step === 0 || i === n - 1) node.append(svg("text", { x: x(i), y: h - 6, "text-anchor": "middle" }, fmtHM(s.t)));
  });
}

function drawLatency(data) {
  const node = document.getElementById("chart-latency");
  const [w, h] = size(node);
  const pts = data.minutes.filter((m) => m.p50 != null).slice(-60);
  if (!pts.length) return emptyChart(node, w, h, "no latency samples yet");
  const yMax = niceMax(Math.max(...pts.map((m) => m.p99)));
  const a = frame(node, w, h, yMax, (v) => (yMax >= 1000 ? (v / 1000).toFixed(1) + "s" : Math.round(v)));
  const n = pts.length;
  const x = (i) => (n === 1 ? (a.x0 + a.x1) / 2 : a.x0 + (i / (n - 1)) * (a.x1 - a.x0));
  const y = (v) => a.y1 - (v / yMax) * (a.y1 - a.y0);
  for (const [q, color] of [["p50", "var(--p50)"], ["p95", "var(--p95)"], ["p99", "var(--p99)"]]) {
    if (n > 1) node.append(svg("polyline", { points: pts.map((m, i) => `${x(i)},${y(m[q])}`).join(" "),
      fill: "none", stroke: color, "stroke-width": 2 }));
    pts.forEach((m, i) => node.append(svg("circle", { cx: x(i), cy: y(m[q]), r: 2.5, fill: color })));
  }
  node.append(svg("text", { x: a.x0, y: h - 6 }, fmtHM(pts[0].t)));
  node.append(svg("text", { x: a.x1, y: h - 6, "text-anchor": "end" }, fmtHM(pts[n - 1].t)));
}

function drawCost(data) {
  const node = document.getElementById("chart-cost");
  const [w, h] = size(node);
  const hours = data.hours.slice(-24);
  if (!hours.length) return emptyChart(node, w, h, "no cost yet");
  const yMax = niceMax(Math.max(...hours.map((b) => b.cost_usd)));
  const a = frame(node, w, h, yMax, (v) => (v === 0 ? "0" : v < 0.01 ? String(Number(v.toPrecision(2))) : v.toFixed(2)));
  const slot = (a.x1 - a.x0) / Math.max(hours.length, 6);
  hours.forEach((b, i) => {
    const bh = (b.cost_usd / yMax) * (a.y1 - a.y0);
    const bar = svg("rect", { x: a.x0 + i * slot + slot * 0.15, y: a.y1 - bh, width: slot * 0.7,
      height: Math.max(bh, 0.5), fill: "var(--accent)", rx: 2 });
    bar.append(svg("title", {}, `${fmtHM(b.t)}: ${fmtUsd(b.cost_usd)} over ${b.count} requests`));
    node.append(bar);
    node.append(svg("text", { x: a.x0 + (i + 0.5) * slot, y: h - 6, "text-anchor": "middle" }, fmtHM(b.t)));
  });
}

function pill(text, cls) { return el("span", { class: "pill " + cls }, text); }

function drawExperts(data) {
  const body = document.querySelector("#experts tbody");
  body.replaceChildren(...data.experts.map((e) => el("tr", {},
    el("td", {}, el("span", { class: "swatch", style: "background:" + colorOf(e.name) }), e.name),
    el("td", {}, pill(e.circuit.replace("_", "-"), e.circuit),
      // the stream breaker only when it differs: an expert out of stream rotation, plain calls still served
      e.stream_circuit && e.stream_circuit !== "closed"
        ? pill("streams " + e.stream_circuit.replace("_", "-"), e.stream_circuit) : ""),
    el("td", {}, pill(e.health === "ok" ? "ok" : e.health, e.health === "ok" ? "ok" : "err")),
    el("td", {}, `${e.inflight} / ${e.max_concurrency}`),
    el("td", { title: e.engine ? `KV cache ${e.engine.kv_usage ?? "?"}` : "no engine metrics" },
      e.engine ? `${e.engine.waiting} waiting · ${e.engine.running} running · ~${e.engine.expected_wait_s.toFixed(2)} s` : "–"),
    el("td", {}, `${e.price.input_per_mtok} · ${e.price.output_per_mtok}`))));
  const profiles = document.querySelector("#profiles tbody");
  profiles.replaceChildren(...Object.entries(data.profiles).map(([name, p]) => el("tr", {},
    el("td", {}, name), el("td", {}, p.router), el("td", {}, data.routers[p.router] || ""),
    el("td", {}, p.pacing ? `${p.cost_weight} (paced ${p.pacing.min_cost_weight}–${p.pacing.max_cost_weight})` : p.cost_weight),
    el("td", {}, p.latency_weight || "–"))));
  const pacing = document.querySelector("#pacing tbody");
  pacing.replaceChildren(...Object.entries(data.pacing || {}).map(([key, d]) => el("tr", {},
    el("td", { class: "mono" }, key), el("td", {}, d.period),
    el("td", {}, `${(100 * d.spent_share).toFixed(1)} %`), el("td", {}, `${(100 * d.planned_share).toFixed(1)} %`),
    el("td", {}, `${d.base_cost_weight} → ${d.effective_cost_weight.toFixed(3)}`))));
}

function drawDecisions(data) {
  const body = document.querySelector("#decisions tbody");
  document.getElementById("no-decisions").hidden = data.recent.length > 0;
  body.replaceChildren(...data.recent.slice(0, 100).map((r) => {
    const cands = (r.candidates || []).map((c, i) => el("span", { class: "chip" + (i === 0 ? " first" : ""),
      title: `cost ${fmtUsd(c.cost_usd)}` + (c.expected_wait_s != null ? `, expected wait ${c.expected_wait_s} s` : "") },
      `${c.expert} ${c.score.toFixed(2)} / ${c.utility.toFixed(2)}`));
    // experts outside the profile's list are expected: shown muted, real exclusions in red
    const inel = Object.entries(r.ineligible || {}).map(([e, why]) => el("span", {
      class: why.includes("not in the profile") ? "chip muted" : "chip bad", title: why }, `${e}: ${why}`));
    if (!cands.length && r.error) inel.push(el("span", { class: "chip bad", title: r.error }, r.error));
    const attempts = (r.attempts || []).map((t) => `${t.expert}:${t.outcome}`).join(" → ");
    const ok = r.status < 400;
    return el("tr", {},
      el("td", {}, fmtTime(r.ts)),
      el("td", { class: "mono", title: r.request_id }, (r.request_id || "").slice(0, 12)),
      el("td", {}, `${r.profile || r.model || "–"} · ${r.router || "–"}${r.explored ? " (explore)" : ""}` +
        (r.pacing ? ` · cost weight ${r.cost_weight.toFixed(3)} (paced)` : "")),
      el("td", {}, r.chosen_expert ? el("span", { class: "swatch", style: "background:" + colorOf(r.chosen_expert) }) : "",
        r.chosen_expert || "–"),
      el("td", { title: r.error || "" }, pill(String(r.status), ok ? "ok" : "err")),
      el("td", {}, fmtMs(r.latency_ms)),
      el("td", {}, fmtUsd(r.cost_usd)),
      el("td", { class: "wrap" }, ...cands),
      el("td", { class: "wrap" }, ...(inel.length ? inel : ["–"])),
      el("td", { class: "mono" }, attempts || "–"));
  }));
}

function drawCards(data) {
  const count = data.minutes.reduce((s, m) => s + m.count, 0);
  const errors = data.minutes.reduce((s, m) => s + m.errors, 0);
  const lat = data.latency_recent;
  const hour = Math.floor(data.now / 3600) * 3600;
  const thisHour = data.hours.find((b) => b.t === hour);
  document.getElementById("c-requests").textContent = count.toLocaleString();
  document.getElementById("c-errors").textContent = count ? ((100 * errors) / count).toFixed(1) + "%" : "–";
  document.getElementById("c-latency").textContent = lat.p50 == null ? "–" : lat.p99 < 1000 ?
    `${Math.round(lat.p50)} / ${Math.round(lat.p95)} / ${Math.round(lat.p99)} ms` :
    `${fmtMs(lat.p50)} / ${fmtMs(lat.p95)} / ${fmtMs(lat.p99)}`;
  document.getElementById("c-cost").textContent = fmtUsd(thisHour ? thisHour.cost_usd : 0);
  document.getElementById("c-batch").textContent = data.embed.batches ?
    (data.embed.prompts / data.embed.batches).toFixed(2) : "–";
}

const frontierShown = new Set();
async function drawFrontier(data) {
  const box = document.getElementById("frontier");
  const tables = data.frontier.map((f) => f.table).join(",");
  if (frontierShown.has(tables)) return;
  frontierShown.clear();
  frontierShown.add(tables);
  if (!data.frontier.length) {
    box.replaceChildren(el("p", { class: "empty" }, "no report"));
    return;
  }
  const deployed = [...new Set(Object.values(data.routers))].join(", ");
  const figures = [];
  for (const f of data.frontier) {
    const img = el("img", { alt: `frontier plot for ${f.table}` });
    try {  // fetched with the key header, which an <img src> could not send
      const res = await fetch(f.url, { headers: headers() });
      if (!res.ok) throw new Error(res.status);
      img.src = URL.createObjectURL(await res.blob());
    } catch (err) {
      figures.push(el("p", { class: "empty" }, `frontier for ${f.table} unavailable`));
      continue;
    }
    figures.push(el("figure", {}, img, el("figcaption", {}, `${f.table} · deployed router types: ${deployed}`)));
  }
  box.replaceChildren(...figures);
}

function drawLearning(data) {
  const l = data.learning;
  document.getElementById("learning-panel").hidden = !l;
  if (!l) return;
  const usd = (v) => "$" + Number(v || 0).toFixed(4);
  const share = l.share == null ? "–" : (100 * l.share).toFixed(1) + "% of live";
  const gate = (l.last_candidate || {}).gate || {};
  const metric = (v) => (v == null ? "–" : Number(v).toFixed(3));
  const rows = [
    ["profile · live router", `${l.profile} · ${l.live}`],
    ["labelled prompts", l.labelled_prompts],
    ["shadow spend", `${usd(l.shadow_usd)} (${share}; live ${usd(l.live_usd)})`],
    ["shadow calls · judge calls", `${l.stats.shadow_calls} · ${l.stats.judge_calls}`],
    ["last candidate: live vs candidate utility", `${metric(gate.live_value)} vs ${metric(gate.candidate_value)} ` +
      `on ${gate.rows ?? "–"} held-out prompts: ${gate.passed ? "promoted" : (gate.reason || "–")}`],
    ["promotion history", (l.history || []).concat(l.live ? [l.live] : []).join(" → ") || "none"],
    ["canary", l.canary ? `${l.canary.artifact} on ${(100 * l.canary.share).toFixed(0)}% of requests; graded ` +
      `${l.canary.graded.canary} canary / ${l.canary.graded.live} live of ${l.canary.min_graded}` : "none"],
    ["labels from other replicas", l.stats.labels_from_replicas ?? 0],
  ];
  document.getElementById("learning").replaceChildren(el("table", { class: "tbl" },
    el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v)))))));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/ui/data", { headers: headers(), cache: "no-store" });
    if (!res.ok) {
      const hint = res.status === 401 || res.status === 403 ? " (open /ui#key=<admin key>)" : "";
      throw new Error(`HTTP ${res.status}${hint}`);
    }
    const data = await res.json();
    for (const e of data.experts) colorOf(e.name);
    drawCards(data);
    drawShare(data);
    drawLatency(data);
    drawCost(data);
    drawExperts(data);
    drawDecisions(data);
    drawLearning(data);
    drawFrontier(data);
    status.className = "status";
    status.textContent = `config v${data.config_version} · worker pid ${data.pid} · ` +
      `${data.total_requests} requests seen · updated ${fmtTime(data.now)}`;
  } catch (err) {
    status.className = "status err";
    status.textContent = "cannot load /ui/data: " + err.message;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
