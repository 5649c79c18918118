// The services portal: citizens and enterprises apply, follow their bundles
// and read every decision's explanation; officers work their review queue.
// It talks to /api/v1 with the login cookie (SameSite=Strict) and builds
// every node from text, never from HTML strings.
'use strict';

const main = document.getElementById('main');

const LABELS = {
  approved: '已批准 approved', rejected: '未批准 not approved', in_review: '审核中 in review',
  incomplete: '待补充 incomplete', completed: '已办结 completed', running: '办理中 in progress',
  awaiting_confirmation: '待确认 awaiting your confirmation', failed: '未办成 failed', cancelled: '已撤回 cancelled',
  done: '已完成 done', waiting: '待审核 waiting', pending: '待办 pending', skipped: '未进行 skipped',
  compensated: '已撤销 revoked', granted: '已发放 granted', eligible: '符合 eligible', not_eligible: '不符合 not eligible',
};
const badge = (s) => el('span', { class: `badge ${s}`, 'data-status': s }, LABELS[s] || s);

async function api(method, path, body) {
  const r = await fetch(`/api/v1${path}`, {
    method, credentials: 'same-origin',
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch { v = text; }
  if (!r.ok) {
    const e = new Error((v && v.detail) || `${r.status}`);
    e.status = r.status;
    throw e;
  }
  return v;
}

const when = (t) => (t ? new Date(t).toLocaleString('zh-CN', { hour12: false }) : '');

function section(title, ...children) {
  return el('section', {}, el('h2', {}, title), ...children);
}

async function reload() { await render(); }

function problem(where, e) {
  where.append(el('p', { class: 'error', role: 'alert' }, e.message));
}

// ---- citizens and enterprises ----

function applyFlow(svc, out) {
  return async () => {
    fill(out, el('p', { class: 'muted' }, '…'));
    try {
      const pre = await api('GET', `/services/${encodeURIComponent(svc.id)}/prefill`);
      const consent = el('input', { type: 'checkbox', id: `consent-${svc.id}` });
      const fields = {};
      fill(out, el('div', { class: 'notice prefill' },
        el('p', {}, '政府已掌握以下数据，无需您再提供 The government already holds this; you are not asked for it again:'),
        el('table', {}, pre.prefilled.map((p) => el('tr', {}, el('td', {}, p.name), el('td', {}, JSON.stringify(p.value)), el('td', { class: 'muted' }, p.attribute)))),
        pre.toState.length ? el('div', {}, el('p', {}, '请补充 Please state:'), pre.toState.map((n) => {
          fields[n] = el('input', { type: 'text', name: n, placeholder: n });
          return el('label', {}, n, fields[n]);
        })) : null,
        el('label', { class: 'row' }, consent, '我同意使用上述其他部门的数据 I consent to the use of these records'),
        el('button', {
          class: 'submit', onclick: async () => {
            const input = {};
            for (const [k, f] of Object.entries(fields)) if (f.value) input[k] = f.value;
            try {
              const a = await api('POST', '/applications', { service: svc.id, consent: consent.checked, input });
              fill(out, el('div', { class: 'result' }, el('p', {}, svc.title, ': ', badge(a.status),
                a.automatic ? ' · 秒批 decided at once' : '', a.routed ? ` · ${a.routed}` : ''), explanation(a.decision)));
              await refreshMine();
            } catch (e) { problem(out, e); }
          },
        }, '提交申请 Apply')));
    } catch (e) { problem(out, e); }
  };
}

let refreshMine = async () => {};

async function citizen(me) {
  const [services, bundles] = await Promise.all([api('GET', '/services'), api('GET', '/bundles')]);
  const mine = me.kind === 'enterprise' ? 'Organization' : 'Person';
  const catalog = section('办事 Apply',
    services.filter((s) => s.applies_to === mine && !s.proactive).map((s) => {
      const out = el('div', {});
      return el('div', { class: 'item service', 'data-service': s.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, s.title, el('br'), el('span', { class: 'muted' }, s.department, ' · ', s.decided_by === 'manual' ? '人工审核 officer review' : '规则自动审批 decided by rule')),
          el('button', { class: 'secondary', onclick: applyFlow(s, out) }, '申请 Apply')), out);
    }),
    bundles.filter((b) => b.applies_to === mine && !b.trigger).map((b) => {
      const out = el('div', {});
      return el('div', { class: 'item bundle', 'data-bundle': b.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, '一件事 ', b.title, el('br'), el('span', { class: 'muted' }, b.steps.map((s) => s.title).join(' · '))),
          el('button', {
            class: 'secondary', onclick: async () => {
              try { await api('POST', '/bundle-instances', { bundle: b.id }); await refreshMine(); } catch (e) { problem(out, e); }
            },
          }, '一次办 Start')), out);
    }));
  const apps = section('我的申请 My applications');
  const insts = section('我的一件事 My life events');
  const grants = section('免申即享 Benefits granted without applying');
  refreshMine = async () => {
    const [a, i, g] = await Promise.all([api('GET', '/applications'), api('GET', '/bundle-instances'), api('GET', '/grants')]);
    fill(apps, el('h2', {}, '我的申请 My applications'), a.length ? null : el('p', { class: 'muted' }, '—'),
      a.map((x) => el('div', { class: 'item application', 'data-id': x.id }, el('div', { class: 'row' }, el('span', { class: 'grow' }, x.service, ' · ', when(x.submitted)), badge(x.status)),
        x.note ? el('p', { class: 'muted' }, x.note) : null, explanation(x.decision))));
    fill(insts, el('h2', {}, '我的一件事 My life events'), i.length ? null : el('p', { class: 'muted' }, '—'),
      i.map((x) => el('div', { class: 'item instance', 'data-id': x.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, x.bundle, ' · ', when(x.created)), badge(x.status)),
        el('ul', { class: 'steps' }, Object.entries(x.steps).map(([id, s]) => el('li', { 'data-step': id }, badge(s.status), ' ', id, s.note ? ` — ${s.note}` : ''))),
        x.status === 'awaiting_confirmation' && x.confirmBy === me.subject ? el('button', {
          class: 'confirm', onclick: async () => { await api('POST', `/bundle-instances/${encodeURIComponent(x.id)}/confirm`); await refreshMine(); },
        }, '确认办理 Confirm') : null)));
    fill(grants, el('h2', {}, '免申即享 Benefits granted without applying'), g.length ? null : el('p', { class: 'muted' }, '—'),
      g.map((x) => el('div', { class: 'item grant', 'data-id': x.id }, el('div', { class: 'row' }, el('span', { class: 'grow' }, x.title, ' · ', when(x.granted)), badge('granted'), el('b', {}, x.amount ? `¥${Number(x.amount).toFixed(2)}` : '')),
        explanation(x.explanation))));
  };
  fill(main, catalog, insts, apps, grants);
  await refreshMine();
}

// ---- officers ----

async function officer(me) {
  const q = await api('GET', '/review-queue');
  const running = await api('GET', '/bundle-instances?status=running');
  const verdict = (path, out) => (approve) => async () => {
    try { await api('POST', path, { approve, note: approve ? 'approved in the portal' : 'refused in the portal' }); await render(); } catch (e) { problem(out, e); }
  };
  const apps = section(`待审申请 Applications to review (${q.applications.length})`,
    q.applications.length ? null : el('p', { class: 'muted' }, '—'),
    q.applications.map((a) => {
      const out = el('div', {});
      const v = verdict(`/applications/${encodeURIComponent(a.id)}/review`, out);
      return el('div', { class: 'item review-application', 'data-id': a.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, a.service, ' · ', a.subject, el('br'), el('span', { class: 'muted' }, a.routed || '', ' · 期限 due ', when(a.due)))),
        explanation(a.decision), el('div', { class: 'row' }, el('button', { class: 'approve', onclick: v(true) }, '批准 Approve'), el('button', { class: 'danger reject', onclick: v(false) }, '不批准 Refuse')), out);
    }));
  const steps = section(`一件事待审环节 Bundle steps to review (${q.steps.length})`,
    q.steps.length ? null : el('p', { class: 'muted' }, '—'),
    q.steps.map((s) => {
      const out = el('div', {});
      const v = verdict(`/bundle-instances/${encodeURIComponent(s.instance)}/steps/${encodeURIComponent(s.step)}/review`, out);
      return el('div', { class: 'item review-step', 'data-instance': s.instance, 'data-step': s.step },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, s.bundle, ' · ', s.title, el('br'), el('span', { class: 'muted' }, s.subject, ' · 期限 due ', when(s.due))),
          s.escalated ? badge('escalated') : s.warned ? badge('warned') : null),
        el('div', { class: 'row' }, el('button', { class: 'approve', onclick: v(true) }, '批准 Approve'), el('button', { class: 'danger reject', onclick: v(false) }, '不批准 Refuse')), out);
    }));
  const sla = section('进行中的一件事 Bundles in progress',
    running.length ? null : el('p', { class: 'muted' }, '—'),
    running.map((i) => el('div', { class: 'item instance', 'data-id': i.id },
      el('div', { class: 'row' }, el('span', { class: 'grow' }, i.bundle, ' · ', i.subject, el('br'), el('span', { class: 'muted' }, '期限 due ', when(i.due))),
        i.breached ? badge('escalated') : badge(i.status)))));
  fill(main, apps, steps, sla);
}

// ---- login ----

function login(reason) {
  fill(main, section('登录 Log in',
    reason ? el('p', { class: 'error' }, reason) : null,
    el('form', { method: 'post', action: '/login' },
      el('input', { type: 'hidden', name: 'next', value: '/portal' }),
      el('label', {}, '令牌 Token ', el('input', { type: 'password', name: 'token', autocomplete: 'off' })),
      el('p', {}, el('button', { type: 'submit' }, '登录 Log in'))),
    el('p', { class: 'muted' }, 'citybrain demo prints a token per role; citybrain token create makes one.')));
}

async function render() {
  let me;
  try {
    me = await api('GET', '/me');
  } catch (e) {
    fill(document.getElementById('who'));
    return login(e.message);
  }
  if (me.kind === 'public') {
    fill(document.getElementById('who'));
    return login(null);
  }
  fill(document.getElementById('who'), me.subject || (me.departments || []).join(', ') || me.id,
    el('form', { method: 'post', action: '/logout', style: 'display:inline' }, el('button', { class: 'secondary', type: 'submit' }, '退出 Log out')));
  document.body.dataset.kind = me.kind;
  try {
    if (me.kind === 'officer' || me.kind === 'administrator') await officer(me);
    else await citizen(me);
  } catch (e) { problem(main, e); }
}

render();
