// CSV / NDJSON upload: create the import, upload straight to its presigned URL with progress,
// then poll its status until it ends; the error report and the last imports.
import { api, clearError, showError } from './api.js';
import { field, h, select, set } from './dom.js';

export async function imports(view) {
  const { integrations } = await api('GET', '/public/v1/integrations').catch(() => ({ integrations: [] }));
  const [intWrap, integ] = select('Integration', integrations.map((i) => [i.integrationId, i.name]), { id: 'imp-integration' });
  const [fileWrap, file] = field('File (CSV with a header row of property paths, or NDJSON)', { type: 'file', id: 'imp-file', accept: '.csv,.ndjson,.jsonl,text/csv,application/x-ndjson', required: true });
  const [modeWrap, mode] = select('Mode', [['replace', 'replace (properties not in a row are deleted)'], ['merge', 'merge (others are kept)']], { id: 'imp-mode', 'data-path': 'mode' });
  const progress = h('progress', { max: 100, value: 0, id: 'imp-progress', 'aria-label': 'Upload progress' });
  const live = h('div', { id: 'imp-status', 'aria-live': 'polite' });
  const list = h('div', { id: 'imp-list' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'imp-title' },
    h('h1', { id: 'imp-title' }, 'Import a file'), intWrap, fileWrap, modeWrap,
    h('button', { type: 'submit', class: 'primary' }, 'Upload'), progress, live);
  const refresh = async () => {
    if (!integ.value) return;
    const r = await api('GET', `/public/v1/integrations/${encodeURIComponent(integ.value)}/imports`);
    set(list, h('h2', {}, 'Last imports'), r.imports.length ? h('div', { class: 'scroll' }, table(r.imports)) : h('p', {}, 'None yet.'));
  };
  integ.addEventListener('change', refresh);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearError(form);
    const f = file.files[0];
    if (!f || !integ.value) return;
    const format = /\.(nd)?jsonl?$|\.ndjson$/i.test(f.name) ? 'ndjson' : 'csv';
    try {
      const created = await api('POST', `/public/v1/integrations/${encodeURIComponent(integ.value)}/imports`, { format, mode: mode.value });
      await upload(created, f, progress);
      await poll(created, live);
      await refresh();
    } catch (e) { showError(form, e); }
  });
  set(view, form, list);
  await refresh();
}

function upload(created, f, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(created.uploadMethod || 'PUT', created.uploadUrl);
    for (const [k, v] of Object.entries(created.uploadHeaders || {})) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total); });
    xhr.addEventListener('load', () => (xhr.status < 300 ? (progress.value = 100, resolve()) : reject(new Error(`upload refused: HTTP ${xhr.status}`))));
    xhr.addEventListener('error', () => reject(new Error('the upload failed (network or CORS)')));
    xhr.send(f);
  });
}

async function poll(created, live) {
  const path = `/public/v1/integrations/${encodeURIComponent(created.integrationId)}/imports/${encodeURIComponent(created.importId)}`;
  for (let i = 0; i < 600; i++) {
    const s = await api('GET', path);
    set(live, h('p', {}, `Status ${s.status}: ${s.rowsRead} rows read, ${s.accepted} accepted, ${s.rejected} rejected`),
      s.errorsUrl ? h('p', {}, h('a', { href: s.errorsUrl, download: '' }, 'Download the error report')) : null,
      s.failure ? h('p', { class: 'error-box' }, s.failure) : null);
    if (['completed', 'failed'].includes(s.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function table(list) {
  return h('table', {}, h('thead', {}, h('tr', {}, ['Created', 'Status', 'Format', 'Mode', 'Read', 'Accepted', 'Rejected', 'Report'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map((i) => h('tr', {}, h('td', {}, i.createdAt), h('td', {}, i.status), h('td', {}, i.format), h('td', {}, i.mode),
      h('td', {}, i.rowsRead), h('td', {}, i.accepted), h('td', {}, i.rejected),
      h('td', {}, i.errorsUrl ? h('a', { href: i.errorsUrl }, 'errors') : '')))));
}
