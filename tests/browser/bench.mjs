// Cockpit performance, measured (not a test): first meaningful paint, hub
// change → screen latency, and 50 concurrent viewers on one server.
//
//   node tests/browser/bench.mjs BINARY
//
// Starts `citybrain serve` (no live scenarios; LIVE=1 runs them beside) with one bench cockpit (a KPI
// over `BenchThing.v`), then:
// 1. first paint: navigation start → the KPI showing its value, 5 page loads;
// 2. change → screen: an upsert through the NGSI-LD API → the new value on
//    screen, 40 changes, median and p95;
// 3. viewers: 50 open cockpit streams (plain HTTP SSE clients) for SOAK_S
//    seconds while the value changes 4 times a second; the server's resident
//    memory sampled every 5 s, and events received per viewer.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import http from 'node:http';

const [binary] = process.argv.slice(2);
const SOAK_S = Number(process.env.SOAK_S || 60);
const VIEWERS = Number(process.env.VIEWERS || 50);
const work = mkdtempSync(join(tmpdir(), 'citybrain-cockpit-bench-'));
mkdirSync(join(work, 'dash'));
writeFileSync(join(work, 'dash', 'bench.json'), JSON.stringify({
  schemaVersion: 1, uid: 'bench', title: { en: 'Bench', zh: '基准' }, tier: 'street',
  panels: [{ id: 'x', type: 'kpi', title: { en: 'X', zh: 'X' }, gridPos: { x: 0, y: 0, w: 6, h: 4 },
    query: { type: 'BenchThing', attr: 'v' } }],
}));
const port = await new Promise((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
const base = `http://127.0.0.1:${port}`;
// LIVE=1: the demo's live scenarios run beside the bench (the corridor and the
// hospital district at 60x, each with its comparison twin) — the load a real
// cockpit server carries.
const LIVE = process.env.LIVE === '1';
const server = spawn(binary, ['serve', '--listen', `127.0.0.1:${port}`, '--db', `sqlite:${join(work, 'b.db')}`,
  '--dashboards', join(work, 'dash'), '--log', 'warn', '--no-auth', '--live', LIVE ? 'signal-corridor,hospital-district' : 'none'],
  { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => server.stdout.on('data', (d) => { if (String(d).includes('listening')) resolve(); }));

async function upsert(v) {
  const r = await fetch(`${base}/ngsi-ld/v1/entityOperations/upsert`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify([{ id: 'urn:ngsi-ld:BenchThing:1', type: 'BenchThing', v: { type: 'Property', value: v } }]),
  });
  if (r.status >= 300) throw new Error(`upsert ${r.status}`);
}
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const rss = () => Number(readFileSync(`/proc/${server.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024;

await upsert(1);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });

// 1. First meaningful paint: the KPI shows a number.
const paints = [];
for (let i = 0; i < 5; i++) {
  const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  const t0 = Date.now();
  await page.goto(`${base}/cockpit/bench`);
  await page.waitForFunction(() => /\d/.test(document.querySelector('[data-testid="kpi-x"]')?.innerText || ''), null, { timeout: 10000 });
  paints.push(Date.now() - t0);
  await page.close();
}

// 2. Hub change → screen.
const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
await page.goto(`${base}/cockpit/bench`);
await page.waitForFunction(() => window.cockpit?.state === 'live');
const lat = [];
for (let i = 0; i < 40; i++) {
  const v = 1000 + i;
  const t0 = Date.now();
  await upsert(v);
  await page.waitForFunction((v) => (document.querySelector('[data-testid="kpi-x"]')?.innerText || '').replace(/\D/g, '') === String(v), v, { timeout: 10000, polling: 10 });
  lat.push(Date.now() - t0);
  await new Promise((r) => setTimeout(r, 150 + Math.random() * 400));
}
await browser.close();

// 3. Viewers: plain SSE clients.
const counts = new Array(VIEWERS).fill(0);
const reqs = [];
for (let i = 0; i < VIEWERS; i++) {
  const req = http.get(`${base}/api/cockpits/bench/events`, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk) => { counts[i] += (chunk.match(/\nevent: panel/g) || []).length + (chunk.startsWith('event: panel') ? 1 : 0); });
  });
  req.on('error', () => {});
  reqs.push(req);
}
const mem = [rss()];
let v = 5000;
const changer = setInterval(() => upsert(v++).catch(() => {}), 250);
for (let s = 0; s < SOAK_S; s += 5) {
  await new Promise((r) => setTimeout(r, 5000));
  mem.push(rss());
}
clearInterval(changer);
for (const r of reqs) r.destroy();
server.kill('SIGTERM');
rmSync(work, { recursive: true, force: true });

console.log(`machine: ${(await import('node:os')).cpus().length} CPUs; one run; live scenarios ${LIVE ? 'running (60x)' : 'off'}`);
console.log(`first meaningful paint (KPI value on screen), 5 loads: median ${pct(paints, 0.5)} ms, max ${Math.max(...paints)} ms   target < 1000 ms`);
console.log(`hub change -> screen, ${lat.length} changes: median ${pct(lat, 0.5)} ms, p95 ${pct(lat, 0.95)} ms   target p95 < 1000 ms`);
console.log(`${VIEWERS} viewers for ${SOAK_S} s at 4 changes/s: events per viewer min ${Math.min(...counts)}, max ${Math.max(...counts)}; server RSS MiB ${mem.map((m) => m.toFixed(0)).join(' ')}`);
