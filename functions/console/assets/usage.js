// Usage of the account per day: calls, users updated, segment ids processed, as an SVG chart
// drawn with DOM calls (no library), and the same figures as a table for screen readers.
import { api } from './api.js';
import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const SERIES = [['calls', 'Calls', 'c1'], ['usersUpdated', 'Users updated', 'c2'], ['segmentIds', 'Segment ids', 'c3']];

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export async function usage(view) {
  const r = await api('GET', '/public/v1/usage');
  view.append(h('h1', {}, 'Usage'), h('p', {}, `${r.from} to ${r.to}, all clients of the account (UTC days).`));
  const W = 720; const H = 260; const pad = 40;
  const max = Math.max(1, ...r.days.flatMap((d) => SERIES.map(([k]) => d[k])));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'usage-title', class: 'chart', id: 'usage-chart' });
  svg.append(s('title', { id: 'usage-title' }, 'Calls, users updated and segment ids per day'));
  const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(1, r.days.length - 1);
  const y = (v) => H - pad - (v * (H - 2 * pad)) / max;
  svg.append(s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: 'axis' }), s('line', { x1: pad, y1: pad, x2: pad, y2: H - pad, class: 'axis' }));
  svg.append(s('text', { x: 4, y: pad, class: 'tick' }, String(max)), s('text', { x: 4, y: H - pad, class: 'tick' }, '0'));
  svg.append(s('text', { x: pad, y: H - 8, class: 'tick' }, r.from), s('text', { x: W - pad, y: H - 8, class: 'tick', 'text-anchor': 'end' }, r.to));
  for (const [k, , cls] of SERIES) {
    svg.append(s('polyline', { class: `series ${cls}`, points: r.days.map((d, i) => `${x(i)},${y(d[k])}`).join(' ') }));
  }
  view.append(h('figure', { class: 'card' }, svg, h('figcaption', {}, SERIES.map(([, label, cls]) => h('span', { class: `key ${cls}` }, label)))));
  const nonzero = r.days.filter((d) => d.calls || d.usersUpdated || d.segmentIds);
  view.append(h('div', { class: 'scroll' }, h('table', {}, h('caption', {}, 'Days with calls'),
    h('thead', {}, h('tr', {}, ['Day', ...SERIES.map(([, l]) => l)].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, nonzero.map((d) => h('tr', {}, h('th', { scope: 'row' }, d.day), SERIES.map(([k]) => h('td', { class: 'num' }, d[k]))))))));
}
