// Real-browser tests of the services portal (/portal): Debian's chromium
// driven by playwright-core against the real binary (`citybrain demo`).
//
//   node tests/browser/portal.test.mjs BINARY RESULTS_DIR
//
// On a phone-sized page: a graduate logs in with the form, applies and reads
// the approval's explanation; a parent confirms the newborn bundle a birth
// record started and sees the benefit granted without applying; a
// restaurant starts its bundle; an officer approves its two review steps
// from the queue and it completes. No console error, no request off the
// machine, no page wider than the phone. On /appeals, an appeal filed
// without an account is answered by the district and rated with the
// secret the browser kept, and shows on the board's map; a citizen
// comments on the draft under consultation and the department answers it;
// the one-stop page shows an enterprise its matches, applications, grants
// and appeals. Prints "N passed, N failed".

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const [binary, results] = process.argv.slice(2);
if (!binary || !results) {
  console.error('usage: node portal.test.mjs BINARY RESULTS_DIR');
  process.exit(2);
}
mkdirSync(results, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'citybrain-portal-'));
let passed = 0, failed = 0;

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const tokens = {};
const server = spawn(binary, ['demo', '--listen', `127.0.0.1:${port}`, '--db', `sqlite:${join(work, 'demo.db')}`,
  '--live', 'none', '--demo-city', '2000', '--log', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve, reject) => {
  let out = '';
  const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 60000);
  server.stdout.on('data', (d) => {
    out += d;
    for (const line of out.split('\n')) {
      const w = line.trim().split(/\s+/);
      if (w.length >= 3 && w[w.length - 1].startsWith('cbt_')) tokens[w[1]] = w[w.length - 1];
    }
    if (out.includes('citybrain listening on')) { clearTimeout(timer); resolve(); }
  });
  server.on('exit', (c) => reject(new Error(`server exited ${c}:\n${out}`)));
});

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
});

function assert(cond, msg) { if (!cond) throw new Error(msg); }

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

// A phone-sized page; `who` logs in with its cookie unless the test uses the form.
async function open(who, { cookie = true, path = '/portal' } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, locale: 'zh-CN', timezoneId: 'Asia/Shanghai' });
  if (cookie) await ctx.addCookies([{ name: 'citybrain_token', value: tokens[who], url: base }]);
  const problems = [];
  await ctx.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host !== '127.0.0.1') { problems.push(`request to ${route.request().url()}`); return route.abort(); }
    return route.continue();
  });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  await page.goto(`${base}${path}`);
  const done = async (shot) => {
    await page.screenshot({ path: join(results, `portal-${shot}.png`), fullPage: true });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert(wide <= 0, `the page is ${wide}px wider than the phone`);
    assert(problems.length === 0, problems.join('\n'));
    await ctx.close();
  };
  return { page, done };
}

await check('a graduate logs in, applies and reads the approval in seconds with its explanation', async () => {
  const { page, done } = await open('urn:ngsi-ld:Person:demo-graduate', { cookie: false });
  await page.fill('input[name=token]', tokens['urn:ngsi-ld:Person:demo-graduate']);
  await page.click('button[type=submit]');
  await page.waitForURL(`${base}/portal`);
  const svc = page.locator('[data-service="talent-residence-intake"]');
  await svc.locator('button').click();
  await svc.locator('.prefill').waitFor();
  assert((await svc.locator('.prefill tr').count()) >= 4, 'the hub\'s data is shown pre-filled');
  await svc.locator('input[type=checkbox]').check();
  const t0 = Date.now();
  await svc.locator('button.submit').click();
  await svc.locator('.result [data-status="approved"]').waitFor({ timeout: 5000 });
  assert(Date.now() - t0 < 5000, 'approved in seconds');
  await svc.locator('.result details summary').click();
  const clauses = await svc.locator('.result [data-clause]').count();
  assert(clauses >= 5, `the explanation lists the clauses (${clauses})`);
  await page.locator('.application [data-status="approved"]').first().waitFor();
  await done('graduate');
});

await check('a parent confirms the newborn bundle and sees a benefit granted without applying', async () => {
  const { page, done } = await open('urn:ngsi-ld:Person:demo-parent');
  const inst = page.locator('.instance[data-id="urn:ngsi-ld:BundleInstance:newborn-demo-1"]');
  await inst.locator('[data-status="awaiting_confirmation"]').first().waitFor({ timeout: 20000 });
  await inst.locator('button.confirm').click();
  await inst.locator('.row [data-status="completed"]').waitFor();
  assert((await inst.locator('.steps [data-status="done"]').count()) === 5, 'five departments done');
  // The family's rent subsidy, granted by the matching at start.
  for (let i = 0; i < 40 && (await page.locator('.grant').count()) === 0; i++) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  const grant = page.locator('.grant').first();
  await grant.waitFor();
  await grant.locator('details summary').click();
  assert((await grant.locator('[data-clause]').count()) > 0, 'the grant explains itself');
  await done('parent');
});

await check('a restaurant starts its bundle, an officer approves from the queue, it completes', async () => {
  const r = await open('urn:ngsi-ld:Organization:demo-restaurant');
  await r.page.locator('[data-bundle="opening-a-restaurant"] button').click();
  const inst = r.page.locator('.instance').first();
  await inst.locator('[data-step="food-permit"] [data-status="waiting"]').waitFor();
  const id = await inst.getAttribute('data-id');
  await r.done('restaurant');
  const o = await open('civil-affairs,market-regulation,fire-rescue');
  for (const step of ['food-permit', 'fire-safety']) {
    const item = o.page.locator(`.review-step[data-instance="${id}"][data-step="${step}"]`);
    await item.waitFor();
    await item.locator('button.approve').click();
    await item.waitFor({ state: 'detached' });
  }
  await o.done('officer');
  const again = await open('urn:ngsi-ld:Organization:demo-restaurant');
  await again.page.locator(`.instance[data-id="${id}"] .row [data-status="completed"]`).waitFor();
  await again.done('restaurant-done');
});

await check('an appeal filed on /appeals without an account is answered by the district, rated with the kept secret, and on the board', async () => {
  const pub = await open(null, { cookie: false, path: '/appeals' });
  await pub.page.fill('[data-testid=appeal-description]', '公交站旁边的路灯不亮了，晚上很黑');
  await pub.page.fill('input[name=lat]', '30.2612');
  await pub.page.fill('input[name=lon]', '120.1791');
  await pub.page.click('[data-testid=appeal-submit]');
  const filed = pub.page.locator('[data-testid=appeal-filed]');
  await filed.waitFor();
  const id = await filed.getAttribute('data-id');
  assert((await pub.page.locator('[data-testid=appeal-secret]').innerText()).length >= 16, 'a secret to follow it with');
  assert((await filed.innerText()).includes('shangcheng-urban-management'), 'routed to the district by the area');
  await pub.page.locator(`.board[data-id="${id}"]`).waitFor();
  const o = await open('shangcheng-urban-management,hotline-triage', { path: '/appeals' });
  const item = o.page.locator(`.queue[data-id="${id}"]`);
  await item.waitFor();
  await item.locator('[data-testid=answer-text]').fill('The lamp was replaced.');
  await item.locator('[data-testid=answer]').click();
  await item.waitFor({ state: 'detached' });
  await o.done('appeals-officer');
  // The requester's browser kept the secret: it rates the answer.
  await pub.page.reload();
  const mine = pub.page.locator(`.mine[data-id="${id}"]`);
  await mine.locator('[data-status="answered"]').waitFor();
  await mine.locator('[data-testid=rate-stars]').selectOption('5');
  await mine.locator('[data-testid=rate]').click();
  await pub.page.locator(`.mine[data-id="${id}"] [data-status="closed"]`).waitFor();
  await pub.page.locator(`.board[data-id="${id}"] [data-status="closed"]`).waitFor();
  await pub.page.locator('[data-testid=department-stats] tr[data-department="shangcheng-urban-management"]').waitFor();
  await pub.done('appeals-public');
});

await check('the public board maps the appeals; a citizen comments on the draft and the department answers with its adoption', async () => {
  const c = await open('urn:ngsi-ld:Person:demo-graduate', { path: '/appeals' });
  const map = c.page.locator('[data-testid=appeal-map]');
  await map.locator('svg path').first().waitFor();
  assert(Number(await map.getAttribute('data-points')) >= 1, 'the appeal filed before is on the map');
  const item = c.page.locator('.consultation[data-id="elderly-allowance-2027"]');
  await item.locator('[data-stage="open"]').waitFor();
  await item.locator('[data-testid=consultation-open]').click();
  const detail = c.page.locator('[data-testid=consultation-detail]');
  await detail.locator('.draft-section[data-section="art-2"]').waitFor();
  await detail.locator('[data-testid=comment-section]').selectOption('art-2');
  await detail.locator('[data-testid=comment-text]').fill('300 yuan from 90 is good; please also index it to prices. 电话 13812345678');
  await detail.locator('[data-testid=comment-submit]').click();
  const mine = detail.locator('.comment').last();
  await mine.waitFor();
  const text = await mine.innerText();
  assert(text.includes('[phone]') && !text.includes('13812345678'), `the public text is redacted: ${text}`);
  const seq = await mine.getAttribute('data-seq');
  await c.done('consultation-citizen');
  const o = await open('civil-affairs,market-regulation,fire-rescue', { path: '/appeals' });
  await o.page.locator('.consultation[data-id="elderly-allowance-2027"] [data-testid=consultation-open]').click();
  const comment = o.page.locator(`[data-testid=consultation-detail] .comment[data-seq="${seq}"]`);
  await comment.locator('[data-testid=comment-answer-text]').fill('Indexation is adopted in article 2.');
  await comment.locator('[data-testid=comment-adoption]').selectOption('adopted');
  await comment.locator('[data-testid=comment-answer]').click();
  await o.page.locator(`[data-testid=consultation-detail] .comment[data-seq="${seq}"] [data-adoption="adopted"]`).waitFor();
  await o.done('consultation-officer');
});

await check('the one-stop page shows an enterprise its policies, applications, bundles, grants and appeals in one place', async () => {
  const e = await open('urn:ngsi-ld:Organization:demo-restaurant', { path: '/enterprise' });
  await e.page.locator('[data-testid=subject]').waitFor();
  assert((await e.page.locator('[data-testid=subject]').innerText()).includes('demo-restaurant'), 'its own page');
  for (const t of ['matching-policies', 'enterprise-appeals', 'enterprise-applications', 'enterprise-bundles', 'enterprise-grants']) {
    await e.page.locator(`[data-testid=${t}]`).waitFor();
  }
  await e.page.locator('[data-testid=enterprise-bundles] .instance [data-status="completed"]').waitFor();
  await e.done('enterprise');
});

await browser.close();
server.kill();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
