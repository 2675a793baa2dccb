// StoreFlow dashboard: every view is drawn from the JSON API of the same app (/api/v1/...).
"use strict";

const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const params = new URLSearchParams(location.search);
const fmt = (v, digits = 0) => (v === null || v === undefined) ? "–" :
  (typeof v === "number" ? v.toLocaleString(undefined, {maximumFractionDigits: digits}) : String(v));
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + " %";

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
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
  await draw();
}

function go(target) {
  const q = new URLSearchParams({store: $("store").value, from: $("from").value, to: $("to").value});
  location.href = `/${target}?${q}`;
}

let layoutCache = null;
async function layoutFor(store) {
  if (!layoutCache || layoutCache.store !== store) layoutCache = await api(`/stores/${store}/layout`);
  return layoutCache;
}
async function setupFloors(store) {
  await layoutFor(store);
  const f = $("floor");
  f.innerHTML = "";
  for (const fl of layoutCache.floors) f.add(new Option(`Floor ${fl.floor}`, fl.floor));
  f.value = params.get("floor") || layoutCache.floors[0].floor;
  $("floor-label").hidden = false;
}

async function draw() {
  const store = $("store").value;
  status("Loading…");
  try {
    if (page === "floor") await drawFloor(store);
    else if (page === "counters") await drawCounters(store);
    else if (page === "paths") await drawPaths(store);
    else if (page === "traffic") await drawTraffic(store);
    status("");
    history.replaceState(null, "", `?${new URLSearchParams({store, from: $("from").value, to: $("to").value})}`);
  } catch (e) {
    status(e.message, true);
  }
}

function cards(items) {
  return `<div class="cards">${items.map(([k, v]) => `<div class="card">${k}<b>${v}</b></div>`).join("")}</div>`;
}

// --- floor --------------------------------------------------------------------------------------
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
  const traces = [{type: "heatmap", x: xs, y: ys, z, colorscale: "YlOrRd", hoverongaps: false, zsmooth: false,
    colorbar: {title: {text: "tag-minutes"}}, hovertemplate: "x %{x} m, y %{y} m<br>%{z:.1f} tag-minutes<extra></extra>"}];
  for (const zone of layoutCache.zones.filter((zz) => zz.floor === floor)) {
    const pts = zone.polygon.concat([zone.polygon[0]]);
    const k = kpi[zone.zone];
    const text = k ? `<b>${zone.zone} ${zone.name}</b><br>visitors ${fmt(k.visitors)} · visits ${fmt(k.visits)}` +
      `<br>median dwell ${fmt(k.dwell_median_s)} s · conversion ${pct(k.conversion)}<br>revenue ${fmt(k.revenue, 2)}`
      : `<b>${zone.zone} ${zone.name}</b><br>${zone.kind}`;
    traces.push({type: "scatter", mode: "lines", x: pts.map((p) => p[0]), y: pts.map((p) => p[1]),
      fill: "toself", fillcolor: "rgba(0,0,0,0)", line: {color: zone.kind === "counter" ? "#1d2430" : "#8a94a6", width: 1},
      hoveron: "fills", text, hoverinfo: "text", name: zone.zone, showlegend: false});
  }
  const ann = layoutCache.zones.filter((zz) => zz.floor === floor && zz.kind === "counter").map((zone) => {
    const cx = zone.polygon.reduce((a, p) => a + p[0], 0) / zone.polygon.length;
    const cy = zone.polygon.reduce((a, p) => a + p[1], 0) / zone.polygon.length;
    return {x: cx, y: cy, text: zone.zone, showarrow: false, font: {size: 10, color: "#1d2430"}};
  });
  $("content").innerHTML = cards([["Tag-hours on this floor", fmt(total / 3600, 1)],
    ["Counters", fmt(ann.length)]]) + '<div id="plot" class="plot"></div>';
  Plotly.newPlot("plot", traces, {margin: {l: 40, r: 10, t: 10, b: 40}, annotations: ann,
    xaxis: {range: [0, fl.width_m], title: "metres", constrain: "domain"},
    yaxis: {range: [0, fl.depth_m], scaleanchor: "x", title: "metres"}, height: Math.max(420, 700 * fl.depth_m / fl.width_m)},
    {responsive: true, displaylogo: false});
}

// --- counters -----------------------------------------------------------------------------------
const COUNTER_COLS = [["zone", "Counter", "text"], ["name", "Name", "text"], ["visitors", "Visitors"], ["visits", "Visits"],
  ["passbys", "Pass-bys"], ["dwell_median_s", "Median dwell s"], ["dwell_p90_s", "P90 dwell s"], ["buyers", "Buyers"],
  ["conversion", "Conversion", "pct"], ["revenue", "Revenue"], ["revenue_per_visitor", "Revenue / visitor"],
  ["attraction", "Attraction", "pct"], ["label", "Assessment", "label"]];
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
    const head = COUNTER_COLS.map(([k, t, kind]) => `<th data-k="${k}" class="${kind || ""}">${t}${k === sortKey ? (sortDesc ? " ▾" : " ▴") : ""}</th>`).join("");
    const body = sorted.map((r) => "<tr>" + COUNTER_COLS.map(([k, , kind]) => {
      const v = r[k];
      const shown = kind === "pct" ? pct(v) : kind === "text" || kind === "label" ? (v ?? "") : fmt(v, k.includes("revenue") ? 2 : 1);
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
  $("content").innerHTML = cards([["Counters", rows.length], ["Counter visitors (sum)", fmt(visitors)], ["Revenue", fmt(revenue, 2)]]) +
    '<div id="quadrant" class="plot"></div><div id="table" class="table-wrap"></div>';
  render();
  const withData = rows.filter((r) => r.attraction !== null && r.conversion !== null);
  Plotly.newPlot("quadrant", [{type: "scatter", mode: "markers+text", x: withData.map((r) => r.attraction),
    y: withData.map((r) => r.conversion), text: withData.map((r) => r.zone), textposition: "top center",
    marker: {size: withData.map((r) => 8 + 30 * Math.sqrt((r.revenue || 0) / Math.max(1, revenue))), color: "#0b6bcb", opacity: 0.7},
    hovertext: withData.map((r) => `${r.zone} ${r.name || ""}<br>attraction ${pct(r.attraction)} · conversion ${pct(r.conversion)}<br>${r.label || ""}`),
    hoverinfo: "text"}],
    {margin: {l: 60, r: 10, t: 30, b: 50}, title: {text: "Attraction vs conversion (size: revenue)", font: {size: 14}},
      xaxis: {title: "attraction (share of store visitors)", tickformat: ".0%"}, yaxis: {title: "conversion", tickformat: ".0%"}, height: 460},
    {responsive: true, displaylogo: false});
}

// --- paths --------------------------------------------------------------------------------------
async function drawPaths(store) {
  const q = period();
  q.set("top", "15");
  const paths = await api(`/stores/${store}/paths?${q}`);
  const nodes = [], index = new Map(), links = new Map();
  const node = (label) => { if (!index.has(label)) { index.set(label, nodes.length); nodes.push(label); } return index.get(label); };
  for (const p of paths) {
    let prev = node("Entrance");
    p.path.forEach((zone, i) => {
      const cur = node(`${i + 1}. ${zone}`);
      const key = `${prev}>${cur}`;
      links.set(key, (links.get(key) || 0) + p.trips);
      prev = cur;
    });
  }
  const src = [], dst = [], val = [];
  for (const [k, v] of links) { const [a, b] = k.split(">").map(Number); src.push(a); dst.push(b); val.push(v); }
  const rows = paths.map((p) => `<tr><td class="text">${p.path.join(" → ") || "(no counter visit)"}</td><td>${fmt(p.trips)}</td></tr>`).join("");
  $("content").innerHTML = '<div id="sankey" class="plot"></div>' +
    `<div class="table-wrap"><table><thead><tr><th class="text">Path</th><th>Trips</th></tr></thead><tbody>${rows}</tbody></table></div>`;
  Plotly.newPlot("sankey", [{type: "sankey", node: {label: nodes, pad: 12, thickness: 14},
    link: {source: src, target: dst, value: val}}], {margin: {l: 10, r: 10, t: 10, b: 10}, height: 520},
    {responsive: true, displaylogo: false});
}

// --- traffic ------------------------------------------------------------------------------------
async function drawTraffic(store) {
  const q = period();
  const t = await api(`/stores/${store}/traffic?${q}`);
  const hours = t.hours.map((h) => h.hour);
  $("content").innerHTML = cards([["Footfall", fmt(t.footfall)], ["Previous period", fmt(t.previous_footfall)],
    ["Change", t.change === null ? "–" : pct(t.change)], ["Peak hour", t.peak_hour === null ? "–" : `${t.peak_hour}:00`]]) +
    '<div id="hourly" class="plot"></div><div id="daily" class="plot"></div>';
  Plotly.newPlot("hourly", [
    {type: "bar", name: "entries (this period)", x: hours, y: t.hours.map((h) => h.entries), marker: {color: "#0b6bcb"}},
    {type: "bar", name: "entries (previous period)", x: hours, y: t.hours.map((h) => h.previous_entries), marker: {color: "#b8c4d6"}},
    {type: "scatter", mode: "lines+markers", name: "average occupancy", x: hours, y: t.hours.map((h) => h.occupancy_avg), yaxis: "y2", line: {color: "#d9480f"}}],
    {barmode: "group", margin: {l: 50, r: 50, t: 30, b: 40}, title: {text: "By hour of day (store time)", font: {size: 14}},
      xaxis: {title: "hour", dtick: 1}, yaxis: {title: "entries"}, yaxis2: {title: "occupancy", overlaying: "y", side: "right"}, height: 420},
    {responsive: true, displaylogo: false});
  Plotly.newPlot("daily", [{type: "bar", x: t.days.map((d) => d.day), y: t.days.map((d) => d.entries), marker: {color: "#0b6bcb"}}],
    {margin: {l: 50, r: 20, t: 30, b: 40}, title: {text: "Footfall by day", font: {size: 14}}, height: 320},
    {responsive: true, displaylogo: false});
}

init();
