// The enterprise one-stop page (深i企): an enterprise signed in sees, in one
// place, its appeals, the policies it matches today (each with why), its
// applications and life-event bundles, and the benefits granted to it; a citizen sees the same of
// its own; officers name the enterprise. One call: /api/v1/enterprise-overview.
'use strict';

const main = document.getElementById('main');
const when = (t) => (t ? new Date(t).toLocaleString('zh-CN', { hour12: false }) : '');
const badge = (s) => el('span', { class: `badge ${s}`, 'data-status': s }, s);

async function api(path) {
  const r = await fetch(`/api/v1${path}`, { credentials: 'same-origin' });
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch { v = text; }
  if (!r.ok) throw new Error((v && v.detail) || `${r.status}`);
  return v;
}

function section(title, testid, ...children) {
  return el('section', { 'data-testid': testid }, el('h2', {}, title), ...children);
}

function login(reason) {
  fill(main, el('section', {}, el('h2', {}, '登录 Log in'),
    reason ? el('p', { class: 'error' }, reason) : null,
    el('form', { method: 'post', action: '/login' },
      el('input', { type: 'hidden', name: 'next', value: '/enterprise' }),
      el('label', {}, '令牌 Token ', el('input', { type: 'password', name: 'token', autocomplete: 'off' })),
      el('p', {}, el('button', { type: 'submit' }, '登录 Log in'))),
    el('p', { class: 'muted' }, 'citybrain demo prints a token per role (try "enterprise").')));
}

function overview(o) {
  const a = o.appeals;
  return [
    el('section', { 'data-testid': 'subject' }, el('h2', {}, o.subject)),
    section(`政策匹配 Policies you match today (${o.matchingPolicies.length})`, 'matching-policies',
      o.matchingPolicies.length ? null : el('p', { class: 'muted' }, '—'),
      o.matchingPolicies.map((d) => el('div', { class: 'item policy', 'data-policy': d.policy },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, d.title), badge('eligible'), d.amount ? el('b', {}, `¥${Number(d.amount).toFixed(2)}`) : null),
        explanation(d)))),
    section(`我的诉求 Appeals (${a.total})`, 'enterprise-appeals',
      a.appeals.length ? null : el('p', { class: 'muted' }, '—'),
      a.appeals.map((x) => el('div', { class: 'item appeal', 'data-id': x.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, x.description, el('br'),
          el('span', { class: 'muted' }, x.category, ' · ', x.department, ' · 期限 due ', when(x.due))), badge(x.status)),
        x.answer ? el('p', { class: 'notice' }, '答复 Answer: ', x.answer) : null)),
      el('p', {}, el('a', { href: '/appeals' }, '反映新诉求 File an appeal'))),
    section(`我的申请 Applications (${o.applications.length})`, 'enterprise-applications',
      o.applications.length ? null : el('p', { class: 'muted' }, '—'),
      o.applications.map((x) => el('div', { class: 'item application', 'data-id': x.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, x.service, ' · ', when(x.submitted)), badge(x.status)),
        explanation(x.decision)))),
    section(`一件事 Life-event bundles (${o.bundles.length})`, 'enterprise-bundles',
      o.bundles.length ? null : el('p', { class: 'muted' }, '—'),
      o.bundles.map((x) => el('div', { class: 'item instance', 'data-id': x.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, x.bundle, ' · ', when(x.created)), badge(x.status)),
        el('ul', { class: 'steps' }, Object.entries(x.steps || {}).map(([id, st]) => el('li', { 'data-step': id }, badge(st.status), ' ', id)))))),
    section(`免申即享 Granted (${o.grants.length})`, 'enterprise-grants',
      o.grants.length ? null : el('p', { class: 'muted' }, '—'),
      o.grants.map((x) => el('div', { class: 'item grant', 'data-id': x.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, x.title, ' · ', when(x.granted)), badge('granted'),
          el('b', {}, x.amount ? `¥${Number(x.amount).toFixed(2)}` : '')),
        explanation(x.explanation)))),
  ];
}

async function render() {
  let me;
  try { me = await api('/me'); } catch (e) { return login(e.message); }
  if (me.kind === 'public') return login(null);
  fill(document.getElementById('who'), me.subject || (me.departments || []).join(', ') || me.id,
    el('form', { method: 'post', action: '/logout', style: 'display:inline' }, el('button', { class: 'secondary', type: 'submit' }, '退出 Log out')));
  const staff = me.kind === 'officer' || me.kind === 'administrator';
  const body = el('div', { style: 'display:contents' });
  const show = async (subject) => {
    try {
      const o = await api(`/enterprise-overview${subject ? `?subject=${encodeURIComponent(subject)}` : ''}`);
      fill(body, overview(o));
    } catch (e) { fill(body, el('p', { class: 'error', role: 'alert' }, e.message)); }
  };
  if (staff) {
    const subject = el('input', { type: 'text', placeholder: 'urn:ngsi-ld:Organization:…', 'data-testid': 'subject-input' });
    fill(main, el('section', {}, el('h2', {}, '查看企业 Look up an enterprise'),
      el('div', { class: 'row' }, subject, el('button', { onclick: () => show(subject.value.trim()) }, '查看 Show'))), body);
  } else {
    fill(main, body);
    await show(null);
  }
}

render();
