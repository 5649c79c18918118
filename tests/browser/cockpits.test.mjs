// Real-browser tests of the shipped cockpits: Debian's chromium driven by
// playwright-core against the real binary (`citybrain demo`, scenarios live).
//
//   node tests/browser/cockpits.test.mjs BINARY RESULTS_DIR
//
// For every cockpit: no console error, no request to a non-loopback host,
// live updates arriving with no gap or duplicate, every panel holding data
// (KPI values, series points, bars, table rows, map roads and lots), wall
// and phone screenshots saved in RESULTS_DIR. Then, on one cockpit: the
// server stops (stream reconnecting, stale badges after silence) and comes
// back on the same port (live again, updates resume). Prints "N passed, N failed".

import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const [binary, results] = process.argv.slice(2);
if (!binary || !results) {
  console.error('usage: node cockpits.test.mjs BINARY RESULTS_DIR');
  process.exit(2);
}
mkdirSync(results, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'citybrain-browser-'));
// The server reads a copy of the shipped cockpits, so a test may edit one.
const dashboards = join(work, 'dashboards');
cpSync(new URL('../../dashboards', import.meta.url).pathname, dashboards, { recursive: true });
let passed = 0, failed = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// A fixed clock: the server's time starts at this instant on every run (and a
// restarted server goes on from where the last one stopped, as a clock would).
const CLOCK_START = Date.parse('2026-01-05T08:00:00+08:00');
let clockAt = CLOCK_START;

function startServer(port) {
  const p = spawn(binary, ['demo', '--listen', `127.0.0.1:${port}`, '--db', `sqlite:${join(work, 'demo.db')}`,
    '--live-speedup', '600', '--log', 'warn', '--demo-city', '0', '--clock', new Date(clockAt).toISOString(), '--dashboards', dashboards], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30000);
    p.stdout.on('data', (d) => {
      out += d;
      if (out.includes('citybrain listening on')) { clearTimeout(timer); resolve(p); }
    });
    p.on('exit', (c) => reject(new Error(`server exited ${c}:\n${out}`)));
  });
}

async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
// The pages log in as an administrator, with a token made the way an
// operator makes one (it outlives the demo's own, which each start renews).
const token = execFileSync(binary, ['token', 'create', '--db', `sqlite:${join(work, 'demo.db')}`,
  '--role', 'admin', '--label', 'browser tests'], { stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
const asAdmin = { headers: { Authorization: `Bearer ${token}` } };
let server = await startServer(port);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});

async function openPage(path, viewport = { width: 1920, height: 1080 }) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, timezoneId: 'Asia/Shanghai', locale: 'zh-CN' });
  // What /login leaves: the token in the cockpit cookie (EventSource sends it too).
  await ctx.addCookies([{ name: 'citybrain_token', value: token, url: base }]);
  const problems = [];
  // Set while a test follows a link away from the page: the browser then
  // aborts the old page's fetches in flight (a snapshot after a resync), as it should.
  const nav = { leaving: false };
  await ctx.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) {
      problems.push(`request to ${route.request().url()}`);
      return route.abort();
    }
    return route.continue();
  });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  page.on('requestfailed', (r) => {
    // The stream is aborted when the page closes or the server stops: expected.
    const error = r.failure()?.errorText;
    if (nav.leaving && error === 'net::ERR_ABORTED') return;
    if (!r.url().includes('/events')) problems.push(`failed ${r.url()}: ${error}`);
  });
  await page.goto(`${base}${path}`);
  return { ctx, page, problems, nav };
}

const cockpits = await (await fetch(`${base}/api/cockpits`, asAdmin)).json();
// Without a login, the public board only.
const publicList = (await (await fetch(`${base}/api/cockpits`)).json()).map((c) => c.uid);
if (JSON.stringify(publicList) !== '["city-overview"]' || cockpits.length < 5) {
  throw new Error(`cockpits listed: public ${publicList}, admin ${cockpits.map((c) => c.uid)}`);
}

await check(`the index lists every cockpit (${cockpits.length})`, async () => {
  const { ctx, page, problems } = await openPage('/');
  for (const c of cockpits) assert(await page.locator(`[data-testid="cockpit-${c.uid}"]`).count() === 1, c.uid);
  await page.screenshot({ path: join(results, 'index.png') });
  assert(problems.length === 0, problems.join('\n'));
  await ctx.close();
});

for (const c of cockpits) {
  await check(`${c.uid}: renders live, every panel with data, no gap or duplicate`, async () => {
    const { ctx, page, problems } = await openPage(`/cockpit/${c.uid}`);
    const def = await (await fetch(`${base}/api/cockpits/${c.uid}`, asAdmin)).json();
    await page.waitForFunction(() => window.cockpit?.state === 'live' && window.cockpit.updates >= 10, null, { timeout: 60000 });
    // Let the scenarios publish for a few seconds (600x: a few simulated minutes).
    await page.waitForFunction((ids) => ids.every((id) => (window.cockpit.panels[id]?.updatedAt || 0) > 0), def.panels.map((p) => p.id), { timeout: 60000 });
    await sleep(3000);
    // Every update is drawn (once per frame: the count catches up within a frame or two).
    await page.waitForFunction(() => window.cockpit.updates - window.cockpit.rendered < 3, null, { timeout: 15000 });
    const st = await page.evaluate(() => ({ ...window.cockpit, charts: Object.keys(window.cockpit.charts) }));
    assert(st.gaps === 0 && st.duplicates === 0, `gaps ${st.gaps}, duplicates ${st.duplicates}`);
    assert(st.errors.length === 0, `page errors: ${st.errors.join('; ')}`);
    for (const p of def.panels) {
      const sel = `[data-testid="panel-${p.id}"]`;
      assert(await page.locator(sel).count() === 1, `panel ${p.id} missing`);
      if (p.type === 'kpi') {
        const text = await page.locator(`[data-testid="kpi-${p.id}"]`).innerText();
        assert(/\d/.test(text), `KPI ${p.id} shows no number: "${text}"`);
      } else if (p.type === 'timeseries') {
        const n = await page.evaluate((id) => window.cockpit.charts[id].getOption().series[0].data.length, p.id);
        assert(n > 0, `series ${p.id} is empty`);
      } else if (p.type === 'bar') {
        const n = await page.evaluate((id) => window.cockpit.charts[id].getOption().series[0].data.length, p.id);
        assert(n > 0, `bars ${p.id} are empty`);
      } else if (p.type === 'table') {
        // Alert logs fill once the first rule fires: wait for a row.
        await page.waitForFunction((id) => document.querySelectorAll(`[data-testid="table-${id}"] tr`).length > 1, p.id, { timeout: 90000 });
      } else if (p.type === 'map') {
        const m = st.map?.[p.id];
        assert(m && m.roads > 10, `map ${p.id} draws no roads: ${JSON.stringify(m)}`);
        assert(m.colouredRoads > 0, `map ${p.id} colours no road by live data`);
        // Points may come and go (an ambulance is on the road part of each run): wait for one.
        if (p.map.pointType) {
          await page.waitForFunction((id) => window.cockpit.map?.[id]?.points > 0, p.id, { timeout: 45000 })
            .catch(() => { throw new Error(`map ${p.id} shows no ${p.map.pointType}`); });
        }
      } else if (p.type === 'gauge') {
        const v = await page.evaluate((id) => window.cockpit.charts[id].getOption().series[0].data[0].value, p.id);
        assert(typeof v === 'number', `gauge ${p.id}: ${v}`);
      } else if (p.type === 'alerts') {
        assert(await page.locator(`[data-testid="alerts-${p.id}"]`).count() === 1, `alerts ${p.id}`);
      }
    }
    // The page shows the server's fixed clock (Beijing time): the run began at 08:00.
    const clock = await page.locator('[data-testid="clock"]').innerText();
    assert(/^0?8:[0-5]\d:\d\d$/.test(clock.trim()), `the cockpit clock shows ${clock}, not the fixed 08:xx`);
    // Labels switch language.
    const zh = await page.locator('[data-testid="title"]').innerText();
    await page.locator('[data-testid="lang-toggle"]').click();
    const en = await page.locator('[data-testid="title"]').innerText();
    assert(zh !== en && en === def.title.en, `language switch: ${zh} -> ${en}`);
    await page.locator('[data-testid="lang-toggle"]').click();
    await sleep(500);
    await page.screenshot({ path: join(results, `${c.uid}-wall.png`) });
    assert(problems.length === 0, problems.join('\n'));
    await ctx.close();
  });

  await check(`${c.uid}: phone layout`, async () => {
    const { ctx, page, problems } = await openPage(`/cockpit/${c.uid}?mode=phone`, { width: 390, height: 844 });
    await page.waitForFunction(() => window.cockpit?.state === 'live' && window.cockpit.updates >= 5, null, { timeout: 30000 });
    await sleep(1500);
    assert(await page.evaluate(() => document.body.classList.contains('phone')), 'not in phone layout');
    const widths = await page.evaluate(() => [...document.querySelectorAll('.panel')].map((p) => p.getBoundingClientRect().width));
    assert(widths.every((w) => w <= 390), `panels wider than the phone: ${widths}`);
    await page.screenshot({ path: join(results, `${c.uid}-phone.png`), fullPage: true });
    assert(problems.length === 0, problems.join('\n'));
    await ctx.close();
  });
}

await check('command: an officer acknowledges and closes an alert', async () => {
  const { ctx, page, problems } = await openPage('/cockpit/command?lang=en');
  await page.waitForFunction(() => document.querySelector('[data-testid="alert-row"][data-status="open"] button[data-action="acknowledge"]'), null, { timeout: 90000 });
  const id = await page.evaluate(() => document.querySelector('[data-testid="alert-row"][data-status="open"] button[data-action="acknowledge"]').dataset.alert);
  await page.locator(`[data-testid="acknowledge-${id}"]`).click();
  await page.waitForFunction((id) => document.querySelector(`[data-testid="close-${id}"]`)?.closest('li')?.dataset.status === 'acknowledged', id, { timeout: 15000 });
  await page.locator(`[data-testid="close-${id}"]`).click();
  const r = await (await fetch(`${base}/ngsi-ld/v1/entities/${encodeURIComponent(id)}?options=keyValues`, asAdmin)).json();
  for (let i = 0; i < 30 && r.status !== 'closed'; i++) {
    await sleep(200);
    Object.assign(r, await (await fetch(`${base}/ngsi-ld/v1/entities/${encodeURIComponent(id)}?options=keyValues`, asAdmin)).json());
  }
  assert(r.status === 'closed', `alert status in the hub: ${r.status}`);
  await page.screenshot({ path: join(results, 'command-handled.png') });
  assert(problems.length === 0, problems.join('\n'));
  await ctx.close();
});

await check('street: district → street → lot narrow each other, stay in the URL and change the panels', async () => {
  const { ctx, page, problems, nav } = await openPage('/cockpit/street');
  await page.waitForFunction(() => window.cockpit?.state === 'live' && window.cockpit.panels.offered?.updatedAt > 0, null, { timeout: 30000 });
  const lotsOn = async () => page.evaluate(() => [...document.querySelectorAll('[data-testid="var-lot"] option')].map((o) => o.value));
  assert(JSON.stringify(await lotsOn()) === '["zju1"]', `lots on Qingchun Road: ${await lotsOn()}`);
  const before = await page.locator('[data-testid="kpi-offered"]').innerText();
  // Another street: its lots only, the first chosen, all in the URL.
  await page.locator('[data-testid="var-street"]').selectOption('zhongshan');
  await page.waitForFunction(() => location.search.includes('street=zhongshan') && location.search.includes('lot=street_b'), null, { timeout: 5000 });
  assert(JSON.stringify(await lotsOn()) === '["street_b","mall_west"]', `lots on Zhongshan Road: ${await lotsOn()}`);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="table-street-lot-table"] tr').length === 3, null, { timeout: 30000 })
    .catch(() => { throw new Error('the street\'s lot table does not list its two lots'); });
  await page.locator('[data-testid="var-lot"]').selectOption('mall_west');
  await page.waitForFunction(() => location.search.includes('lot=mall_west'), null, { timeout: 5000 });
  await page.waitForFunction((b) => {
    const t = document.querySelector('[data-testid="kpi-offered"]')?.innerText;
    return t && t !== b && /\d/.test(t);
  }, before, { timeout: 30000 });
  // That lot's feed starts now, yet its time series shows the past: read from the hub's history.
  const chosenAt = await page.evaluate(() => Date.now() + window.cockpit.clockOffset);
  await page.waitForFunction((t) => {
    const s = window.cockpit.charts['free-trend']?.getOption().series[0].data || [];
    return s.length > 0 && s[0][0] < t - 5000;
  }, chosenAt, { timeout: 30000 }).catch(() => { throw new Error('the lot\'s time series shows no history from the hub'); });
  // A reload keeps the choice. It aborts the old page's fetches in flight, as it should.
  nav.leaving = true;
  await page.reload();
  nav.leaving = false;
  await page.waitForFunction(() => window.cockpit?.state === 'live' && window.cockpit.panels['street-lot-table']?.updatedAt > 0
    && window.cockpit.panels['free-trend']?.updatedAt > 0, null, { timeout: 30000 });
  await sleep(1500);
  const chosen = await page.evaluate(() => ['district', 'street', 'lot'].map((n) => document.querySelector(`[data-testid="var-${n}"]`).value));
  assert(JSON.stringify(chosen) === '["hospital-district","zhongshan","mall_west"]', `after reload: ${chosen}`);
  await page.screenshot({ path: join(results, 'street-zhongshan-mall-west.png') });
  assert(problems.length === 0, problems.join('\n'));
  await ctx.close();
});

await check('hospital-district: a lot clicked on the map opens the street cockpit on that lot (drill-down)', async () => {
  const { ctx, page, problems, nav } = await openPage('/cockpit/hospital-district');
  await page.waitForFunction(() => (window.cockpit.map?.map?.links || []).filter((l) => l.at).length >= 5, null, { timeout: 30000 });
  const links = await page.evaluate(() => window.cockpit.map.map.links);
  // A lot with no other within 30 px, so the click is unambiguous.
  const alone = links.find((l) => l.at && links.every((o) => o === l || !o.at || Math.hypot(o.at[0] - l.at[0], o.at[1] - l.at[1]) > 30));
  assert(alone, `no lot stands alone on the map: ${JSON.stringify(links)}`);
  nav.leaving = true;
  await page.mouse.click(alone.at[0], alone.at[1]);
  await page.waitForURL((u) => u.pathname === '/cockpit/street', { timeout: 10000 });
  nav.leaving = false;
  const want = new URL(alone.link, base).searchParams;
  await page.waitForFunction(() => window.cockpit?.state === 'live', null, { timeout: 30000 });
  const chosen = await page.evaluate(() => ['district', 'street', 'lot'].map((n) => document.querySelector(`[data-testid="var-${n}"]`).value));
  assert(JSON.stringify(chosen) === JSON.stringify(['district', 'street', 'lot'].map((n) => want.get(n))), `${alone.link} -> ${chosen}`);
  assert(problems.length === 0, problems.join('\n'));
  await ctx.close();
});

await check('command: a definition edited on disk reaches the open page without a reload', async () => {
  const { ctx, page, problems } = await openPage('/cockpit/command?lang=en');
  await page.waitForFunction(() => window.cockpit?.state === 'live', null, { timeout: 30000 });
  await page.evaluate(() => { window.notReloaded = true; });
  const file = join(dashboards, 'command.json');
  const original = readFileSync(file, 'utf8');
  const def = JSON.parse(original);
  def.title.en = 'Command — edited on disk';
  writeFileSync(file, JSON.stringify(def));
  try {
    await page.waitForFunction(() => document.querySelector('[data-testid="title"]').innerText === 'Command — edited on disk', null, { timeout: 15000 });
    assert(await page.evaluate(() => window.notReloaded === true), 'the page was reloaded');
  } finally {
    writeFileSync(file, original);
  }
  assert(problems.length === 0, problems.join('\n'));
  await ctx.close();
});

await check('hospital-district: a server restart is survived; silence shows stale badges', async () => {
  const { ctx, page, problems } = await openPage('/cockpit/hospital-district?staleAfter=4');
  await page.waitForFunction(() => window.cockpit?.state === 'live' && window.cockpit.updates >= 10, null, { timeout: 30000 });
  clockAt = (await (await fetch(`${base}/api/cockpits/hospital-district/snapshot`, asAdmin)).json()).now + 1000;
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  await page.waitForFunction(() => window.cockpit.state === 'reconnecting', null, { timeout: 15000 });
  await page.waitForFunction(() => document.querySelectorAll('.panel[data-stale="true"]').length > 0, null, { timeout: 15000 });
  await page.screenshot({ path: join(results, 'hospital-district-stale.png') });
  const before = await page.evaluate(() => window.cockpit.updates);
  server = await startServer(port);
  await page.waitForFunction((n) => window.cockpit.state === 'live' && window.cockpit.updates > n + 5, before, { timeout: 30000 });
  const st = await page.evaluate(() => ({ errors: window.cockpit.errors, resyncs: window.cockpit.resyncs || 0 }));
  assert(st.errors.length === 0, st.errors.join('; '));
  await page.waitForFunction(() => document.querySelectorAll('.panel[data-stale="true"]').length === 0, null, { timeout: 15000 });
  // The page's own fetches failed while the server was down (expected); nothing else.
  const other = problems.filter((p) => !p.includes('ERR_CONNECTION_REFUSED') && !p.includes('Failed to load resource'));
  assert(other.length === 0, other.join('\n'));
  await ctx.close();
});

await browser.close();
server.kill('SIGTERM');
rmSync(work, { recursive: true, force: true });
console.log(`screenshots: ${results}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
