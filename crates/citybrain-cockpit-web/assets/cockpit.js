// citybrain cockpit page: one definition, one snapshot, one SSE stream per tab.
// The model is updated on every event and drawn once per animation frame.
// Test hooks: window.cockpit (state, seq, updates, rendered, errors, panels, charts).

const echarts = window.echarts;
const uid = document.body.dataset.uid;
const params = new URLSearchParams(location.search);
// A panel whose data is older than this shows a stale badge (?staleAfter=SECONDS).
const STALE_AFTER_MS = 1000 * (Number(params.get('staleAfter')) || 60);
const COLS = 24, ROWS = 27, WALL_W = 1904, WALL_H = 1008;

const cockpit = (window.cockpit = {
  state: 'connecting', seq: 0, updates: 0, rendered: 0, errors: [], panels: {}, charts: {}, clockOffset: 0,
  lang: params.get('lang') || 'zh', mode: params.get('mode') || (innerWidth < 900 ? 'phone' : 'wall'),
  lastEventAt: 0, gaps: 0, duplicates: 0,
});
let def = null, source = null, dirty = new Set(), data = {}, series = {}, networks = {};

window.addEventListener('error', (e) => cockpit.errors.push(String(e.message || e)));

function setState(s) {
  cockpit.state = s;
  document.body.dataset.state = s;
  const el = document.getElementById('stream');
  const zh = { connecting: '连接中', live: '实时', reconnecting: '重连中', stale: '数据陈旧' };
  el.textContent = cockpit.lang === 'zh' ? `${zh[s]} ${s}` : s;
}

function label(t) { return t ? (t[cockpit.lang] || t.en) : ''; }

// The variables' values, as the server resolves them: from the URL, else the
// default, else (when a parent narrows the options) the first option under it.
function currentVars() {
  const cur = {};
  for (const v of def.variables || []) {
    const opts = v.options.filter((o) => !v.dependsOn || o.parent === cur[v.dependsOn]);
    const want = params.get(v.name);
    cur[v.name] = (opts.find((o) => o.value === want) || opts.find((o) => o.value === v.default) || opts[0] || {}).value;
  }
  return cur;
}

function varQuery() {
  return new URLSearchParams(currentVars()).toString();
}

function buildVars() {
  const vars = document.getElementById('vars');
  vars.innerHTML = '';
  const cur = currentVars();
  for (const v of def.variables || []) {
    const sel = document.createElement('select');
    sel.dataset.testid = `var-${v.name}`;
    for (const o of v.options.filter((o) => !v.dependsOn || o.parent === cur[v.dependsOn])) {
      const opt = document.createElement('option');
      opt.value = o.value; opt.textContent = label(o.label);
      sel.appendChild(opt);
    }
    sel.value = cur[v.name];
    sel.onchange = () => {
      // A new district resets its street and lot (and so on down).
      const below = new Set([v.name]);
      for (const w of def.variables) if (w.dependsOn && below.has(w.dependsOn)) { below.add(w.name); params.delete(w.name); }
      params.set(v.name, sel.value);
      for (const [k, x] of Object.entries(currentVars())) params.set(k, x);
      history.replaceState(null, '', `?${params}`);
      buildVars();
      restart();
    };
    vars.appendChild(document.createTextNode(label(v.label) + ' '));
    vars.appendChild(sel);
  }
}

function fit() {
  const c = document.getElementById('canvas');
  if (cockpit.mode === 'phone') { c.style.transform = ''; return; }
  const s = Math.min(innerWidth / 1920, innerHeight / 1080);
  c.style.transform = `scale(${s})`;
  c.style.left = `${(innerWidth - 1920 * s) / 2}px`;
  c.style.top = `${(innerHeight - 1080 * s) / 2}px`;
}

function build() {
  document.body.classList.toggle('phone', cockpit.mode === 'phone');
  document.title = `${label(def.title)} · citybrain`;
  document.getElementById('title').textContent = label(def.title);
  document.getElementById('lang').textContent = cockpit.lang === 'zh' ? 'EN' : '中文';
  buildVars();
  for (const ch of Object.values(cockpit.charts)) ch.dispose();
  cockpit.charts = {};
  const root = document.getElementById('panels');
  root.innerHTML = '';
  for (const p of def.panels) {
    const el = document.createElement('section');
    el.className = 'panel';
    el.dataset.testid = `panel-${p.id}`;
    el.dataset.type = p.type;
    const g = p.gridPos;
    el.style.left = `${(g.x * WALL_W) / COLS}px`;
    el.style.top = `${(g.y * WALL_H) / ROWS}px`;
    el.style.width = `${(g.w * WALL_W) / COLS - 8}px`;
    el.style.height = `${(g.h * WALL_H) / ROWS - 8}px`;
    if (['timeseries', 'bar', 'map', 'gauge', 'table'].includes(p.type)) el.classList.add('tall');
    el.innerHTML = `<h2><span class="t"></span><span class="stale">stale 陈旧</span><span class="age" data-testid="age-${p.id}"></span></h2><div class="body"></div>`;
    el.querySelector('.t').textContent = label(p.title);
    root.appendChild(el);
    cockpit.panels[p.id] = cockpit.panels[p.id] || { updatedAt: 0, count: 0 };
    if (['timeseries', 'bar', 'map', 'gauge'].includes(p.type)) {
      const div = document.createElement('div');
      div.className = 'chart';
      el.querySelector('.body').appendChild(div);
      cockpit.charts[p.id] = echarts.init(div, 'dark', { renderer: params.get('renderer') || 'canvas' });
    }
    if (p.type === 'map' && p.map && !networks[p.map.network]) {
      networks[p.map.network] = 'loading';
      fetch(`/api/networks/${p.map.network}`).then((r) => r.json()).then((n) => {
        networks[p.map.network] = n; dirty.add(p.id); schedule();
      }).catch((e) => cockpit.errors.push(`network: ${e}`));
    }
    dirty.add(p.id);
  }
  fit();
  schedule();
}

function color(p, v) {
  let c = '#38bdf8';
  for (const t of p.thresholds || []) if (v != null && v >= t.value) c = t.color;
  return c;
}

function fmt(v) { return v == null ? '–' : Math.abs(v) >= 100 ? Math.round(v).toLocaleString() : (+v.toFixed(1)).toString(); }

function renderPanel(p) {
  const el = document.querySelector(`[data-testid="panel-${p.id}"]`);
  if (!el) return;
  const d = data[p.id]?.data;
  const body = el.querySelector('.body');
  const chart = cockpit.charts[p.id];
  if (p.type === 'kpi') {
    const v = d?.value;
    body.innerHTML = `<div class="kpi" data-testid="kpi-${p.id}" style="color:${color(p, v)}">${fmt(v)}<span class="unit">${p.unit || ''}</span></div>`;
  } else if (p.type === 'gauge') {
    // A short tile: an arc and the number, without ticks and labels that would crowd it.
    const small = (p.gridPos?.h || 8) < 6 && !document.body.classList.contains('phone');
    chart.setOption({ animation: false, series: [{ type: 'gauge', max: p.max, min: 0, progress: { show: true, width: small ? 8 : 10 },
      radius: small ? '95%' : '75%', center: ['50%', small ? '62%' : '55%'],
      axisLine: { lineStyle: { width: small ? 8 : 10 } }, pointer: { show: !small },
      axisTick: { show: !small }, splitLine: { show: !small }, axisLabel: { show: !small },
      detail: { valueAnimation: false, formatter: (x) => fmt(x), fontSize: small ? 22 : 28, offsetCenter: [0, small ? '10%' : '40%'] },
      data: [{ value: d?.value ?? 0 }] }] });
  } else if (p.type === 'timeseries') {
    const pts = series[p.id] || [];
    chart.setOption({ animation: false, grid: { left: 50, right: 16, top: 16, bottom: 28 },
      xAxis: { type: 'time', axisLabel: { hideOverlap: true } }, yAxis: { type: 'value', min: 0 },
      series: [{ type: 'line', showSymbol: false, data: pts, areaStyle: { opacity: 0.15 } }] });
  } else if (p.type === 'bar') {
    const labels = d?.labels || [], values = d?.values || [];
    chart.setOption({ animation: false, grid: { left: 140, right: 24, top: 8, bottom: 24 },
      xAxis: { type: 'value' }, yAxis: { type: 'category', data: labels.slice().reverse(), axisLabel: { width: 130, overflow: 'truncate' } },
      series: [{ type: 'bar', data: values.slice().reverse(), itemStyle: { color: '#38bdf8' } }] });
  } else if (p.type === 'table') {
    const cols = d?.columns || [], rows = d?.rows || [];
    const heads = p.query?.columnLabels || [];
    body.innerHTML = `<table data-testid="table-${p.id}"><tr>${cols.map((c, i) => `<th>${heads[i] ? label(heads[i]) : c}</th>`).join('')}</tr>${rows
      .map((r) => `<tr>${r.map((x) => `<td>${x == null ? '' : typeof x === 'object' ? JSON.stringify(x) : String(x).replace(/</g, '&lt;')}</td>`).join('')}</tr>`)
      .join('')}</table>`;
  } else if (p.type === 'alerts') {
    const rows = d?.alerts || [];
    const zh = cockpit.lang === 'zh';
    const btn = (a, action, text) => `<button data-testid="${action}-${a.id}" data-alert="${a.id}" data-action="${action}">${text}</button>`;
    body.innerHTML = `<div class="alerts" data-testid="alerts-${p.id}"><ul>${rows.length ? rows
      .map((a) => `<li class="sev-${a.severity} st-${a.status}" data-testid="alert-row" data-status="${a.status}">[${a.severity}] ${String(a.description).replace(/</g, '&lt;')} <small>${a.status} ${String(a.date).slice(11, 19)}</small>
        ${a.status === 'open' ? btn(a, 'acknowledge', zh ? '确认' : 'Ack') : ''}${a.status !== 'closed' ? btn(a, 'close', zh ? '关闭' : 'Close') : ''}</li>`)
      .join('') : `<li>${zh ? '无告警' : 'No alerts'}</li>`}</ul></div>`;
    for (const b of body.querySelectorAll('button[data-alert]')) {
      b.onclick = () => fetch(`/api/alerts/${encodeURIComponent(b.dataset.alert)}/${b.dataset.action}`, { method: 'POST' })
        .then((r) => { if (!r.ok) cockpit.errors.push(`alert ${b.dataset.action}: ${r.status}`); })
        .catch((e) => cockpit.errors.push(String(e)));
    }
  } else if (p.type === 'map') {
    renderMap(p, chart, d);
  }
}

// Where a map point is drawn, in page pixels (for tests driving a click);
// null until the chart has its axes.
function chartPoint(chart, value) {
  try {
    const [x, y] = chart.convertToPixel({ seriesIndex: 1 }, [value[0], value[1]]);
    const r = chart.getDom().getBoundingClientRect();
    const s = r.width / chart.getDom().offsetWidth || 1;
    return [r.left + x * s, r.top + y * s];
  } catch (_) { return null; }
}

function renderMap(p, chart, d) {
  const net = networks[p.map.network];
  if (!net || net === 'loading') return;
  // Equal scale: longitude shrinks with the cosine of the latitude.
  const all = net.roads.flatMap((r) => r.points);
  const lat0 = all.length ? all.reduce((s, q) => s + q[1], 0) / all.length : 0;
  const k = net.crs === 'wgs84' ? Math.cos((lat0 * Math.PI) / 180) : 1;
  const xy = (q) => [q[0] * k, q[1]];
  const val = new Map((d?.roads || []).map(([id, v]) => [id, v]));
  const roadValue = (id) => {
    if (val.has(id)) return val.get(id);
    let m = null;
    for (const [key, v] of val) if (key.startsWith(`${id}_`)) m = Math.max(m ?? 0, v);
    return m;
  };
  const lines = net.roads.map((r) => {
    const v = roadValue(r.id);
    // The panel's thresholds colour the roads where it has them (e.g. speeds,
    // low is bad); otherwise queue colours (high is bad).
    let c = v == null ? '#475569' : v >= 20 ? '#ef4444' : v >= 5 ? '#f59e0b' : '#22c55e';
    if (v != null && p.thresholds?.length) for (const t of p.thresholds) if (v >= t.value) c = t.color;
    return { name: r.id, value: v, coords: r.points.map(xy), lineStyle: { color: c, width: v == null ? 2 : 4 } };
  });
  const points = (d?.points || []).map((q) => ({
    name: q.name || q.id, value: [q.lon * k, q.lat, q.value], link: q.link, cursor: q.link ? 'pointer' : 'default',
    itemStyle: { color: q.value == null ? '#94a3b8' : q.value <= 0 ? '#ef4444' : q.value < 20 ? '#f59e0b' : '#22c55e' },
  }));
  const xs = all.map((q) => q[0] * k), ys = all.map((q) => q[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  cockpit.map = cockpit.map || {};
  cockpit.map[p.id] = { roads: lines.length, colouredRoads: lines.filter((l) => l.value != null).length, points: points.length };
  // Drill-down: a point with a link opens the next tier's cockpit.
  chart.off('click');
  chart.on('click', (e) => { if (e.data?.link) location.href = e.data.link; });
  chart.setOption({
    animation: false, grid: { left: 4, right: 4, top: 4, bottom: 4 },
    xAxis: { type: 'value', show: false, min: x0, max: x1, scale: true },
    yAxis: { type: 'value', show: false, min: y0, max: y1, scale: true },
    tooltip: { trigger: 'item', formatter: (e) => `${e.name}: ${e.data?.value?.[2] ?? e.data?.value ?? '–'}` },
    series: [
      { type: 'lines', coordinateSystem: 'cartesian2d', polyline: true, data: lines, silent: false },
      { type: 'scatter', data: points, symbolSize: 18, label: { show: true, formatter: (e) => `${e.value[2] ?? ''}`, color: '#fff' } },
    ],
  }, { notMerge: true });
  cockpit.map[p.id].links = points.filter((q) => q.link).map((q) => ({ name: q.name, link: q.link, at: chartPoint(chart, q.value) }));
}

let frame = 0;
function schedule() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    for (const id of dirty) {
      const p = def?.panels.find((x) => x.id === id);
      if (p) {
        try { renderPanel(p); } catch (e) { cockpit.errors.push(`${id}: ${e}`); }
      }
    }
    dirty.clear();
    cockpit.rendered = cockpit.updates;
  });
}

function applyPanel(msg) {
  data[msg.panel] = { data: msg.data, t: msg.t };
  const p = def?.panels.find((x) => x.id === msg.panel);
  if (p?.type === 'timeseries' && msg.history) {
    // The window's past from the hub's history: it replaces what we hold.
    series[msg.panel] = msg.history.slice();
  } else if (p?.type === 'timeseries' && msg.point) {
    const s = (series[msg.panel] = series[msg.panel] || []);
    s.push(msg.point);
    const win = (p.windowS || 600) * 1000;
    while (s.length && s[0][0] < msg.point[0] - win) s.shift();
  }
  const ps = (cockpit.panels[msg.panel] = cockpit.panels[msg.panel] || { updatedAt: 0, count: 0 });
  ps.updatedAt = Date.now();
  ps.count += 1;
  dirty.add(msg.panel);
}

async function loadSnapshot() {
  const r = await fetch(`/api/cockpits/${uid}/snapshot?${varQuery()}`);
  if (!r.ok) throw new Error(`snapshot ${r.status}`);
  const s = await r.json();
  cockpit.clockOffset = (s.now || Date.now()) - Date.now();
  for (const [id, v] of Object.entries(s.panels)) {
    data[id] = { data: v.data, t: v.t };
    if (v.series) series[id] = v.series;
    const ps = (cockpit.panels[id] = cockpit.panels[id] || { updatedAt: 0, count: 0 });
    ps.updatedAt = Date.now();
    dirty.add(id);
  }
  cockpit.seq = Math.max(cockpit.seq, s.seq);
  schedule();
}

async function loadDefinition() {
  const r = await fetch(`/api/cockpits/${uid}`);
  if (!r.ok) throw new Error(`definition ${r.status}`);
  def = await r.json();
  build();
}

function connect() {
  if (source) source.close();
  // Resume right after the snapshot just read (no `hello`, no second snapshot).
  const q = new URLSearchParams(currentVars());
  q.set('lastEventId', String(cockpit.seq));
  source = new EventSource(`/api/cockpits/${uid}/events?${q}`);
  source.onopen = () => setState('live');
  source.onerror = () => setState('reconnecting');
  const seen = (e) => {
    const id = Number(e.lastEventId);
    cockpit.lastEventAt = Date.now();
    if (cockpit.state !== 'live') setState('live');
    if (id <= cockpit.seq) { cockpit.duplicates += 1; return false; }
    if (id !== cockpit.seq + 1) cockpit.gaps += 1;
    cockpit.seq = id;
    return true;
  };
  source.addEventListener('hello', (e) => {
    cockpit.lastEventAt = Date.now();
    const s = JSON.parse(e.data).seq;
    if (s !== cockpit.seq) {
      cockpit.seq = s;
      loadSnapshot().catch((x) => cockpit.errors.push(String(x)));
    }
    setState('live');
  });
  source.addEventListener('panel', (e) => {
    if (!seen(e)) return;
    cockpit.updates += 1;
    document.getElementById('updates').textContent = cockpit.updates;
    applyPanel(JSON.parse(e.data));
    schedule();
  });
  source.addEventListener('resync', (e) => {
    // The server's numbering (a restarted server starts again): follow it.
    cockpit.lastEventAt = Date.now();
    cockpit.resyncs = (cockpit.resyncs || 0) + 1;
    const s = Number(e.lastEventId);
    if (Number.isFinite(s) && e.lastEventId !== '') cockpit.seq = s;
    loadSnapshot().catch((x) => cockpit.errors.push(String(x)));
  });
  source.addEventListener('definition-changed', (e) => {
    seen(e);
    loadDefinition().then(loadSnapshot).catch((x) => cockpit.errors.push(String(x)));
  });
}

async function restart() {
  data = {}; series = {}; cockpit.seq = 0;
  await loadSnapshot();
  connect();
}

// Data age per panel, the stale badges and the stream's staleness, every second.
setInterval(() => {
  const now = Date.now();
  // The server's clock (it may be fixed for a demo or a test), not this machine's.
  document.getElementById('clock').textContent = new Date(now + cockpit.clockOffset).toLocaleTimeString(cockpit.lang === 'zh' ? 'zh-CN' : 'en-GB');
  for (const p of def?.panels || []) {
    const el = document.querySelector(`[data-testid="panel-${p.id}"]`);
    const at = cockpit.panels[p.id]?.updatedAt;
    if (!el || !at) continue;
    const age = Math.round((now - at) / 1000);
    el.querySelector('.age').textContent = cockpit.lang === 'zh' ? `${age} 秒前` : `${age} s ago`;
    el.dataset.stale = String(now - at > STALE_AFTER_MS);
  }
  if (cockpit.state === 'live' && cockpit.lastEventAt && now - cockpit.lastEventAt > STALE_AFTER_MS) setState('stale');
}, 1000);

document.getElementById('lang').onclick = (e) => {
  e.preventDefault();
  cockpit.lang = cockpit.lang === 'zh' ? 'en' : 'zh';
  params.set('lang', cockpit.lang);
  history.replaceState(null, '', `?${params}`);
  build();
  for (const id of Object.keys(data)) dirty.add(id);
  schedule();
};
window.addEventListener('resize', () => { fit(); for (const c of Object.values(cockpit.charts)) c.resize(); });

setState('connecting');
loadDefinition().then(restart).catch((e) => { cockpit.errors.push(String(e)); setState('reconnecting'); });
