// An SVG chart of a bench result: warm exec latency per system (log scale:
// the systems span three orders of magnitude) and fan-out outcomes.
// Hand-written SVG: two bar charts need no plotting library.

interface ChartInput {
  date: string;
  exec_latency_ms: Record<string, { p50: number; p99: number }>;
  fanout: Array<{ system: string; n: number; ok: number; failed: number; wall_ms: number; note?: string }>;
}

const WIDTH = 900;
const ROW = 24;
const LABEL = 190;
const BAR = WIDTH - LABEL - 140;

export function renderChart(r: ChartInput): string {
  const parts: string[] = [];
  let y = 30;
  parts.push(text(10, y, `sshmux bench, ${r.date.slice(0, 10)}`, 16, 'bold'));
  y += 30;

  parts.push(text(10, y, 'Warm exec latency of `true`, p50 and p99 (ms, log scale)', 14, 'bold'));
  y += 12;
  const lat = Object.entries(r.exec_latency_ms);
  const max = Math.max(...lat.map(([, v]) => v.p99));
  const min = Math.min(...lat.map(([, v]) => v.p50));
  const lo = Math.log10(Math.max(0.1, min / 2));
  const hi = Math.log10(max * 1.2);
  const scale = (ms: number): number => ((Math.log10(Math.max(ms, 0.1)) - lo) / (hi - lo)) * BAR;
  for (const [system, v] of lat) {
    y += ROW;
    parts.push(text(10, y - 6, system, 12));
    parts.push(`<rect x="${LABEL}" y="${y - ROW + 6}" width="${scale(v.p99).toFixed(1)}" height="${ROW - 10}" fill="#c6dbef"/>`);
    parts.push(`<rect x="${LABEL}" y="${y - ROW + 6}" width="${scale(v.p50).toFixed(1)}" height="${ROW - 10}" fill="#2171b5"/>`);
    parts.push(text(LABEL + scale(v.p99) + 6, y - 6, `${v.p50} / ${v.p99} ms`, 11));
  }
  y += 40;

  for (const n of [...new Set(r.fanout.map((f) => f.n))]) {
    parts.push(text(10, y, `Fan-out: ${n} concurrent \`sleep 1; echo\`, MaxSessions 10, MaxStartups 10:30:100 (ok / failed, wall time)`, 14, 'bold'));
    y += 12;
    for (const f of r.fanout.filter((x) => x.n === n)) {
      y += ROW;
      parts.push(text(10, y - 6, f.system, 12));
      if (f.note) {
        parts.push(text(LABEL, y - 6, 'not run (see JSON)', 11));
        continue;
      }
      const okW = (f.ok / n) * BAR;
      parts.push(`<rect x="${LABEL}" y="${y - ROW + 6}" width="${okW.toFixed(1)}" height="${ROW - 10}" fill="#238b45"/>`);
      parts.push(`<rect x="${(LABEL + okW).toFixed(1)}" y="${y - ROW + 6}" width="${((f.failed / n) * BAR).toFixed(1)}" height="${ROW - 10}" fill="#cb181d"/>`);
      parts.push(text(LABEL + BAR + 6, y - 6, `${f.ok} / ${f.failed}, ${(f.wall_ms / 1000).toFixed(1)} s`, 11));
    }
    y += 40;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`;
}

function text(x: number, y: number, s: string, size: number, weight = 'normal'): string {
  const escaped = s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}" font-weight="${weight}">${escaped}</text>`;
}
