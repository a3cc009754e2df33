// Building DOM nodes: every value goes in as text (textContent, attributes, properties), never
// as markup, so whatever a customer sent is shown exactly as sent.

/** h('tag', {attr: value, on: {click: fn}}, child, ...): children are nodes or text. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'value' || k === 'checked') {
      el[k] = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces a node's children. */
export function set(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let fieldSeq = 0;
/** A labelled input: returns [wrapper, input]. */
export function field(label, attrs = {}, hint) {
  const id = attrs.id || `f${++fieldSeq}`;
  const input = h(attrs.tag || 'input', { ...attrs, tag: undefined, id });
  const hintEl = hint ? h('small', { id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const err = h('span', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
  return [h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl, err), input];
}

/** A select with options [[value, label], ...]. */
export function select(label, options, attrs = {}) {
  const [wrap, sel] = field(label, { ...attrs, tag: 'select' });
  for (const [v, l] of options) sel.append(h('option', { value: v }, l));
  return [wrap, sel];
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(label, text) {
  const b = h('button', { type: 'button', class: 'copy', 'aria-label': label }, 'Copy');
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text());
      b.textContent = 'Copied';
    } catch {
      // No clipboard permission (an http page, a locked-down browser): select the text instead.
      const pre = b.previousElementSibling;
      if (pre) window.getSelection().selectAllChildren(pre);
      b.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
  return b;
}

export function status(text) {
  set(document.getElementById('status'), text);
}
