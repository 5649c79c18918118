// The appeals page: anyone files an appeal (signed in or not), follows it
// with the secret the answer gives, confirms, reopens or rates it; the
// public board lists what the public may see with each department's
// figures and a map; officers signed in (the login cookie) work their
// queue here. Public consultations on drafts follow (consultations.js).
// It talks to /api/v1 and builds every node from text, never from HTML.
'use strict';

const main = document.getElementById('main');

const STATUS = {
  routed: '已派单 routed', in_progress: '办理中 in progress', awaiting_citizen: '待您补充 waiting for you',
  answered: '已答复 answered', reopened: '重新办理 reopened', closed: '已办结 closed', duplicate: '重复件 duplicate',
};
const BADGE = { routed: 'running', in_progress: 'running', awaiting_citizen: 'incomplete', answered: 'approved', reopened: 'in_review', closed: 'completed', duplicate: 'skipped' };
const badge = (s) => el('span', { class: `badge ${BADGE[s] || s}`, 'data-status': s }, STATUS[s] || s);
const when = (t) => (t ? new Date(t).toLocaleString('zh-CN', { hour12: false }) : '');

async function api(method, path, body, secret) {
  const headers = {};
  if (body) headers['Content-Type'] = 'application/json';
  if (secret) headers['Citybrain-Appeal-Secret'] = secret;
  const r = await fetch(`/api/v1${path}`, { method, credentials: 'same-origin', headers, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch { v = text; }
  if (!r.ok) throw new Error((v && v.detail) || `${r.status}`);
  return v;
}

function section(title, ...children) {
  return el('section', {}, el('h2', {}, title), ...children);
}

function problem(where, e) {
  where.append(el('p', { class: 'error', role: 'alert' }, e.message));
}

// Appeals filed from this browser: id → secret (kept in this browser only).
const SAVED = 'citybrain-appeals';
const saved = () => JSON.parse(localStorage.getItem(SAVED) || '{}');
function remember(id, secret) {
  const s = saved();
  s[id] = secret || '';
  localStorage.setItem(SAVED, JSON.stringify(s));
}

function fileForm(categories, me, after) {
  const category = el('select', { name: 'category', 'data-testid': 'appeal-category' },
    el('option', { value: '' }, '自动分类 Let the city choose'),
    categories.map((c) => el('option', { value: c.code }, c.name)));
  const description = el('textarea', { name: 'description', rows: 4, maxlength: 4000, 'data-testid': 'appeal-description', style: 'width:100%' });
  const lat = el('input', { type: 'text', name: 'lat', placeholder: '30.2612', inputmode: 'decimal' });
  const lon = el('input', { type: 'text', name: 'lon', placeholder: '120.1791', inputmode: 'decimal' });
  const anonymous = el('input', { type: 'checkbox', name: 'anonymous' });
  const out = el('div', {});
  return section('我要反映 File an appeal',
    el('label', {}, '类别 Category ', category),
    el('label', {}, '描述 What is wrong ', description),
    el('div', { class: 'row' }, el('label', { class: 'grow' }, '纬度 Latitude ', lat), el('label', { class: 'grow' }, '经度 Longitude ', lon)),
    el('label', { class: 'row' }, anonymous, '匿名 Anonymous (departments do not see who filed it)'),
    me ? el('p', { class: 'muted' }, '以 ', me, ' 身份提交 Filed as you') : el('p', { class: 'muted' }, '未登录：提交后请保存凭证 Not signed in: keep the secret shown after filing'),
    el('button', {
      class: 'submit', 'data-testid': 'appeal-submit', onclick: async () => {
        fill(out);
        const body = { description: description.value, anonymous: anonymous.checked };
        if (category.value) body.category = category.value;
        if (lat.value && lon.value) body.location = { lat: Number(lat.value), lon: Number(lon.value) };
        try {
          const r = await api('POST', '/appeals', body);
          remember(r.appeal.id, r.secret);
          fill(out, el('div', { class: 'notice', 'data-testid': 'appeal-filed', 'data-id': r.appeal.id },
            el('p', {}, '已受理 Received: ', el('b', {}, r.appeal.id), ' → ', r.appeal.department, ' · ', badge(r.appeal.status)),
            el('p', { class: 'muted' }, r.appeal.route_reason, ' · 答复期限 due ', when(r.appeal.due)),
            r.secret ? el('p', {}, '凭证 Secret (keep it; it is shown once): ', el('code', { 'data-testid': 'appeal-secret' }, r.secret)) : null,
            r.similar.length ? el('p', {}, '附近有相似诉求 Similar appeals nearby: ', r.similar.map((s) => `${s.id} (${s.distance_m} m)`).join(', ')) : null));
          description.value = '';
          await after();
        } catch (e) { problem(out, e); }
      },
    }, '提交 Submit'), out);
}

function actions(a, secret, refresh) {
  const out = el('div', {});
  const act = (body) => async () => {
    try { await api('POST', `/appeals/${encodeURIComponent(a.id)}/actions`, body, secret); await refresh(); } catch (e) { problem(out, e); }
  };
  const reason = el('input', { type: 'text', placeholder: '原因 Reason' });
  const stars = el('select', { 'data-testid': 'rate-stars' }, [5, 4, 3, 2, 1].map((n) => el('option', { value: n }, `${n} ★`)));
  const open = a.status === 'answered' || a.status === 'closed';
  return el('div', {},
    a.answer ? el('p', { class: 'notice' }, '答复 Answer: ', a.answer) : null,
    open && !a.rating ? el('div', { class: 'row' }, stars,
      el('button', { class: 'secondary', 'data-testid': 'rate', onclick: () => act({ action: 'rate', stars: Number(stars.value) })() }, '评价 Rate')) : null,
    a.status === 'answered' ? el('button', { class: 'secondary', onclick: act({ action: 'confirm' }) }, '确认解决 Resolved') : null,
    open ? el('div', { class: 'row' }, reason, el('button', { class: 'danger', onclick: () => act({ action: 'reopen', reason: reason.value })() }, '未解决 Reopen')) : null,
    out);
}

async function mine(box, refreshAll) {
  const s = saved();
  const ids = Object.keys(s);
  const items = [];
  for (const id of ids.slice(-20).reverse()) {
    try {
      const a = await api('GET', `/appeals/${encodeURIComponent(id)}`, null, s[id] || null);
      items.push(el('div', { class: 'item mine', 'data-id': a.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, a.id, ' · ', a.category, ' · ', when(a.filed_at || a.filedAt)), badge(a.status)),
        el('ul', { class: 'steps' }, (a.updates || []).map((u) => el('li', {}, when(u.at), ' — ', u.note))),
        actions(a, s[id] || null, refreshAll)));
    } catch { /* an appeal no longer visible (hidden by moderation) */ }
  }
  fill(box, el('h2', {}, '我的诉求 My appeals'), items.length ? items : el('p', { class: 'muted' }, '—'));
}

// Status colours on the map, as the badges.
const COLOR = { routed: '#b45309', in_progress: '#b45309', awaiting_citizen: '#b45309', reopened: '#b91c1c', answered: '#15803d', closed: '#15803d', duplicate: '#94a3b8' };

// The public board's map: the routing areas' outlines and every appeal
// with a location, drawn by ECharts (vendored) on its own geo projection:
// no map tiles, nothing fetched from elsewhere.
function boardMap(box, areas, appeals) {
  const points = appeals.filter((a) => a.location);
  const div = el('div', { class: 'map', 'data-testid': 'appeal-map', 'data-points': points.length, style: 'height:360px' });
  fill(box, el('h2', {}, '诉求地图 Map of appeals'), div,
    el('p', { class: 'muted' }, '区域轮廓为演示用近似范围 The outlines are rough demo areas (appeals/routing.yaml).'));
  if (!window.echarts) return;
  const geo = { type: 'FeatureCollection', features: areas.filter((a) => a.polygon && a.polygon.length >= 3).map((a) => ({
    type: 'Feature', properties: { name: a.name }, geometry: { type: 'Polygon', coordinates: [[...a.polygon, a.polygon[0]]] } })) };
  echarts.registerMap('appeal-areas', geo);
  // One chart at a time: the board redraws after every action.
  if (mapChart) mapChart.dispose();
  mapChart = echarts.init(div, null, { renderer: 'svg' });
  mapChart.setOption({
    animation: false,
    tooltip: { trigger: 'item', formatter: (p) => (p.seriesType === 'scatter' ? `${p.data.id}<br>${p.data.status}` : p.name) },
    geo: { map: 'appeal-areas', roam: true, itemStyle: { areaColor: '#eef2ff', borderColor: '#94a3b8' }, label: { show: true, fontSize: 11, color: '#66728a' } },
    series: [{ type: 'scatter', coordinateSystem: 'geo', symbolSize: 9,
      data: points.map((a) => ({ id: a.id, status: a.status, value: [a.location.lon, a.location.lat], itemStyle: { color: COLOR[a.status] || '#1d4ed8' } })) }],
  });
}
let mapChart = null;
window.addEventListener('resize', () => { if (mapChart) mapChart.resize(); });

async function board(box, stats, mapBox, areas) {
  const [list, figures] = await Promise.all([api('GET', '/appeals?limit=500'), api('GET', '/appeal-metrics')]);
  fill(box, el('h2', {}, `公开诉求 Public board (${list.total})`),
    list.appeals.slice(0, 50).map((a) => el('div', { class: 'item board', 'data-id': a.id },
      el('div', { class: 'row' }, el('span', { class: 'grow' }, a.description, el('br'),
        el('span', { class: 'muted' }, a.category, ' · ', a.department, ' · ', when(a.filedAt), a.rating ? ` · ${a.rating} ★` : '')), badge(a.status)),
      a.answer ? el('p', { class: 'muted' }, '答复 Answer: ', a.answer) : null)));
  boardMap(mapBox, areas, list.appeals);
  const pct = (x) => (x === undefined || x === null ? '—' : `${Math.round(x * 100)}%`);
  fill(stats, el('h2', {}, '部门统计 Departments'),
    el('table', { 'data-testid': 'department-stats' },
      el('tr', {}, el('th', {}, '部门 Department'), el('th', {}, '诉求 Appeals'), el('th', {}, '按时 On time'), el('th', {}, '满意度 Satisfaction'), el('th', {}, '重办 Reopened')),
      figures.map((f) => el('tr', { 'data-department': f.department }, el('td', {}, f.department), el('td', {}, f.appeals),
        el('td', {}, pct(f.onTimeRate)), el('td', {}, f.satisfactionMean ?? '—'), el('td', {}, pct(f.reopenedRate))))));
}

async function queue(me, box) {
  const q = await api('GET', '/appeal-queue?status=routed,in_progress,reopened');
  const refresh = () => queue(me, box);
  fill(box, el('h2', {}, `待办诉求 Appeals to handle (${q.total})`), q.appeals.length ? null : el('p', { class: 'muted' }, '—'),
    q.appeals.map((a) => {
      const out = el('div', {});
      const answer = el('input', { type: 'text', placeholder: '答复 Answer', 'data-testid': 'answer-text' });
      const act = (body) => async () => {
        try { await api('POST', `/appeals/${encodeURIComponent(a.id)}/actions`, body); await refresh(); } catch (e) { problem(out, e); }
      };
      return el('div', { class: 'item queue', 'data-id': a.id },
        el('div', { class: 'row' }, el('span', { class: 'grow' }, a.public_description, el('br'),
          el('span', { class: 'muted' }, a.category, ' · 期限 due ', when(a.due), a.escalation ? ` · 已督办 escalated ×${a.escalation}` : '')), badge(a.status)),
        el('div', { class: 'row' }, a.status !== 'in_progress' ? el('button', { class: 'secondary', onclick: act({ action: 'accept' }) }, '受理 Accept') : null,
          answer, el('button', { 'data-testid': 'answer', onclick: () => act({ action: 'answer', answer: answer.value })() }, '答复 Answer')), out);
    }));
}

async function render() {
  let me = null;
  try { me = await api('GET', '/me'); } catch { me = null; }
  const [categories, places] = await Promise.all([api('GET', '/appeal-categories'), api('GET', '/appeal-departments')]);
  const boardBox = el('section', {});
  const mapBox = el('section', {});
  const statsBox = el('section', {});
  const mineBox = el('section', {});
  const consultBox = el('section', { 'data-testid': 'consultations' });
  const refresh = async () => { await Promise.all([board(boardBox, statsBox, mapBox, places.areas), mine(mineBox, refresh)]); };
  const staff = me && (me.kind === 'officer' || me.kind === 'administrator');
  const queueBox = staff ? el('section', {}) : null;
  const who = me && me.kind !== 'public' ? (me.subject || (me.departments || []).join(', ')) : null;
  fill(main, staff ? queueBox : fileForm(categories, who, refresh), staff ? null : mineBox, boardBox, mapBox, statsBox, consultBox);
  try {
    await refresh();
    if (staff) await queue(me, queueBox);
    await consultations(consultBox, me);
  } catch (e) { problem(main, e); }
}

render();
