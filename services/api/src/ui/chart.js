// Inline SVG charts: one series of points over time, drawn as a line with dots.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

/**
 * A line chart of `points` ({t: Date, v: number}) with a title; `format` shows a value.
 * Axes: time left to right, zero at the bottom; the largest value and the first and last
 * times are labelled.
 */
export function lineChart(title, points, format) {
  const width = 560;
  const height = 180;
  const left = 70;
  const right = 12;
  const top = 16;
  const bottom = 28;
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${title}: ${points.length} runs`,
    class: "chart",
  });
  root.append(svg("title", {}, title));
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  root.append(svg("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, class: "axis" }));
  root.append(svg("line", { x1: left, y1: top, x2: left, y2: top + plotH, class: "axis" }));
  if (points.length === 0) {
    root.append(svg("text", { x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "no runs yet"));
    return root;
  }
  const t0 = points[0].t.getTime();
  const t1 = points[points.length - 1].t.getTime();
  const max = Math.max(...points.map((p) => p.v), 1);
  const x = (t) => left + (t1 === t0 ? plotW / 2 : ((t.getTime() - t0) / (t1 - t0)) * plotW);
  const y = (v) => top + plotH - (v / max) * plotH;
  const path = points.map((p, i) => `${i === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
  root.append(svg("path", { d: path.join(" "), class: "series" }));
  for (const p of points) {
    const dot = svg("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3, class: "dot" });
    dot.append(svg("title", {}, `${p.t.toLocaleString()}: ${format(p.v)}`));
    root.append(dot);
  }
  root.append(svg("text", { x: left - 6, y: top + 4, "text-anchor": "end" }, format(max)));
  root.append(svg("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }, format(0)));
  const label = (t) => t.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  root.append(svg("text", { x: left, y: height - 8, "text-anchor": "start" }, label(points[0].t)));
  root.append(svg("text", { x: left + plotW, y: height - 8, "text-anchor": "end" }, label(points[points.length - 1].t)));
  return root;
}
