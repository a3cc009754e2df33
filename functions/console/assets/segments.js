// Segments of a system: the list with counts, a static segment's members page by page, and
// ids added or removed by paste or file; then its rule segments and their builder (rules.js).
import { SYSTEM_KEY as SYS, api, can, clearError, showError } from './api.js';
import { field, h, set } from './dom.js';
import { builder, catalog, ruleSegments, ruleTable } from './rules.js';

export function segments(view) {
  const [wrap, sys] = field('System GUID', { id: 'seg-system', value: localStorage.getItem(SYS) || '', required: true, 'data-path': 'systemGuid' });
  // The list and an open members panel have slots of their own: a list loaded again (the page
  // loads the remembered system by itself, and "Show segments" loads it again) must not close
  // the panel opened from the list before it.
  const listSlot = h('div');
  const memberSlot = h('div');
  const out = h('div', { id: 'seg-out' }, listSlot, memberSlot);
  let latest = 0;
  const form = h('form', { class: 'card', 'aria-labelledby': 'seg-title' }, h('h1', { id: 'seg-title' }, 'Segments'), wrap,
    h('button', { type: 'submit', class: 'primary' }, 'Show segments'));
  const load = async () => {
    const mine = ++latest;
    clearError(form);
    localStorage.setItem(SYS, sys.value.trim());
    try {
      const system = `/public/v1/user/system/${encodeURIComponent(sys.value.trim())}`;
      const base = `${system}/segment`;
      const [r, rules] = await Promise.all([api('GET', base), ruleSegments(system)]);
      const list = r.segments || r;
      const section = await rulesSection(system, list, rules, load);
      if (mine !== latest) return; // a later load owns the list
      set(listSlot, h('div', { class: 'scroll' }, h('table', {}, h('caption', {}, `${list.length} segment(s)`),
        h('thead', {}, h('tr', {}, ['Name', 'External id', 'Members', 'Updated', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, list.map((s) => h('tr', { 'data-segment': s.segmentGuid }, h('td', {}, s.name), h('td', {}, s.id || ''), h('td', { class: 'num' }, s.userCount), h('td', {}, s.updatedAt),
          h('td', {}, h('button', { type: 'button', 'aria-label': `Open ${s.name}`, on: { click: () => members(memberSlot, listSlot, base, s) } }, 'Open'))))))),
      section);
    } catch (e) { showError(form, e); }
  };
  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  set(view, form, out);
  if (sys.value) load();
}

async function members(slot, listSlot, base, s) {
  const path = `${base}/${encodeURIComponent(s.segmentGuid)}`;
  const list = h('ol', { id: 'seg-members' });
  const more = h('button', { type: 'button', hidden: true }, 'Next page');
  let cursor = null;
  const page = async () => {
    const r = await api('GET', `${path}/members?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    for (const id of r.userIds) list.append(h('li', {}, id));
    cursor = r.nextCursor;
    more.hidden = !cursor;
  };
  more.addEventListener('click', page);
  const panel = h('section', { class: 'card', 'aria-labelledby': 'mem-title' }, h('h2', { id: 'mem-title' }, `Members of ${s.name}`), list, more);
  const refresh = async () => {
    list.replaceChildren();
    cursor = null;
    await page();
    const fresh = await api('GET', path);
    // The row as the list shows it now (the list may have been loaded again since).
    const cell = listSlot.querySelector(`tr[data-segment="${CSS.escape(s.segmentGuid)}"] .num`);
    if (cell) cell.textContent = fresh.userCount;
  };
  if (can('segments:write')) panel.append(editForm(path, refresh));
  panel.classList.add('members-panel');
  set(slot, panel);
  await page();
}

function editForm(path, done) {
  const [wrap, ids] = field('User ids (one per line, or commas)', { tag: 'textarea', rows: 4, id: 'seg-ids', 'data-path': 'userIds' });
  const [fileWrap, file] = field('…or a file of ids', { type: 'file', id: 'seg-file', accept: '.txt,.csv' });
  file.addEventListener('change', async () => { if (file.files[0]) ids.value = await file.files[0].text(); });
  const form = h('form', { 'aria-label': 'Add or remove members' }, wrap, fileWrap);
  const send = (action) => async () => {
    clearError(form);
    const userIds = ids.value.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
    try {
      await api('PUT', path, { action, userIds });
      ids.value = '';
      await done(); // a failed re-read is shown here too, not lost
    } catch (e) { showError(form, e); }
  };
  form.append(h('button', { type: 'button', id: 'seg-add', on: { click: send('add') } }, 'Add ids'), ' ',
    h('button', { type: 'button', id: 'seg-remove', on: { click: send('remove') } }, 'Remove ids'));
  form.addEventListener('submit', (ev) => ev.preventDefault());
  return form;
}

/** The system's rule segments, and the builder to create or edit one. */
async function rulesSection(system, statics, rules, reload) {
  const known = [...statics.map((s) => ({ ...s, kind: 'static' })), ...rules.map((s) => ({ ...s, kind: 'rule' }))];
  const ctx = await catalog(system, known);
  const slot = h('div', { id: 'rule-builder-slot' });
  const section = h('section', { class: 'card', 'aria-labelledby': 'rules-title', id: 'rules' }, h('h2', { id: 'rules-title' }, 'Rule segments'));
  const open = async (existing) => {
    clearError(section);
    try {
      const form = await builder(ctx, existing, reload);
      set(slot, form);
      form.querySelector('#rb-name').focus();
    } catch (e) { showError(section, e); }
  };
  section.append(ruleTable(rules, ctx, open, reload, section));
  if (can('segments:write')) section.append(h('p', {}, h('button', { type: 'button', id: 'rule-new', class: 'primary', on: { click: () => open(null) } }, 'New rule segment')));
  section.append(slot);
  return section;
}
