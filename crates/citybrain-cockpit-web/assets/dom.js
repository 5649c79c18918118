// What the portal and the appeals page share: building DOM nodes from
// text (never from HTML strings). Loaded before either page's script.
'use strict';

// Replaces e's children by these (nested lists flattened, null and false skipped).
function fill(e, ...children) {
  e.replaceChildren();
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  return fill(e, ...children);
}
