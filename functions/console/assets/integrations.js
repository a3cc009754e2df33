// Integrations: the list, and the seeds' wizard (define, then endpoint, token and the two calls).
import { api, can, clearError, showError } from './api.js';
import { copyButton, field, h, select, set } from './dom.js';

const TYPES = [['String', 'String'], ['Number', 'Number'], ['Date', 'Date (YYYY-MM-DD)'], ['Boolean', 'Boolean']];

export async function integrations(view) {
  view.append(h('h1', {}, 'Integrations'));
  if (can('integrations:write')) {
    view.append(h('p', {}, h('a', { href: '#/integrations/new', class: 'button primary' }, 'API integration wizard')));
  }
  const { integrations: list } = await api('GET', '/public/v1/integrations');
  if (!list.length) {
    view.append(h('p', {}, 'No integration yet.'));
    return;
  }
  const table = h('table', {},
    h('caption', {}, `${list.length} integration(s)`),
    h('thead', {}, h('tr', {}, ['Name', 'User identifier', 'Properties', 'Id', ''].map((t) => h('th', { scope: 'col' }, t)))));
  const body = h('tbody');
  for (const it of list) {
    const actions = h('td');
    if (can('integrations:write')) {
      actions.append(h('button', { type: 'button', 'aria-label': `Edit ${it.name}`, on: { click: () => wizard(view, it) } }, 'Edit'),
        ' ',
        h('button', { type: 'button', 'aria-label': `Test ${it.name}`, on: { click: () => testPanel(view, it) } }, 'Test'),
        ' ',
        h('button', { type: 'button', class: 'danger', 'aria-label': `Delete ${it.name}`, on: { click: async () => {
          if (!window.confirm(`Delete the integration "${it.name}" and its attributes on every user?`)) return;
          await api('DELETE', `/public/v1/integrations/${encodeURIComponent(it.integrationId)}`);
          set(view); await integrations(view);
        } } }, 'Delete'));
    }
    body.append(h('tr', {},
      h('td', {}, it.name),
      h('td', {}, h('code', {}, it.userIdentifierProperty)),
      h('td', {}, it.properties.map((p) => `${p.name} (${p.type})`).join(', ')),
      h('td', {}, h('code', {}, it.integrationId)),
      actions));
  }
  table.append(body);
  view.append(h('div', { class: 'scroll' }, table));
}

function propertyRow(list, value = {}) {
  const n = list.children.length;
  const [pathWrap] = field('Payload path', { value: value.path || '', required: true, 'data-path': `properties[${n}].path`, class: 'prop-path' });
  const [nameWrap] = field('Stored as (optional)', { value: value.name || '', 'data-path': `properties[${n}].name`, class: 'prop-name' });
  const [typeWrap, type] = select('Type', TYPES, { 'data-path': `properties[${n}].type`, class: 'prop-type' });
  type.value = value.type || 'String';
  const row = h('fieldset', { class: 'prop-row' }, h('legend', {}, `Property ${n + 1}`), pathWrap, nameWrap, typeWrap,
    h('button', { type: 'button', class: 'link', on: { click: () => row.remove() } }, 'Remove'));
  list.append(row);
}

/** The wizard; with `existing`, its edit form (name and properties: PATCH). */
export function wizard(view, existing) {
  const [nameWrap, name] = field('Integration name', { required: true, 'data-path': 'name', id: 'wiz-name', value: existing ? existing.name : '' },
    'Shown to content authors in the rule engine: use a meaningful name.');
  const [idWrap, ident] = field('User identifier property', { required: true, 'data-path': 'userIdentifierProperty', id: 'wiz-ident', value: existing ? existing.userIdentifierProperty : '', readonly: !!existing },
    existing ? 'Set when the integration was created.' : 'The payload field holding the user id; dot-separated for nested objects (user.email).');
  const list = h('div', { class: 'props' });
  if (existing) for (const p of existing.properties) propertyRow(list, p);
  else propertyRow(list);
  const form = h('form', { class: 'card', 'aria-labelledby': 'wiz-title' },
    h('h1', { id: 'wiz-title' }, existing ? `Edit ${existing.name}` : 'API integration wizard'),
    h('p', { class: 'steps' }, existing ? 'Properties can be added and removed; a type never changes.' : 'Step 1 of 2: define the integration'),
    nameWrap, idWrap,
    h('h2', {}, 'Properties to import'),
    h('p', {}, 'A type cannot change once set; it decides the operators the rule engine offers.'),
    list,
    h('button', { type: 'button', on: { click: () => propertyRow(list) } }, 'Add a property'),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'wiz-continue' }, existing ? 'Save' : 'Continue')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError(form);
    const properties = [...list.querySelectorAll('.prop-row')].map((r) => {
      const p = { path: r.querySelector('.prop-path').value.trim(), type: r.querySelector('.prop-type').value };
      const n = r.querySelector('.prop-name').value.trim();
      if (n) p.name = n;
      return p;
    });
    try {
      if (existing) {
        await api('PATCH', `/public/v1/integrations/${encodeURIComponent(existing.integrationId)}`, { name: name.value, properties });
        set(view);
        await integrations(view);
        return;
      }
      const created = await api('POST', '/public/v1/integrations', { name: name.value, userIdentifierProperty: ident.value.trim(), properties });
      created_(view, created);
    } catch (e) {
      showError(form, e);
    }
  });
  set(view, form);
}

/** The endpoint on the host this console is served from: the API's own. */
function absolute(endpoint) {
  return new URL(new URL(endpoint, location.origin).pathname, location.origin).href;
}

function sampleValue(type) {
  return { String: 'Internal', Number: 42, Date: '2026-01-31', Boolean: true }[type];
}

/** The seeds' two calls, with this stack's host. */
export function curlCalls(created) {
  const origin = location.origin;
  const user = { [created.userIdentifierProperty]: 'john@example.com' };
  for (const p of created.properties) user[p.path] = sampleValue(p.type);
  const payload = JSON.stringify({ token: created.token, data: [user] });
  const q = (s) => `'${s.replaceAll("'", "'\\''")}'`;
  return [
    `curl --location --request POST ${q(`${origin}/accounts/connect/token`)} \\\n`
      + "--header 'Content-Type: application/x-www-form-urlencoded' \\\n"
      + "--header 'Authorization: Basic <credentials>' \\\n"
      + "--data-urlencode 'grant_type=client_credentials'",
    `curl --location --request POST ${q(absolute(created.endpoint))} \\\n`
      + "--header 'Authorization: Bearer <access_token>' \\\n"
      + "--header 'Content-Type: application/json' \\\n"
      + `--data-raw ${q(payload)}`,
  ];
}

function copyable(label, id, text) {
  return h('div', { class: 'copyable' }, h('h3', { id: `${id}-label` }, label),
    h('div', { class: 'copy-row' }, h('pre', { id, 'aria-labelledby': `${id}-label`, tabindex: '0' }, text), copyButton(`Copy ${label}`, () => text)));
}

function created_(view, created) {
  const [token, session] = curlCalls(created);
  set(view, h('section', { class: 'card', 'aria-labelledby': 'done-title' },
    h('h1', { id: 'done-title' }, `Integration "${created.name}" created`),
    h('p', { class: 'steps' }, 'Step 2 of 2: send your requests'),
    copyable('Endpoint', 'endpoint', absolute(created.endpoint)),
    copyable('Integration token', 'integration-token', created.token),
    h('p', { class: 'warning', role: 'note' }, 'The integration token is shown only now: copy it before you leave this page.'),
    h('h2', {}, 'The two calls'),
    h('p', {}, '1. Get an access token with a client of your account (<credentials> is base64 of client_id:client_secret):'),
    copyable('Token call', 'curl-token', token),
    h('p', {}, '2. Send the users, with the access_token from the first call:'),
    copyable('Update call', 'curl-update', session),
    h('p', {}, h('a', { href: '#/integrations' }, 'Back to the integrations'))));
  testPanel(view, created);
}

function testPanel(view, it) {
  let panel = view.querySelector('.test-panel');
  if (panel) panel.remove();
  const user = { [it.userIdentifierProperty]: 'john@example.com' };
  for (const p of it.properties) user[p.path] = sampleValue(p.type);
  const [wrap, area] = field('Sample payload (the data of a user-data call)', { tag: 'textarea', rows: 6, id: 'test-payload', value: JSON.stringify({ data: [user] }, null, 2) });
  const out = h('div', { class: 'test-out', 'aria-live': 'polite' });
  panel = h('form', { class: 'card test-panel', 'aria-labelledby': 'test-title' },
    h('h2', { id: 'test-title' }, `Test integration: ${it.name}`),
    h('p', {}, 'A dry run: what would be stored or refused, and why. Nothing is written.'),
    wrap, h('button', { type: 'submit' }, 'Test integration'), out);
  panel.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError(panel);
    let body;
    try { body = JSON.parse(area.value); } catch (e) { showError(panel, { message: `Not JSON: ${e.message}`, details: [] }); return; }
    try {
      const r = await api('POST', `/public/v1/integrations/${encodeURIComponent(it.integrationId)}/test`, body);
      set(out, h('p', {}, h('strong', {}, r.valid ? 'Valid' : 'Refused'), ` · mode ${r.mode || ''}`),
        h('ul', {}, (r.users || []).map((u) => h('li', {}, `${u.userId}: set ${JSON.stringify(u.set)}${u.unset && u.unset.length ? `, unset ${u.unset.join(', ')}` : ''}`))),
        (r.errors || []).length ? h('ul', { class: 'errors' }, r.errors.map((e) => h('li', {}, `${e.index !== undefined ? `item ${e.index} ` : ''}${e.path || ''}: ${e.reason}`))) : null,
        (r.ignoredFields || []).length ? h('p', {}, `Ignored (not imported): ${r.ignoredFields.map((f) => (typeof f === 'string' ? f : JSON.stringify(f))).join(', ')}`) : null);
    } catch (e) {
      showError(panel, e);
    }
  });
  view.append(panel);
}
