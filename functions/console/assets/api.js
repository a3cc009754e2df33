// Every call the console makes goes to the API's own routes, authenticated by the session
// cookie; the custom header is what lets the API read that cookie (a cross-site page cannot
// send it without a CORS preflight, which the API never grants).
import { h, set } from './dom.js';

const KEY = 'console.session';

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(typeof err === 'string' ? (body.error_description || err) : (err.message || `HTTP ${status}`));
    this.status = status;
    this.code = typeof err === 'string' ? err : err.code;
    this.details = (err && err.details) || [];
  }
}

export function session() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    if (s && s.expiresAt > Date.now()) return s;
  } catch { /* a damaged entry is no session */ }
  return null;
}

export function saveSession(s) {
  localStorage.setItem(KEY, JSON.stringify(s));
}

export function forgetSession() {
  localStorage.removeItem(KEY);
}

export function can(scope) {
  const s = session();
  return !!s && s.scope.split(' ').includes(scope);
}

/** The key the system GUID last used is remembered under (the Segments and Users pages). */
export const SYSTEM_KEY = 'console.systemGuid';

export async function api(method, path, body, extra = {}) {
  const headers = { ...extra, 'X-Console-Request': '1', Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { error: { message: text } }; }
  if (res.status === 401) {
    forgetSession();
    location.hash = '#/signin';
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Shows an API error: each problem at the field its `details` path names, the rest on top. */
export function showError(container, err) {
  for (const el of container.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of container.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  const general = [];
  for (const d of err.details || []) {
    const path = d.path || '';
    // A JSON pointer with no field of its own (`/rule/all/0/values/2`) is shown at the
    // nearest field that holds it (`/rule/all/0/values`).
    let at = path;
    let input = at && container.querySelector(`[data-path="${CSS.escape(at)}"]`);
    while (!input && at.startsWith('/') && at.lastIndexOf('/') > 0) {
      at = at.slice(0, at.lastIndexOf('/'));
      input = container.querySelector(`[data-path="${CSS.escape(at)}"]`);
    }
    const where = input && document.getElementById(`${input.id}-err`);
    if (where) {
      const text = at === path ? d.reason : `${path.slice(at.length + 1)}: ${d.reason}`;
      where.textContent = where.textContent ? `${where.textContent}; ${text}` : text;
      input.setAttribute('aria-invalid', 'true');
    } else {
      general.push(`${d.index !== undefined ? `item ${d.index}: ` : ''}${path ? `${path}: ` : ''}${d.reason}`);
    }
  }
  let box = container.querySelector('.error-box');
  if (!box) {
    box = h('div', { class: 'error-box', role: 'alert' });
    container.prepend(box);
  }
  set(box, h('strong', {}, err.message), general.length ? h('ul', {}, general.map((g) => h('li', {}, g))) : null);
}

export function clearError(container) {
  const box = container.querySelector('.error-box');
  if (box) box.remove();
  for (const el of container.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of container.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
}
