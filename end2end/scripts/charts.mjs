// SVG charts for the benchmark report: plain files a Markdown viewer shows
// as images, with no dependency. Two kinds: horizontal bars (one value per
// label, optionally a second series beside it) and lines against a
// logarithmic x axis.

const FONT = 'font-family="system-ui, sans-serif" font-size="12"';
const COLORS = ['#3b6ea8', '#d08a2e', '#5a9a5a', '#a04a6a'];

const escape = (text) => String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Horizontal bars. `rows`: [{ label, values: [number, …] }], one value per
 * entry of `series` (their names, shown as a legend when there are two or
 * more). `format` writes a value as text at the end of its bar.
 */
export function bars({ title, series, rows, format }) {
  const labelWidth = 250;
  const barArea = 380;
  const valueWidth = 110;
  const barHeight = 16;
  const groupGap = 10;
  const top = series.length > 1 ? 52 : 34;
  const groupHeight = series.length * barHeight + groupGap;
  const height = top + rows.length * groupHeight + 10;
  const width = labelWidth + barArea + valueWidth;
  const max = Math.max(...rows.flatMap((r) => r.values.filter((v) => v != null)), 1e-9);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
  if (series.length > 1) {
    series.forEach((name, i) => {
      const x = 8 + i * 200;
      parts.push(`<rect x="${x}" y="30" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
      parts.push(`<text x="${x + 18}" y="40">${escape(name)}</text>`);
    });
  }
  rows.forEach((row, r) => {
    const y0 = top + r * groupHeight;
    parts.push(
      `<text x="${labelWidth - 8}" y="${y0 + (series.length * barHeight) / 2 + 4}" text-anchor="end">${escape(row.label)}</text>`,
    );
    row.values.forEach((value, i) => {
      if (value == null) return;
      const y = y0 + i * barHeight;
      const w = Math.max(1, (value / max) * barArea);
      parts.push(`<rect x="${labelWidth}" y="${y + 2}" width="${w.toFixed(1)}" height="${barHeight - 4}" fill="${COLORS[i % COLORS.length]}"/>`);
      parts.push(`<text x="${labelWidth + w + 6}" y="${y + barHeight - 4}">${escape(format(value))}</text>`);
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/**
 * Lines against a log10 x axis and a log10 y axis. `lines`: [{ name,
 * points: [[x, y], …] }]. `xLabel`, `yLabel` name the axes; `format`
 * writes a y value.
 */
export function logLines({ title, lines, xLabel, yLabel, format }) {
  const width = 640;
  const height = 340;
  const left = 70;
  const right = 150;
  const top = 36;
  const bottom = 46;
  const xs = lines.flatMap((l) => l.points.map((p) => p[0]));
  const ys = lines.flatMap((l) => l.points.map((p) => p[1])).filter((y) => y > 0);
  const [x0, x1] = [Math.log10(Math.min(...xs)), Math.log10(Math.max(...xs))];
  const [y0, y1] = [Math.floor(Math.log10(Math.min(...ys))), Math.ceil(Math.log10(Math.max(...ys)))];
  const px = (x) => left + ((Math.log10(x) - x0) / Math.max(x1 - x0, 1e-9)) * (width - left - right);
  const py = (y) => height - bottom - ((Math.log10(y) - y0) / Math.max(y1 - y0, 1e-9)) * (height - top - bottom);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="8" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
  for (let e = y0; e <= y1; e += 1) {
    const y = py(10 ** e);
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${escape(format(10 ** e))}</text>`);
  }
  for (const x of [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(`<text x="${px(x)}" y="${height - bottom + 16}" text-anchor="middle">${x.toLocaleString('en-US')}</text>`);
  }
  parts.push(`<text x="${(left + width - right) / 2}" y="${height - 10}" text-anchor="middle">${escape(xLabel)}</text>`);
  parts.push(
    `<text x="14" y="${(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + height - bottom) / 2})">${escape(yLabel)}</text>`,
  );
  lines.forEach((line, i) => {
    const color = COLORS[i % COLORS.length];
    const points = line.points.filter((p) => p[1] > 0);
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of points) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${color}"/>`);
    const last = points.at(-1);
    if (last) parts.push(`<text x="${px(last[0]) + 8}" y="${py(last[1]) + 4}" fill="${color}">${escape(line.name)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
