// What the portal, the appeals page and the one-stop page share: building
// DOM nodes from text (never from HTML strings), and a decision's
// explanation. Loaded before each page's script.
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

// A decision's explanation: every clause's value, every input with its source.
function explanation(d) {
  if (!d) return null;
  return el('details', { class: 'explanation' }, el('summary', {}, '为什么 Why — ', d.title, ' (', d.policy, ' v', d.policy_version, ')'),
    el('p', { class: 'muted' }, '依据 Legal basis: ', d.reference, ' · ', d.on),
    el('table', {}, el('tr', {}, el('th', {}, '条件 Clause'), el('th', {}, '值 Value')),
      d.clauses.map((c) => el('tr', { 'data-clause': c.id }, el('td', {}, c.label || c.id), el('td', {}, JSON.stringify(c.value))))),
    el('table', {}, el('tr', {}, el('th', {}, '数据 Input'), el('th', {}, '值 Value'), el('th', {}, '来源 Source')),
      d.inputs.map((i) => el('tr', {}, el('td', {}, i.label || i.name), el('td', {}, JSON.stringify(i.value)),
        el('td', {}, (i.sources || []).map((s) => `${s.entity} · ${s.attribute}`).join('; ') || (i.defaulted ? 'default' : ''))))));
}
