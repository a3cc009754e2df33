// Sign-in with a client id and secret of the account: the console's own route mints the
// token (the token route's code) and keeps it in an HttpOnly cookie; the page keeps only the
// scopes, to show what they allow.
import { saveSession, showError } from './api.js';
import { field, h, set } from './dom.js';

export function signIn(view, done) {
  const [idWrap, id] = field('Client id', { name: 'client_id', autocomplete: 'username', required: true, 'data-path': 'client_id' });
  const [secretWrap, secret] = field('Client secret', { name: 'client_secret', type: 'password', autocomplete: 'current-password', required: true, 'data-path': 'client_secret' });
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('p', {}, 'Use an API client of your account. The console shows what its scopes allow.'),
    idWrap, secretWrap,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: id.value.trim(), client_secret: secret.value });
    const res = await fetch('/console/session', { method: 'POST', body, credentials: 'same-origin' });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const message = res.status === 401 ? 'The client id or secret is wrong.' : (data.error_description || `HTTP ${res.status}`);
      showError(form, { message, details: [] });
      return;
    }
    secret.value = '';
    saveSession({ clientId: data.clientId, scope: data.scope, expiresAt: Date.now() + data.expiresIn * 1000 });
    done();
  });
  set(view, form);
  id.focus();
}
