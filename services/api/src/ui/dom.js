// Small helpers: building elements, and showing times, sizes and durations to people.

/**
 * An element: `h("a", {href: "#/"}, "Overview")`. Attributes named `class`, `data-*`,
 * `aria-*` and the like are set as attributes; children are nodes or text, in arrays nested
 * to any depth (null skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** A table with a caption, header cells and rows (arrays of cells or `<tr>` elements). */
export function table(caption, headers, rows, empty = "None.") {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h(
      "tbody",
      {},
      rows.map((row) => (row instanceof Node ? row : h("tr", {}, row.map((cell) => h("td", {}, cell))))),
    ),
  );
}

/** A `<section>` with a heading. */
export function section(title, ...children) {
  return h("section", { class: "panel" }, h("h2", {}, title), ...children);
}

/** A small label: `badge("open", "bad")`. */
export function badge(text, tone = "") {
  return h("span", { class: `badge ${tone}`.trim() }, text);
}

const pad = (n) => String(n).padStart(2, "0");

/** "HH:MM" in the browser's time zone. */
export function clock(iso) {
  const t = new Date(iso);
  return `${pad(t.getHours())}:${pad(t.getMinutes())}`;
}

/** "YYYY-MM-DD HH:MM:SS" in the browser's time zone, or "—". */
export function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${clock(iso)}:${pad(t.getSeconds())}`;
}

/** A `<time>` element showing `when(iso)` and how long ago or ahead it is. */
export function time(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: new Date(iso).toString() }, `${when(iso)} (${ago(iso)})`);
}

/** "3 min ago", "in 2 h". */
export function ago(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  const words = span(Math.abs(ms));
  return ms >= 0 ? `in ${words}` : `${words} ago`;
}

/** A duration in milliseconds in words: "850 ms", "42 s", "3 min 5 s", "2 h 10 min". */
export function span(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ""}`;
  if (s < 86400) return `${Math.floor(s / 3600)} h${s % 3600 >= 60 ? ` ${Math.floor((s % 3600) / 60)} min` : ""}`;
  return `${Math.floor(s / 86400)} d${s % 86400 >= 3600 ? ` ${Math.floor((s % 86400) / 3600)} h` : ""}`;
}

/** Bytes in binary units: "0 B", "12.3 MiB". */
export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The first 8 characters of an id, for tables (the full id is its title). */
export function short(id) {
  return h("code", { title: id }, String(id).slice(0, 8));
}

/** A link into the dashboard. */
export function link(hash, ...children) {
  return h("a", { href: hash }, ...children);
}
