// Batchline dashboard, shared helpers: DOM building, the API call, formatting and the bar chart.
// Text from the API only ever goes through textContent or an SVG text node, never parsed as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" || key === "title" || key === "type")
      node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

class HttpError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { method, headers, credentials: "omit", cache: "no-store" });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `${method} ${path}: HTTP ${response.status}`;
    throw new HttpError(response.status, detail);
  }
  return body;
}

// ---- formatting -------------------------------------------------------------------------------
function dash(value) { return value === null || value === undefined ? "—" : value; }

function seconds(value) {
  if (value === null || value === undefined) return "—";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  if (value < 7200) return `${(value / 60).toFixed(1)} min`;
  if (value < 172800) return `${(value / 3600).toFixed(1)} h`;
  return `${(value / 86400).toFixed(1)} d`;
}

function ns(value) { return value === null || value === undefined ? "—" : seconds(value / 1e9); }

function ago(iso) {
  if (!iso) return "—";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (Number.isNaN(s)) return String(iso);
  return s < 1 ? "just now" : `${seconds(s)} ago`;
}

function cell(value, cls) { return el("td", { class: cls || "", text: String(dash(value)) }); }

function emptyRow(tbody, columns, message) {
  tbody.replaceChildren(el("tr", {}, el("td", { class: "muted wrap", text: message })));
  tbody.firstChild.firstChild.colSpan = columns;
}

function barChart(target, bars, { left, right, label }) {
  // bars: [{parts: [[value, cssClass], ...], title}]; stacked, scaled to the tallest.
  const width = 600, height = 120, top = 12, bottom = 16;
  const max = Math.max(1, ...bars.map((b) => b.parts.reduce((s, [v]) => s + v, 0)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img",
                             "aria-label": label });
  const step = width / Math.max(1, bars.length);
  bars.forEach((bar, i) => {
    let y = height - bottom;
    for (const [value, cls] of bar.parts) {
      const h = (value / max) * (height - top - bottom);
      if (h > 0) {
        const rect = svg("rect", { x: i * step + 1, y: y - h, width: Math.max(1, step - 2), height: h, class: cls });
        rect.append(svg("title", {}, bar.title));
        chart.append(rect);
      }
      y -= h;
    }
  });
  chart.append(svg("text", { x: 2, y: 10 }, `max ${max}`));
  chart.append(svg("text", { x: 2, y: height - 3 }, left));
  chart.append(svg("text", { x: width - 2, y: height - 3, "text-anchor": "end" }, right));
  target.replaceChildren(chart);
}
