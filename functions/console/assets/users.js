// User lookup: attributes by integration with the time of each update, segments, erase.
import { api, can, clearError, showError } from './api.js';
import { field, h, set } from './dom.js';

export function users(view) {
  const [wrap, input] = field('User id', { required: true, id: 'lookup-id', 'data-path': 'userId', autocomplete: 'off' });
  const out = h('div', { id: 'lookup-out' });
  const form = h('form', { class: 'card', role: 'search', 'aria-labelledby': 'users-title' },
    h('h1', { id: 'users-title' }, 'User lookup'), wrap, h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError(form);
    set(out);
    try {
      const u = await api('GET', `/public/v1/user/${encodeURIComponent(input.value.trim())}`);
      render(out, u);
    } catch (e) {
      if (e.status === 404) set(out, h('p', { class: 'card' }, 'No data for this user.'));
      else showError(form, e);
    }
  });
  set(view, form, out);
  input.focus();
}

function render(out, u) {
  set(out, h('h2', {}, 'User ', h('code', {}, u.userId)));
  for (const it of u.integrations) {
    const rows = Object.entries(it.attributes).map(([k, v]) => h('tr', {},
      h('th', { scope: 'row' }, k), h('td', {}, (it.types && it.types[k]) || ''), h('td', { class: 'value' }, typeof v === 'string' ? v : JSON.stringify(v))));
    out.append(h('section', { class: 'card' },
      h('h3', {}, it.name, ' ', h('small', {}, `updated ${it.updatedAt || ''}`)),
      h('table', {}, h('thead', {}, h('tr', {}, ['Attribute', 'Type', 'Value'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows))));
  }
  out.append(h('section', { class: 'card' }, h('h3', {}, 'Segments'),
    u.segments.length
      ? h('ul', {}, u.segments.map((s) => h('li', {}, s.name, ' ', h('small', {}, `static · ${s.segmentGuid}`))))
      : h('p', {}, 'In no segment.')));
  if (can('endUsers:delete')) out.append(eraseForm(out, u.userId));
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
