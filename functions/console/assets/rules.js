// Rule segments of a system: the list, and the builder (groups all / any / none, nested, of
// conditions whose operator menus follow each property's type), with the evaluate dry run
// against a chosen user before saving. The menus are the rule engine's own table
// (/console/operators.json, written by the console function from domain::rules); every
// judgement (types, values, regexes, cycles, timezones) is the API's, shown at its field.
import { api, can, clearError, showError } from './api.js';
import { field, h, select, set, status } from './dom.js';

const GROUPS = { all: 'all of', any: 'any of', none: 'none of' };
const OUTCOMES = { matched: 'matched', failed: 'failed', missing: 'missing (no value)', stale: 'stale (deleted since saved)' };

let menus = null;
async function operators() {
  if (!menus) {
    const res = await fetch('/console/operators.json', { credentials: 'same-origin' });
    menus = await res.json();
  }
  return menus;
}

const words = (op) => op.replaceAll('_', ' ');

/**
 * What the menus offer in one system: the account's properties (any integration, or one) and
 * the system's segments, with names for the explain. Without `integrations:read` the
 * properties are typed in by name.
 */
export async function catalog(base, segments) {
  const m = await operators();
  let integrations = [];
  if (can('integrations:read')) {
    try { ({ integrations } = await api('GET', '/public/v1/integrations')); } catch { integrations = []; }
  }
  const choices = [];
  const seen = new Map();
  for (const it of integrations) for (const p of it.properties) if (!seen.has(p.name)) seen.set(p.name, p.type);
  for (const [name, type] of seen) choices.push({ key: `a|*|${name}`, group: 'Any integration', property: name, type, label: `${name} (${type})` });
  for (const it of integrations) {
    for (const p of it.properties) {
      choices.push({ key: `a|${it.integrationId}|${p.name}`, group: `Integration ${it.name}`, integration: it.integrationId, property: p.name, type: p.type, label: `${p.name} (${p.type}) in ${it.name}` });
    }
  }
  for (const s of segments) choices.push({ key: `s|${s.segmentGuid}`, group: 'Segment membership', segment: s.segmentGuid, label: `${s.name} (${s.kind})` });
  const names = new Map([...integrations.map((i) => [i.integrationId, i.name]), ...segments.map((s) => [s.segmentGuid, s.name])]);
  return { base, menus: m, choices, names, typed: integrations.length > 0 };
}

/** Every rule segment of the system (at most two pages of 100: a system holds at most 200). */
export async function ruleSegments(base) {
  const all = [];
  let cursor = null;
  do {
    const r = await api('GET', `${base}/rule-segment?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    all.push(...r.segments);
    cursor = r.nextCursor;
  } while (cursor);
  return all;
}

/** The node a JSON pointer names in `root`. */
function at(root, pointer) {
  let node = root;
  for (const t of pointer.split('/').slice(1)) node = node == null ? undefined : node[t.replaceAll('~1', '/').replaceAll('~0', '~')];
  return node;
}

/** A condition or group in words, for lists and explains (display only). */
export function describe(node, names) {
  if (!node || typeof node !== 'object') return '';
  const kind = Object.keys(GROUPS).find((k) => Array.isArray(node[k]));
  if (kind) return `${GROUPS[kind]} (${node[kind].map((c) => describe(c, names)).join('; ')})`;
  if (node.segment) return `${node.op === 'not_in' ? 'not in' : 'in'} segment ${names.get(node.segment) || node.segment}`;
  const a = node.attribute || {};
  const where = a.integration ? ` in ${names.get(a.integration) || a.integration}` : '';
  const operand = node.values !== undefined ? ` ${JSON.stringify(node.values)}` : node.value !== undefined ? ` ${JSON.stringify(node.value)}` : '';
  return `${a.property}${where} ${words(node.op || '')}${operand}${node.ignoreCase ? ' (ignoring case)' : ''}`;
}

/** One condition's outcome: matched / failed / missing / stale, whether it holds, what it saw. */
function outcome(e, names) {
  const saw = e.value !== undefined ? `, saw ${JSON.stringify(e.value)}` : '';
  const where = e.integration ? ` in ${names.get(e.integration) || e.integration}` : '';
  return `${OUTCOMES[e.outcome] || e.outcome}${saw}${where}: ${e.holds ? 'holds' : 'does not hold'}`;
}

/** The explain of one rule: each condition in words, its outcome and the value it saw. */
export function explainList(entries, rule, names) {
  return h('ul', { class: 'explain' }, entries.map((e) => h('li', { class: `outcome-${e.outcome}` },
    h('span', { class: 'cond' }, describe(at({ rule }, e.pointer), names) || e.pointer), ' — ', h('strong', {}, outcome(e, names)))));
}

/** A rule segment's stale conditions, as the list says them. */
function staleCell(ctx, s) {
  const stale = s.staleConditions;
  if (!stale) return h('td', { class: 'stale' }, '—');
  return h('td', { class: 'stale' }, stale.length
    ? h('strong', { class: 'outcome-stale' }, `${stale.length} stale: `, stale.map((p) => describe(at({ rule: s.rule }, p), ctx.names) || p).join('; '))
    : 'none');
}

/** The rule segments table; `edit(segment)` opens one in the builder. */
export function ruleTable(list, ctx, edit, removed, box) {
  const write = can('segments:write');
  return h('div', { class: 'scroll' }, h('table', { id: 'rule-list' }, h('caption', {}, `${list.length} rule segment(s)`),
    h('thead', {}, h('tr', {}, ['Name', 'Rule', 'Timezone', 'Version', 'Updated', 'Stale conditions', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map((s) => h('tr', {},
      h('td', {}, s.name, s.description ? h('small', { class: 'block' }, s.description) : null),
      h('td', { class: 'rule-text' }, describe(s.rule, ctx.names)),
      h('td', {}, s.timezone), h('td', { class: 'num' }, s.version), h('td', {}, s.updatedAt),
      staleCell(ctx, s),
      h('td', {}, write ? [
        h('button', { type: 'button', 'aria-label': `Edit ${s.name}`, on: { click: () => edit(s) } }, 'Edit'), ' ',
        h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${s.name}`, on: { click: async () => {
          if (!window.confirm(`Delete the rule segment "${s.name}"?`)) return;
          try {
            await api('DELETE', `${ctx.base}/rule-segment/${encodeURIComponent(s.segmentGuid)}`, undefined, { 'If-Match': `"${s.version}"` });
            status(`Rule segment ${s.name} deleted.`);
            removed();
          } catch (e) { showError(box, e); }
        } } }, 'Delete')] : null))))));
}

let seq = 0;

/** A condition row; `c` is the condition as saved (or nothing, for a new one). */
function conditionNode(ctx, c = {}) {
  const n = ++seq;
  const key = c.segment ? `s|${c.segment}` : c.attribute ? `a|${c.attribute.integration || '*'}|${c.attribute.property}` : '';
  const choices = [...ctx.choices];
  if (key && !choices.some((x) => x.key === key)) {
    // Deleted since saved, or not readable by this client: kept as it is, typed by nobody.
    choices.push(c.segment
      ? { key, group: 'Not found', segment: c.segment, label: `segment ${c.segment}` }
      : { key, group: 'Not found', integration: c.attribute.integration, property: c.attribute.property, label: `${c.attribute.property} (unknown)` });
  }
  const [propWrap, prop] = field(ctx.typed ? 'Property or segment' : 'Property name, or a segment', { tag: 'select', id: `rc${n}-prop`, class: 'rc-prop' });
  const groups = new Map();
  for (const ch of choices) {
    if (!groups.has(ch.group)) groups.set(ch.group, h('optgroup', { label: ch.group }));
    groups.get(ch.group).append(h('option', { value: ch.key }, ch.label));
  }
  if (!ctx.typed) prop.append(h('option', { value: 'typed' }, 'A property typed below'));
  prop.append(...groups.values());
  prop.value = key || prop.options[0]?.value || '';
  const [nameWrap, name] = field('Property name', { id: `rc${n}-name`, value: c.attribute && !ctx.typed ? c.attribute.property : '' });
  const [typeWrap, type] = select('Its type', Object.keys(ctx.menus.types).map((t) => [t, t]), { id: `rc${n}-type` });
  const [opWrap, op] = field('Operator', { tag: 'select', id: `rc${n}-op`, class: 'rc-op' });
  const operand = h('div', { class: 'rc-operand' });
  const [icWrap, ic] = field('Ignore case', { type: 'checkbox', id: `rc${n}-ic`, class: 'rc-ic', checked: !!c.ignoreCase });
  const explain = h('p', { class: 'rc-explain', 'aria-live': 'polite' });
  const row = h('fieldset', { class: 'rule-cond' }, h('legend', {}, 'Condition'));
  let inputs = {};

  const chosen = () => choices.find((x) => x.key === prop.value) || { key: 'typed', property: name.value.trim(), type: type.value };
  const offered = () => {
    const ch = chosen();
    if (ch.segment) return ctx.menus.segmentOps.map((o) => ({ op: o, operand: 'none', ignoreCase: false }));
    if (ch.type) return ctx.menus.types[ch.type] || [];
    // A property of unknown type: every operator, the API says which fits.
    const all = new Map();
    for (const list of Object.values(ctx.menus.types)) for (const o of list) if (!all.has(o.op)) all.set(o.op, o);
    return [...all.values()];
  };
  const spec = () => offered().find((o) => o.op === op.value) || { operand: 'none', ignoreCase: false };

  const drawOperand = () => {
    const s = spec();
    const t = chosen().type;
    const old = [c.value, ...(c.values || [])].filter((v) => v !== undefined).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
    const kind = t === 'Date' ? 'date' : 'text';
    const mode = t === 'Number' ? 'decimal' : undefined;
    inputs = {};
    const parts = [];
    if (s.operand === 'one') {
      const [w, i] = field('Value', { type: kind, inputmode: mode, id: `rc${n}-value`, value: old[0] || '' });
      inputs.value = i; parts.push(w);
    } else if (s.operand === 'days') {
      const [w, i] = field('Days', { type: 'number', min: 0, step: 1, id: `rc${n}-value`, value: old[0] || '' });
      inputs.value = i; parts.push(w);
    } else if (s.operand === 'list') {
      const [w, i] = field('Values, one per line', { tag: 'textarea', rows: 3, id: `rc${n}-values`, value: old.join('\n') });
      inputs.values = i; parts.push(w);
    } else if (s.operand === 'pair') {
      const [lw, l] = field('From (inclusive)', { type: kind, inputmode: mode, id: `rc${n}-low`, value: old[0] || '' });
      const [hw, hi] = field('To (inclusive)', { type: kind, inputmode: mode, id: `rc${n}-high`, value: old[1] || '' });
      inputs.low = l; inputs.high = hi; parts.push(lw, hw);
    }
    set(operand, parts);
    icWrap.hidden = !s.ignoreCase;
  };
  const drawOps = () => {
    const keep = op.value || c.op;
    set(op, offered().map((o) => h('option', { value: o.op }, words(o.op))));
    if ([...op.options].some((o) => o.value === keep)) op.value = keep;
    const typedHere = prop.value === 'typed';
    nameWrap.hidden = !typedHere;
    typeWrap.hidden = !typedHere;
    drawOperand();
  };
  prop.addEventListener('change', drawOps);
  type.addEventListener('change', drawOps);
  op.addEventListener('change', drawOperand);
  drawOps();

  row.append(propWrap, nameWrap, typeWrap, opWrap, operand, icWrap,
    h('button', { type: 'button', class: 'link', on: { click: () => row.remove() } }, 'Remove condition'), explain);
  row.explain = explain;

  /** The condition as the API takes it, its fields named by `ptr` for the API's errors. */
  row.rule = (ptr) => {
    prop.dataset.path = ptr;
    name.dataset.path = `${ptr}/attribute/property`;
    op.dataset.path = `${ptr}/op`;
    ic.dataset.path = `${ptr}/ignoreCase`;
    const ch = chosen();
    if (ch.segment) return { segment: ch.segment, op: op.value };
    const attribute = ch.integration ? { integration: ch.integration, property: ch.property } : { property: ch.property };
    const out = { attribute, op: op.value };
    const s = spec();
    // Numbers go as text: the API keeps every digit of a string (a JS number would not).
    if (s.operand === 'one') {
      inputs.value.dataset.path = `${ptr}/value`;
      out.value = inputs.value.value;
    } else if (s.operand === 'days') {
      inputs.value.dataset.path = `${ptr}/value`;
      const v = inputs.value.value.trim();
      out.value = /^\d+$/.test(v) ? Number(v) : v;
    } else if (s.operand === 'list') {
      inputs.values.dataset.path = `${ptr}/values`;
      out.values = inputs.values.value.split('\n').map((v) => v.trim()).filter(Boolean);
    } else if (s.operand === 'pair') {
      inputs.low.dataset.path = `${ptr}/values/0`;
      inputs.high.dataset.path = `${ptr}/values/1`;
      out.values = [inputs.low.value, inputs.high.value];
    }
    if (s.ignoreCase && ic.checked) out.ignoreCase = true;
    return out;
  };
  return row;
}

/** A group: `all`, `any` or `none` of its conditions and groups. */
function groupNode(ctx, g, depth) {
  const n = ++seq;
  const kind = Object.keys(GROUPS).find((k) => Array.isArray(g && g[k]));
  const [kindWrap, kindSel] = select('Match', ctx.menus.groups.map((k) => [k, `${GROUPS[k]} these`]), { id: `rg${n}-kind`, class: 'rg-kind' });
  kindSel.value = kind || 'all';
  const children = h('div', { class: 'rg-children' });
  const el = h('fieldset', { class: `rule-group depth-${depth}` }, h('legend', {}, depth === 1 ? 'Rule' : 'Group'), kindWrap, children);
  const add = (node) => children.append(node);
  for (const c of (kind ? g[kind] : g ? [g] : [{}])) {
    add(Object.keys(GROUPS).some((k) => Array.isArray(c[k])) ? groupNode(ctx, c, depth + 1) : conditionNode(ctx, c));
  }
  const actions = h('div', { class: 'rg-actions' },
    h('button', { type: 'button', class: 'rg-add-cond', on: { click: () => add(conditionNode(ctx)) } }, 'Add condition'), ' ',
    depth < ctx.menus.maxDepth ? h('button', { type: 'button', class: 'rg-add-group', on: { click: () => add(groupNode(ctx, null, depth + 1)) } }, 'Add group') : null, ' ',
    depth > 1 ? h('button', { type: 'button', class: 'link', on: { click: () => el.remove() } }, 'Remove group') : null);
  el.append(actions);
  el.rule = (ptr) => {
    kindSel.dataset.path = ptr;
    const k = kindSel.value;
    return { [k]: [...children.children].map((c, i) => c.rule(`${ptr}/${k}/${i}`)) };
  };
  return el;
}

/**
 * The builder: name, description, timezone, the rule, a dry run against a chosen user (the
 * explain shown at each condition), then save (`existing`: a PUT at the version read).
 */
export async function builder(ctx, existing, saved) {
  const fresh = existing ? await api('GET', `${ctx.base}/rule-segment/${encodeURIComponent(existing.segmentGuid)}`) : null;
  const [nameWrap, name] = field('Name', { id: 'rb-name', required: true, 'data-path': '/name', value: fresh ? fresh.name : '' });
  const [descWrap, desc] = field('Description (optional)', { id: 'rb-desc', 'data-path': '/description', value: fresh && fresh.description ? fresh.description : '' });
  const [tzWrap, tz] = field('Timezone', { id: 'rb-tz', 'data-path': '/timezone', list: 'rb-tzs', value: fresh ? fresh.timezone : 'UTC', autocomplete: 'off' },
    'An IANA name: it decides "today" for the date operators.');
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  tzWrap.append(h('datalist', { id: 'rb-tzs' }, ['UTC', ...zones].map((z) => h('option', { value: z }))));
  const root = groupNode(ctx, fresh ? fresh.rule : null, 1);
  const [userWrap, user] = field('User id to check the rule against', { id: 'rb-user', 'data-path': '/userId', autocomplete: 'off' },
    'A dry run on that user\'s stored attributes, nothing written; with a user chosen, saving checks first.');
  const out = h('div', { id: 'rb-explain', 'aria-live': 'polite' });
  const form = h('form', { class: 'card rule-builder', 'aria-labelledby': 'rb-title' },
    h('h2', { id: 'rb-title' }, fresh ? `Edit rule segment ${fresh.name}` : 'New rule segment'),
    nameWrap, descWrap, tzWrap, root,
    h('div', { class: 'check' }, userWrap, h('button', { type: 'button', id: 'rb-check' }, 'Check against this user')),
    out,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'rb-save' }, fresh ? 'Save changes' : 'Save rule segment'), ' ',
      h('button', { type: 'button', class: 'link', id: 'rb-close', on: { click: () => form.remove() } }, 'Close')));
  if (fresh && fresh.staleConditions && fresh.staleConditions.length) {
    root.rule('/rule');
    for (const p of fresh.staleConditions) {
      const cond = form.querySelector(`[data-path="${CSS.escape(p)}"]`);
      if (cond) set(cond.closest('.rule-cond').explain, h('strong', { class: 'stale' }, 'Stale: it names an integration, property or segment deleted since it was saved; it is false.'));
    }
    form.insertBefore(h('p', { class: 'warning', role: 'note' }, `${fresh.staleConditions.length} stale condition(s): ${fresh.staleConditions.join(', ')}`), nameWrap);
  }
  const body = () => {
    const b = { name: name.value, rule: root.rule('/rule'), timezone: tz.value.trim() || 'UTC' };
    if (desc.value.trim()) b.description = desc.value.trim();
    return b;
  };
  /** The dry run against the chosen user; false when the API refused it (shown at its field). */
  const check = async () => {
    clearError(form);
    for (const e of form.querySelectorAll('.rc-explain')) set(e);
    const b = body();
    try {
      const r = await api('POST', `${ctx.base}/rule-segment/evaluate`, { rule: b.rule, timezone: b.timezone, userId: user.value.trim() });
      for (const e of r.explain) {
        const cond = form.querySelector(`[data-path="${CSS.escape(e.pointer)}"]`);
        if (cond && cond.closest('.rule-cond')) set(cond.closest('.rule-cond').explain, h('strong', { class: `outcome-${e.outcome}` }, outcome(e, ctx.names)));
      }
      set(out, h('div', { class: r.matched ? 'verdict in' : 'verdict out', role: 'status' },
        h('p', {}, h('strong', {}, r.matched ? `${user.value.trim()} matches this rule.` : `${user.value.trim()} does not match this rule.`)),
        explainList(r.explain, b.rule, ctx.names)));
      return true;
    } catch (e) {
      set(out);
      showError(form, e.status === 404 ? { message: e.message, details: [{ path: '/userId', reason: e.message }] } : e);
      return false;
    }
  };
  form.querySelector('#rb-check').addEventListener('click', check);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    // With a user chosen, the rule is checked against it first, as it is now.
    if (user.value.trim() && !(await check())) return;
    try {
      const s = fresh
        ? await api('PUT', `${ctx.base}/rule-segment/${encodeURIComponent(fresh.segmentGuid)}`, body(), { 'If-Match': `"${fresh.version}"` })
        : await api('POST', `${ctx.base}/rule-segment`, body());
      status(`Rule segment ${s.name} saved (version ${s.version}).`);
      form.remove();
      saved(s);
    } catch (e) { showError(form, e); }
  });
  return form;
}
