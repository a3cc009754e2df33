// The console's shell: the hash router, the navigation the session's scopes allow, sign-out.
import { api, can, forgetSession, session } from './api.js';
import { set, h } from './dom.js';
import { signIn } from './signin.js';
import { integrations, wizard } from './integrations.js';
import { users } from './users.js';
import { imports } from './imports.js';
import { segments } from './segments.js';
import { usage } from './usage.js';

const pages = {
  integrations: { scope: 'integrations:read', render: integrations, title: 'Integrations' },
  'integrations/new': { scope: 'integrations:write', render: wizard, title: 'New integration' },
  users: { scope: 'endUsers:read', render: users, title: 'User lookup' },
  imports: { scope: 'endUserUpdate:write', render: imports, title: 'Imports' },
  segments: { scope: 'segments:read', render: segments, title: 'Segments' },
  usage: { scope: 'integrations:read', render: usage, title: 'Usage' },
};

function firstAllowed() {
  const name = Object.keys(pages).find((p) => can(pages[p].scope));
  return name ? `#/${name}` : null;
}

async function route() {
  const view = document.getElementById('view');
  const nav = document.getElementById('nav');
  const s = session();
  const name = location.hash.replace(/^#\/?/, '');
  if (!s) {
    nav.hidden = true;
    document.title = 'Sign in · Console';
    signIn(view, () => go(firstAllowed() || '#/'));
    return;
  }
  nav.hidden = false;
  for (const a of nav.querySelectorAll('a[data-scope]')) {
    a.hidden = !can(a.dataset.scope);
    if (a.getAttribute('href') === `#/${name.split('/')[0]}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const page = pages[name];
  if (!page || !can(page.scope)) {
    const next = firstAllowed();
    if (next && next !== location.hash) { location.hash = next; return; }
    set(view, h('h1', {}, 'Nothing to show'), h('p', {}, 'This client holds no scope the console uses.'));
    return;
  }
  document.title = `${page.title} · Console`;
  set(view);
  try {
    await page.render(view);
  } catch (e) {
    view.append(h('div', { class: 'error-box', role: 'alert' }, e.message));
  }
  view.focus();
}

document.getElementById('signout').addEventListener('click', async () => {
  try { await fetch('/console/session', { method: 'DELETE', credentials: 'same-origin' }); } catch { /* signed out locally anyway */ }
  forgetSession();
  go('#/signin');
});

// A new hash routes through its hashchange event; only an unchanged one is routed here. Both
// at once rendered a page twice: a sign-in form typed into was replaced by an empty one.
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

window.addEventListener('hashchange', route);
route();
export { api };
