// StoreFlow dashboard: every view is drawn from the JSON API of the same app (/api/v1/...).
"use strict";

const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const params = new URLSearchParams(location.search);
const fmt = (v, digits = 0) => (v === null || v === undefined) ? "–" :
  (typeof v === "number" ? v.toLocaleString(undefined, {maximumFractionDigits: digits}) : String(v));
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + " %";
const money = (v) => (v === null || v === undefined) ? "–" :
  v.toLocaleString(undefined, {minimumFractionDigits: 2, maximumFractionDigits: 2});
// seconds as "2 min 05 s" (or "45 s")
const dur = (s) => {
  if (s === null || s === undefined) return "–";
  const r = Math.round(s), m = Math.floor(r / 60);
  return m ? `${m} min ${String(r % 60).padStart(2, "0")} s` : `${r} s`;
};
const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// plotly.js loads with `async`: the data is fetched while it is parsed, and drawing waits for it
const plotlyReady = new Promise((resolve, reject) => {
  if (window.Plotly) { resolve(); return; }
  const tag = $("plotly-js");
  tag.addEventListener("load", () => resolve());
  tag.addEventListener("error", () => reject(new Error("could not load plotly.js")));
});
async function newPlot(...args) {
  await plotlyReady;
  return Plotly.newPlot(...args);
}

async function api(path) {
  const resp = await fetch("/api/v1" + path, {credentials: "same-origin"});
  if (resp.status === 401) { location.href = "/login"; throw new Error("not signed in"); }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.detail || resp.statusText);
  return body;
}

function period() {
  const q = new URLSearchParams();
  if ($("from").value) q.set("from", $("from").value);
  if ($("to").value) q.set("to", addDays($("to").value, 1));  // the picker's "to" day is inclusive
  return q;
}

function addDays(isoDate, n) {
  const d = new Date(isoDate + "T00:00:00Z");
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

async function init() {
  document.querySelectorAll("nav a").forEach((a) => {
    a.addEventListener("click", (e) => { e.preventDefault(); go(a.dataset.nav); });
  });
  // the store is usually known from the address: fetch its layout and floors alongside the store list
  const known = params.get("store") || document.body.dataset.store;
  if (known && page !== "traffic") prefetch(known);
  let stores;
  try { stores = await api("/stores"); } catch (e) { status(e.message, true); return; }
  if (!stores.length) { status("No stores yet: import a layout (storeflow import layout FILE).", true); return; }
  const sel = $("store");
  for (const s of stores) sel.add(new Option(`${s.name} (${s.store})`, s.store));
  sel.value = params.get("store") || document.body.dataset.store || stores[0].store;
  const current = stores.find((s) => s.store === sel.value) || stores[0];
  const to = params.get("to") || current.data_to || new Date().toISOString().slice(0, 10);
  $("to").value = to;
  $("from").value = params.get("from") || current.data_from || addDays(to, -6);
  if (page === "floor") await setupFloors(sel.value);
  if (page === "counters") $("tier-label").hidden = false;
  sel.addEventListener("change", async () => { if (page === "floor") await setupFloors(sel.value); draw(); });
  $("apply").addEventListener("click", draw);
  $("floor").addEventListener("change", draw);
  await draw();
}

function go(target) {
  const q = new URLSearchParams({store: $("store").value, from: $("from").value, to: $("to").value});
  location.href = `/${target}?${q}`;
}

let layoutCache = null, floorsCache = null;
const pending = {};  // "layout|store" / "floors|store" -> the request in flight or done
function once(key, path) {
  if (!pending[key]) pending[key] = api(path).catch((e) => { delete pending[key]; throw e; });
  return pending[key];
}
function prefetch(store) {
  // errors are reported by the code that uses the answer
  once(`layout|${store}`, `/stores/${store}/layout`).catch(() => {});
  if (page === "floor") once(`floors|${store}`, `/stores/${store}/floors`).catch(() => {});
}
async function layoutFor(store) {
  if (!layoutCache || layoutCache.store !== store) layoutCache = await once(`layout|${store}`, `/stores/${store}/layout`);
  return layoutCache;
}
async function setupFloors(store) {
  [, floorsCache] = await Promise.all([layoutFor(store), once(`floors|${store}`, `/stores/${store}/floors`)]);
  const f = $("floor");
  f.innerHTML = "";
  for (const fl of layoutCache.floors) f.add(new Option(`Floor ${fl.floor}`, fl.floor));
  f.value = params.get("floor") || layoutCache.floors[0].floor;
  $("floor-label").hidden = false;
}

let drawCount = 0;
async function draw() {
  const store = $("store").value;
  status("Loading…");
  document.body.dataset.busy = "1";
  try {
    const views = {floor: drawFloor, counters: drawCounters, paths: drawPaths, traffic: drawTraffic};
    status((await views[page](store)) || "");
    const state = new URLSearchParams({store, from: $("from").value, to: $("to").value});
    if (page === "floor") state.set("floor", $("floor").value);
    history.replaceState(null, "", `?${state}`);
  } catch (e) {
    status(e.message, true);
  }
  delete document.body.dataset.busy;
  document.body.dataset.drawnMs = performance.now().toFixed(0);  // since navigation start (bench)
  document.body.dataset.drawn = String(++drawCount);  // tests wait on this
}

function cards(items) {
  return `<div class="cards">${items.map(([k, v]) => `<div class="card">${k}<b>${v}</b></div>`).join("")}</div>`;
}

// --- floor --------------------------------------------------------------------------------------
// pale yellow (little time) to dark red (much time); empty cells stay transparent
const HEAT = [[0, "#fff7bc"], [0.25, "#fec44f"], [0.5, "#fe9929"], [0.75, "#e6550d"], [1, "#a63603"]];
const short = (text, n) => text.length > n ? text.slice(0, n - 1) + "…" : text;

async function drawFloor(store) {
  const floor = Number($("floor").value);
  const q = period();
  q.set("floor", floor);
  q.set("cell", "1");
  const [heat, counters] = await Promise.all([api(`/stores/${store}/heatmap?${q}`), api(`/stores/${store}/counters?${period()}`)]);
  const fl = layoutCache.floors.find((f) => f.floor === floor);
  const kpi = Object.fromEntries(counters.map((c) => [c.zone, c]));
  const nx = Math.ceil(fl.width_m / heat.cell_m), ny = Math.ceil(fl.depth_m / heat.cell_m);
  const z = Array.from({length: ny}, () => new Array(nx).fill(null));
  let total = 0;
  for (const c of heat.cells) {
    const ix = Math.floor(c.x_m / heat.cell_m), iy = Math.floor(c.y_m / heat.cell_m);
    if (iy < ny && ix < nx) { z[iy][ix] = c.seconds / 60; total += c.seconds; }
  }
  const xs = Array.from({length: nx}, (_, i) => (i + 0.5) * heat.cell_m);
  const ys = Array.from({length: ny}, (_, i) => (i + 0.5) * heat.cell_m);
  const plan = (floorsCache || []).find((f) => f.floor === floor);
  const planUrl = plan && plan.plan_url;
  const traces = [{type: "heatmap", name: "time spent", x: xs, y: ys, z, colorscale: HEAT, hoverongaps: false,
    zsmooth: false, zmin: 0, opacity: planUrl ? 0.75 : 1,
    colorbar: {title: {text: "shopper-<br>minutes", side: "top"}, thickness: 14},
    hovertemplate: `%{z:.1f} shopper-minutes in this ${heat.cell_m} m square<extra></extra>`}];
  const zones = layoutCache.zones.filter((zz) => zz.floor === floor);
  for (const zone of zones) {
    const pts = zone.polygon.concat([zone.polygon[0]]);
    const k = kpi[zone.zone];
    const text = k ? `<b>${zone.zone} ${zone.name}</b><br>visitors ${fmt(k.visitors)} · visits ${fmt(k.visits)}` +
      `<br>median dwell ${dur(k.dwell_median_s)} · conversion ${pct(k.conversion)}<br>revenue ${money(k.revenue)}`
      : `<b>${zone.zone} ${zone.name}</b><br>${zone.kind}`;
    traces.push({type: "scatter", mode: "lines", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]),
      fill: "toself", fillcolor: "rgba(0,0,0,0)", line: {color: zone.kind === "counter" ? "#1d2430" : "#8a94a6", width: 1.2},
      hoveron: "fills", text, hoverinfo: "text", name: zone.zone, showlegend: false});
  }
  const ann = zones.map((zone) => {
    const xsP = zone.polygon.map((p) => p[0]), ysP = zone.polygon.map((p) => p[1]);
    const wide = (Math.max(...xsP) - Math.min(...xsP)) / fl.width_m;  // share of the floor's width
    const chars = Math.max(6, Math.round(wide * 160));
    return {x: (Math.min(...xsP) + Math.max(...xsP)) / 2, y: (Math.min(...ysP) + Math.max(...ysP)) / 2,
      text: zone.kind === "counter" ? `<b>${zone.zone}</b><br>${short(zone.name, chars)}` : short(zone.name, chars),
      showarrow: false, font: {size: 11, color: "#1d2430"}, bgcolor: "rgba(255,255,255,0.75)", borderpad: 1};
  });
  const nCounters = zones.filter((zz) => zz.kind === "counter").length;
  $("content").innerHTML = cards([["Shopper-hours on this floor", fmt(total / 3600, 1)], ["Counters", fmt(nCounters)],
    ["Busiest counter", busiest(counters)]]) + '<div id="plot" class="plot"></div>';
  // the floor plan image (layout `plan:`) under the heatmap, stretched over the floor's extent in metres
  const images = planUrl ? [{source: planUrl, xref: "x", yref: "y", x: 0, y: fl.depth_m, sizex: fl.width_m,
    sizey: fl.depth_m, sizing: "stretch", layer: "below", opacity: 1}] : [];
  const width = $("content").clientWidth || 1000;
  await newPlot("plot", traces, {margin: {l: 50, r: 10, t: 10, b: 45}, annotations: ann, images,
    xaxis: {range: [0, fl.width_m], title: {text: "metres"}, constrain: "domain", showgrid: false, zeroline: false},
    yaxis: {range: [0, fl.depth_m], scaleanchor: "x", title: {text: "metres"}, showgrid: false, zeroline: false},
    plot_bgcolor: "#ffffff", height: Math.round(Math.min(900, Math.max(380, (width - 140) * fl.depth_m / fl.width_m + 60)))},
    {responsive: true, displaylogo: false});
  return total > 0 ? "" : "No shopper time recorded on this floor in this period.";
}

function busiest(counters) {
  const best = counters.filter((c) => c.visitors > 0).sort((a, b) => b.visitors - a.visitors)[0];
  if (!best) return "–";
  const name = (layoutCache.zones.find((z) => z.zone === best.zone) || {}).name || "";
  return `${best.zone} ${short(name, 18)}`;
}

// --- counters -----------------------------------------------------------------------------------
const COUNTER_COLS = [["zone", "Counter", "text"], ["name", "Name and assessment", "name"], ["visitors", "Visitors"], ["visits", "Visits"],
  ["passbys", "Pass-bys"], ["dwell_median_s", "Median dwell", "dur"], ["dwell_p90_s", "Long stays (90th pct)", "dur"],
  ["buyers", "Buyers"], ["conversion", "Conversion", "pct"], ["revenue", "Revenue", "money"],
  ["revenue_per_visitor", "Revenue per visitor", "money"], ["attraction", "Attraction", "pct"]];
let sortKey = "revenue", sortDesc = true;

async function drawCounters(store) {
  const q = period();
  if ($("tier").value) q.set("tier", $("tier").value);
  const [kpis, ranking] = await Promise.all([api(`/stores/${store}/counters?${q}`), api(`/stores/${store}/ranking?${period()}`)]);
  const label = Object.fromEntries(ranking.map((r) => [r.zone, r.label]));
  const names = Object.fromEntries((await layoutFor(store)).zones.map((z) => [z.zone, z.name]));
  const rows = kpis.map((r) => ({...r, name: names[r.zone] || "", label: label[r.zone] || ""}));
  const tiers = $("tier");
  if (tiers.options.length === 1) {
    try { for (const t of (await api(`/stores/${store}/tiers`))) tiers.add(new Option(t, t)); } catch (e) { /* optional */ }
  }
  const render = () => {
    const sorted = rows.slice().sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      const c = (x === null) - (y === null) || (x < y ? -1 : x > y ? 1 : 0);
      return sortDesc ? -c : c;
    });
    const head = COUNTER_COLS.map(([k, t, kind]) => `<th data-k="${k}" class="${kind || ""}" title="sort by ${t.toLowerCase()}">${t}${k === sortKey ? (sortDesc ? " ▾" : " ▴") : ""}</th>`).join("");
    const body = sorted.map((r) => "<tr>" + COUNTER_COLS.map(([k, , kind]) => {
      const v = r[k];
      const shown = kind === "pct" ? pct(v) : kind === "dur" ? dur(v) : kind === "money" ? money(v)
        : kind === "name" ? `${esc(v ?? "")}<div class="sub">${esc(r.label || "")}</div>`
        : kind === "text" ? esc(v ?? "") : fmt(v);
      return `<td class="${kind || ""}">${shown}</td>`;
    }).join("") + "</tr>").join("");
    $("table").innerHTML = `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
    $("table").querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
      sortDesc = th.dataset.k === sortKey ? !sortDesc : true;
      sortKey = th.dataset.k;
      render();
    }));
  };
  const visitors = rows.reduce((a, r) => a + (r.visitors || 0), 0);
  const revenue = rows.reduce((a, r) => a + (r.revenue || 0), 0);
  $("content").innerHTML = cards([["Counters", rows.length], ["Counter visitors (sum)", fmt(visitors)], ["Revenue", money(revenue)]]) +
    '<div id="quadrant" class="plot"></div><div id="table" class="table-wrap"></div>';
  render();
  const withData = rows.filter((r) => r.attraction !== null && r.conversion !== null);
  const median = (xs) => { const s = xs.slice().sort((a, b) => a - b); return s.length ? (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2 : 0; };
  const mx = median(withData.map((r) => r.attraction)), my = median(withData.map((r) => r.conversion));
  const line = {color: "#8a94a6", width: 1, dash: "dot"};
  await newPlot("quadrant", [{type: "scatter", mode: "markers+text", x: withData.map((r) => r.attraction),
    y: withData.map((r) => r.conversion), text: withData.map((r) => r.zone), textposition: "top center", cliponaxis: false,
    marker: {size: withData.map((r) => 8 + 30 * Math.sqrt((r.revenue || 0) / Math.max(1, revenue))), color: "#0b6bcb", opacity: 0.7},
    hovertext: withData.map((r) => `<b>${r.zone} ${esc(r.name || "")}</b><br>attraction ${pct(r.attraction)} · conversion ${pct(r.conversion)}` +
      `<br>revenue ${money(r.revenue)}<br>${r.label || ""}`),
    hoverinfo: "text"}],
    {margin: {l: 70, r: 20, t: 40, b: 55}, title: {text: "Attraction vs conversion (bubble size: revenue; dotted lines: medians)", font: {size: 14}},
      shapes: withData.length ? [{type: "line", xref: "x", yref: "paper", x0: mx, x1: mx, y0: 0, y1: 1, line},
        {type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: my, y1: my, line}] : [],
      xaxis: {title: {text: "attraction: share of store visitors who visited the counter"}, tickformat: ".0%", rangemode: "tozero"},
      yaxis: {title: {text: "conversion: visitors who bought"}, tickformat: ".0%", rangemode: "tozero"}, height: 460},
    {responsive: true, displaylogo: false});
  return visitors > 0 ? "" : "No counter visits in this period: choose other dates.";
}

// --- paths --------------------------------------------------------------------------------------
async function drawPaths(store) {
  const q = period();
  q.set("top", "15");
  const [paths, lay] = await Promise.all([api(`/stores/${store}/paths?${q}`), layoutFor(store)]);
  const names = Object.fromEntries(lay.zones.map((z) => [z.zone, z.name]));
  // one node per (step, counter); columns are steps, so a path reads left to right from the entrance
  const nodes = [], steps = [], index = new Map(), links = new Map();
  const node = (key, label, step) => {
    if (!index.has(key)) { index.set(key, nodes.length); nodes.push(label); steps.push(step); }
    return index.get(key);
  };
  for (const p of paths) {
    let prev = node("entrance", "Entrance", 0);
    p.path.forEach((zone, i) => {
      const cur = node(`${i + 1}|${zone}`, `${zone} ${short(names[zone] || "", 16)}`, i + 1);
      const key = `${prev}>${cur}`;
      links.set(key, (links.get(key) || 0) + p.trips);
      prev = cur;
    });
  }
  const src = [], dst = [], val = [];
  for (const [k, v] of links) { const [a, b] = k.split(">").map(Number); src.push(a); dst.push(b); val.push(v); }
  // fixed columns (step), nodes stacked by their trips within a column, so no column overflows
  const maxStep = Math.max(1, ...steps);
  const inflow = new Array(nodes.length).fill(0), outflow = new Array(nodes.length).fill(0);
  src.forEach((a, i) => { outflow[a] += val[i]; inflow[dst[i]] += val[i]; });
  const size = nodes.map((_, i) => Math.max(inflow[i], outflow[i]));
  const colTotal = {}, colCount = {}, cum = {};
  steps.forEach((s, i) => { colTotal[s] = (colTotal[s] || 0) + size[i]; colCount[s] = (colCount[s] || 0) + 1; });
  const nx = steps.map((s) => 0.001 + 0.998 * s / maxStep);
  const ny = steps.map((s, i) => {
    const before = cum[s] || 0;
    cum[s] = before + size[i];
    const room = 0.9 - 0.02 * colCount[s];  // leave the node padding free
    return 0.02 + (before + size[i] / 2) / colTotal[s] * Math.max(0.3, room);
  });
  const rows = paths.map((p) => `<tr><td class="text wrap">${p.path.map((z) => `${z} ${esc(names[z] || "")}`).join(" → ") || "(no counter visit)"}</td><td>${fmt(p.trips)}</td></tr>`).join("");
  const trips = paths.reduce((a, p) => a + p.trips, 0);
  $("content").innerHTML = cards([["Trips on the top paths", fmt(trips)], ["Paths shown", fmt(paths.length)]]) +
    '<div id="sankey" class="plot"></div>' +
    `<div class="table-wrap"><table><thead><tr><th class="text">Path (counters in the order visited)</th><th>Trips</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  if (!paths.length) { $("sankey").hidden = true; return "No shopper paths in this period: choose other dates."; }
  await newPlot("sankey", [{type: "sankey", arrangement: "snap",
    node: {label: nodes, x: nx, y: ny, pad: 10, thickness: 14, hovertemplate: "%{label}<br>%{value} trips<extra></extra>"},
    link: {source: src, target: dst, value: val, hovertemplate: "%{source.label} → %{target.label}<br>%{value} trips<extra></extra>"}}],
    {margin: {l: 10, r: 10, t: 44, b: 10}, height: 520,
      title: {text: "Top paths from the entrance: each column is the next counter visited", font: {size: 14}}},
    {responsive: true, displaylogo: false});
  return "";
}

// --- traffic ------------------------------------------------------------------------------------
async function drawTraffic(store) {
  const q = period();
  const t = await api(`/stores/${store}/traffic?${q}`);
  const hours = t.hours.map((h) => h.hour);
  $("content").innerHTML = cards([["Footfall (door entries)", fmt(t.footfall)], ["Previous period", fmt(t.previous_footfall)],
    ["Change", t.change === null ? "–" : (t.change > 0 ? "+" : "") + pct(t.change)],
    ["Peak hour", t.peak_hour === null ? "–" : `${t.peak_hour}:00–${t.peak_hour + 1}:00`]]) +
    '<div id="hourly" class="plot"></div><div id="daily" class="plot"></div>';
  const hourLabels = hours.map((h) => `${h}:00`);
  await newPlot("hourly", [
    {type: "bar", name: "entries (this period)", x: hours, y: t.hours.map((h) => h.entries), marker: {color: "#0b6bcb"},
      customdata: hourLabels, hovertemplate: "%{customdata}: %{y} entries<extra></extra>"},
    {type: "bar", name: "entries (previous period)", x: hours, y: t.hours.map((h) => h.previous_entries), marker: {color: "#b8c4d6"},
      customdata: hourLabels, hovertemplate: "%{customdata}: %{y} entries (previous period)<extra></extra>"},
    {type: "scatter", mode: "lines+markers", name: "people in the store (average)", x: hours, y: t.hours.map((h) => h.occupancy_avg),
      yaxis: "y2", line: {color: "#d9480f"}, customdata: hourLabels, hovertemplate: "%{customdata}: %{y} people on average<extra></extra>"}],
    {barmode: "group", margin: {l: 60, r: 60, t: 40, b: 90}, title: {text: "By hour of day (store time)", font: {size: 14}},
      legend: {orientation: "h", x: 0, y: -0.22},
      xaxis: {title: {text: "hour of day"}, range: [-0.5, 23.5], tickvals: hours, ticktext: hours.map(String)},
      yaxis: {title: {text: "entries"}, rangemode: "tozero"},
      yaxis2: {title: {text: "people in the store"}, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false}, height: 420},
    {responsive: true, displaylogo: false});
  const dayLabel = (d) => new Date(d + "T12:00:00Z").toLocaleDateString(undefined, {weekday: "short", day: "numeric", month: "short", timeZone: "UTC"});
  await newPlot("daily", [{type: "bar", x: t.days.map((d) => dayLabel(d.day)), y: t.days.map((d) => d.entries), marker: {color: "#0b6bcb"},
    width: t.days.length < 5 ? 0.4 : undefined,
    hovertemplate: "%{x}: %{y} entries<extra></extra>"}],
    {margin: {l: 60, r: 20, t: 40, b: 60}, title: {text: "Footfall by day", font: {size: 14}}, height: 320,
      xaxis: {type: "category"}, yaxis: {title: {text: "entries"}, rangemode: "tozero"}},
    {responsive: true, displaylogo: false});
  return t.footfall > 0 ? "" : "No door counts in this period: choose other dates.";
}

init();
