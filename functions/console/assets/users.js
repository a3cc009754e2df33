// User lookup: attributes by integration with the time of each update, segments (static and
// rule, with the rule explain: why in, why not), erase.
import { SYSTEM_KEY, api, can, clearError, showError } from './api.js';
import { field, h, set } from './dom.js';
import { explainList, ruleSegments } from './rules.js';

export function users(view) {
  const [wrap, input] = field('User id', { required: true, id: 'lookup-id', 'data-path': 'userId', autocomplete: 'off' });
  const [sysWrap, sys] = field('System GUID (optional)', { id: 'lookup-system', 'data-path': 'systemGuid', autocomplete: 'off', value: localStorage.getItem(SYSTEM_KEY) || '' },
    'With a system, the user\'s rule segments there too, and why the user is in each or not.');
  const out = h('div', { id: 'lookup-out' });
  const form = h('form', { class: 'card', role: 'search', 'aria-labelledby': 'users-title' },
    h('h1', { id: 'users-title' }, 'User lookup'), wrap, sysWrap, h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError(form);
    set(out);
    const id = encodeURIComponent(input.value.trim());
    const system = sys.value.trim();
    if (system) localStorage.setItem(SYSTEM_KEY, system);
    const base = `/public/v1/user/system/${encodeURIComponent(system)}`;
    try {
      const [u, segs, rules] = await Promise.all([
        api('GET', `/public/v1/user/${id}`),
        system ? api('GET', `${base}/user/${id}/segments?explain=true`) : null,
        system && can('segments:read') ? ruleSegments(base) : [],
      ]);
      render(out, u, segs, rules);
    } catch (e) {
      if (e.status === 404) set(out, h('p', { class: 'card' }, 'No data for this user.'));
      else showError(form, e);
    }
  });
  set(view, form, out);
  input.focus();
}

function render(out, u, segs, rules) {
  set(out, h('h2', {}, 'User ', h('code', {}, u.userId)));
  for (const it of u.integrations) {
    const rows = Object.entries(it.attributes).map(([k, v]) => h('tr', {},
      h('th', { scope: 'row' }, k), h('td', {}, (it.types && it.types[k]) || ''), h('td', { class: 'value' }, typeof v === 'string' ? v : JSON.stringify(v))));
    out.append(h('section', { class: 'card' },
      h('h3', {}, it.name, ' ', h('small', {}, `updated ${it.updatedAt || ''}`)),
      h('table', {}, h('thead', {}, h('tr', {}, ['Attribute', 'Type', 'Value'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows))));
  }
  if (segs) out.append(systemSegments(u, segs, rules));
  else {
    out.append(h('section', { class: 'card' }, h('h3', {}, 'Segments'),
      u.segments.length
        ? h('ul', {}, u.segments.map((s) => h('li', {}, s.name, ' ', h('small', {}, `static · ${s.segmentGuid}`))))
        : h('p', {}, 'In no segment.')));
  }
  if (can('endUsers:delete')) out.append(eraseForm(out, u.userId));
}

/** The system's segments the user is in now, and each rule segment's explain. */
function systemSegments(u, segs, rules) {
  const byGuid = new Map(rules.map((r) => [r.segmentGuid, r]));
  const names = new Map([...u.integrations.map((i) => [i.integrationId, i.name]), ...rules.map((r) => [r.segmentGuid, r.name]),
    ...segs.segments.map((s) => [s.segmentGuid, s.name])]);
  const section = h('section', { class: 'card', id: 'lookup-segments', 'aria-labelledby': 'lookup-seg-title' },
    h('h3', { id: 'lookup-seg-title' }, 'Segments in this system ', h('small', {}, `evaluated ${segs.evaluatedAt}`)),
    segs.segments.length
      ? h('ul', {}, segs.segments.map((s) => h('li', {}, s.name || s.segmentGuid, ' ', h('small', {}, `${s.type} · ${s.segmentGuid}`))))
      : h('p', {}, 'In no segment of this system.'));
  const explained = segs.explain || [];
  if (explained.length) {
    section.append(h('h4', {}, 'Rule segments: why in, why not'));
    for (const o of explained) {
      const r = byGuid.get(o.segmentGuid);
      section.append(h('div', { class: `rule-explain ${o.matched ? 'in' : 'out'}` },
        h('p', {}, h('strong', {}, r ? r.name : o.segmentGuid), o.matched ? ': in' : ': not in'),
        explainList(o.explain, r ? r.rule : null, names)));
    }
  }
  return section;
}

function eraseForm(out, userId) {
  const [wrap, confirm] = field('Type the user id to confirm', { id: 'erase-confirm', autocomplete: 'off' },
    'Erases every attribute and membership of this user, and keeps the id suppressed for the account\'s window.');
  const button = h('button', { type: 'submit', class: 'danger', disabled: true }, 'Erase user');
  confirm.addEventListener('input', () => { button.disabled = confirm.value !== userId; });
  const form = h('form', { class: 'card danger-zone', 'aria-labelledby': 'erase-title' }, h('h3', { id: 'erase-title' }, 'Erase'), wrap, button);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (confirm.value !== userId) return;
    try {
      await api('DELETE', `/public/v1/user/${encodeURIComponent(userId)}`);
      set(out, h('p', { class: 'card', role: 'status' }, `User ${userId} erased.`));
    } catch (e) { showError(form, e); }
  });
  return form;
}
