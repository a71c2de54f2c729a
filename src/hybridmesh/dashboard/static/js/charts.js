// Small SVG charts for the views: a line chart with threshold lines, horizontal bars, and
// Gantt rows. Each returns an <svg> that scales to its container's width (viewBox), carries
// role="img" and a label, and styles through classes (see dashboard.css), never inline.

import { s } from "./dom.js";

const FONT = 12;

function frame(width, height, label) {
  return s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    role: "img",
    "aria-label": label,
    preserveAspectRatio: "xMinYMin meet",
  }, s("title", null, label));
}

function scale(domainMin, domainMax, rangeMin, rangeMax) {
  const span = domainMax - domainMin || 1;
  return (value) => rangeMin + ((value - domainMin) / span) * (rangeMax - rangeMin);
}

/** About `count` round tick values between `min` and `max`. */
export function ticks(min, max, count = 5) {
  if (max <= min) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((v) => v >= raw);
  const values = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) values.push(v);
  return values;
}

/**
 * A line chart. series: [{ name, points: [{ x, y }] }] (x numeric, e.g. epoch ms);
 * thresholds: [{ y, label }] drawn as dashed horizontal lines.
 */
export function lineChart({ series, thresholds = [], label, width = 640, height = 240,
  xFormat = String, yFormat = String }) {
  const pad = { left: 56, right: 16, top: 16, bottom: 32 };
  const points = series.flatMap((line) => line.points);
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y).concat(thresholds.map((t) => t.y));
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const yMax = Math.max(...ys, 0) * 1.1 || 1;
  const x = scale(xMin, xMax, pad.left, width - pad.right);
  const y = scale(0, yMax, height - pad.bottom, pad.top);
  const svg = frame(width, height, label);
  const axis = s("g", { class: "axis" });
  for (const value of ticks(0, yMax, 4)) {
    axis.append(
      s("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }),
      s("text", { x: pad.left - 6, y: y(value) + FONT / 3, "text-anchor": "end" }, yFormat(value)),
    );
  }
  for (const value of ticks(xMin, xMax, 5)) {
    axis.append(s("text", { x: x(value), y: height - pad.bottom + FONT + 6, "text-anchor": "middle" }, xFormat(value)));
  }
  svg.append(axis);
  for (const t of thresholds) {
    svg.append(
      s("line", { class: "threshold", x1: pad.left, x2: width - pad.right, y1: y(t.y), y2: y(t.y) }),
      s("text", { class: "threshold-label", x: width - pad.right, y: y(t.y) - 4, "text-anchor": "end" }, t.label),
    );
  }
  series.forEach((line, index) => {
    const d = line.points.map((p, i) => `${i ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ");
    svg.append(s("path", { class: `line series-${index % 6}`, d }, s("title", null, line.name)));
  });
  return svg;
}

/** Horizontal bars: rows [{ label, value, kind? }], one per line, longest = `max`. */
export function barRows({ rows, label, width = 640, max, format = String }) {
  const rowHeight = 24;
  const labelWidth = 160;
  const height = rows.length * rowHeight + 8;
  const top = max ?? Math.max(...rows.map((r) => r.value), 1);
  const x = scale(0, top, labelWidth, width - 64);
  const svg = frame(width, height, label);
  rows.forEach((row, i) => {
    const yTop = 4 + i * rowHeight;
    svg.append(
      s("text", { class: "row-label", x: labelWidth - 8, y: yTop + rowHeight / 2 + FONT / 3, "text-anchor": "end" }, row.label),
      s("rect", { class: `bar ${row.kind ?? ""}`, x: labelWidth, y: yTop + 4, height: rowHeight - 8, width: Math.max(1, x(row.value) - labelWidth), rx: 2 }),
      s("text", { class: "bar-value", x: x(row.value) + 6, y: yTop + rowHeight / 2 + FONT / 3 }, format(row.value)),
    );
  });
  return svg;
}

/**
 * Gantt rows on a shared time axis (numbers, e.g. epoch ms, from `start` to `end`).
 * rows: [{ label, bars: [{ start, end, kind, title }], markers: [{ at, kind, title }] }];
 * lines: [{ at, kind, title }], vertical lines across every row. The kinds become classes.
 */
export function ganttChart({ rows, lines = [], start, end, label, width = 900, axisFormat = String }) {
  const rowHeight = 30;
  const labelWidth = 170;
  const pad = { top: 24, right: 16, bottom: 8 };
  const height = pad.top + rows.length * rowHeight + pad.bottom;
  const x = scale(start, end > start ? end : start + 1, labelWidth, width - pad.right);
  const svg = frame(width, height, label);
  const axis = s("g", { class: "axis" });
  // Round steps from the start (+0, +20 ms, …), not round points in absolute time.
  for (const offset of ticks(0, end - start, 6)) {
    const at = x(start + offset);
    axis.append(
      s("line", { class: "grid", x1: at, x2: at, y1: pad.top - 4, y2: height - pad.bottom }),
      s("text", { x: at, y: pad.top - 8, "text-anchor": "middle" }, axisFormat(start + offset)),
    );
  }
  svg.append(axis);
  rows.forEach((row, i) => {
    const yTop = pad.top + i * rowHeight;
    const group = s("g", { class: "gantt-row", dataset: { row: row.label } },
      s("rect", { class: `row-band ${i % 2 ? "odd" : "even"}`, x: 0, y: yTop, width, height: rowHeight }),
      s("text", { class: "row-label", x: labelWidth - 8, y: yTop + rowHeight / 2 + FONT / 3, "text-anchor": "end" }, row.label),
    );
    for (const bar of row.bars) {
      const left = x(bar.start);
      const barWidth = Math.max(3, x(bar.end) - left);
      const thin = bar.kind === "backoff" || bar.kind === "wait";
      group.append(s("rect", {
        class: `bar ${bar.kind}`,
        x: left,
        y: yTop + (thin ? rowHeight / 2 - 3 : 6),
        width: barWidth,
        height: thin ? 6 : rowHeight - 12,
        rx: 2,
        dataset: { kind: bar.kind },
      }, s("title", null, bar.title)));
    }
    for (const marker of row.markers ?? []) {
      const cx = x(marker.at);
      const cy = yTop + rowHeight / 2;
      group.append(s("path", {
        class: `marker ${marker.kind}`,
        d: `M${cx},${cy - 7} L${cx + 7},${cy} L${cx},${cy + 7} L${cx - 7},${cy} Z`,
        dataset: { kind: marker.kind },
      }, s("title", null, marker.title)));
    }
    svg.append(group);
  });
  for (const line of lines) {
    svg.append(s("line", {
      class: `event-line ${line.kind}`, x1: x(line.at), x2: x(line.at), y1: pad.top - 4, y2: height - pad.bottom,
    }, s("title", null, line.title)));
  }
  return svg;
}
