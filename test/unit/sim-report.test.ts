import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simulate } from '../../src/sim/index.ts';
import { chartData, html } from '../../src/sim/report.ts';
import type { SimResult } from '../../src/sim/types.ts';

const CHROMIUM = '/usr/bin/chromium';

async function results(): Promise<SimResult[]> {
  const base = { trace: { kind: 'file' as const, path: 'test/fixtures/traces/prefix-long.jsonl' }, model: 'llama3.1-70b', gpu: 'h100', servers: 2, fidelity: 'step' as const, rateScale: 1, seed: 1 };
  return [await simulate({ ...base, policy: 'single-pool' }), await simulate({ ...base, policy: 'dynamollm' })];
}

describe('simulate report (Observable Plot)', () => {
  it('gives a pool without GPUs no clock (absent, not 0 MHz)', () => {
    const r = { policy: 'dynamollm', series: { tS: [0, 10, 20], powerW: [1, 2, 3], energyKWh: [0, 1, 2], gpusByPool: { LL: [8, 0, 8] }, clockByPool: { LL: [1980, 0, 1200] } }, cdf: { ttft: [{ ms: 0, p: 0 }, { ms: 5, p: 0.5 }], tbt: [] } } as unknown as SimResult;
    const [d] = chartData([r]);
    expect(d.clock.LL).toEqual([1980, null, 1200]);
    expect(d.ttft).toEqual([{ ms: 5, p: 0.5 }]); // a log axis has no 0
  });

  it.skipIf(!existsSync(CHROMIUM))('renders offline in a browser: axes with ticks, log-scale CDFs, no errors, no network', async () => {
    const page0 = html(await results(), 'test report');
    const dir = mkdtempSync(join(tmpdir(), 'simreport-'));
    const file = join(dir, 'index.html');
    writeFileSync(file, page0);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'dyn-chromium-')), {
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run', '--disable-component-update'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      const fetched: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
      page.on('request', (r) => !r.url().startsWith('file:') && fetched.push(r.url()));
      await page.goto(`file://${file}`);
      await page.waitForSelector('body[data-rendered="true"]', { timeout: 20_000 });
      expect(errors).toEqual([]);
      expect(fetched).toEqual([]);
      const figs = await page.$$eval('#charts > figure', (fs) => fs.map((f) => ({ id: f.id, svgs: f.querySelectorAll('svg').length, xTicks: f.querySelectorAll('[aria-label="x-axis tick"] path, [aria-label="x-axis tick"] line').length, xLabel: f.querySelector('[aria-label="x-axis label"]')?.textContent ?? '' })));
      expect(figs.map((f) => f.id)).toEqual(['power', 'energy', 'gpus', 'clocks', 'cdf-ttft', 'cdf-tbt']);
      for (const f of figs) {
        expect(f.svgs).toBeGreaterThan(0);
        expect(f.xTicks).toBeGreaterThan(2);
      }
      expect(figs[0].xLabel).toMatch(/minutes/);
      expect(figs[4].xLabel).toMatch(/TTFT \(ms\)/);
      // one line per policy in the power chart, and a colour legend naming both
      expect(await page.$$eval('#power [aria-label="line"] path', (ps) => ps.length)).toBe(2);
      expect(await page.textContent('#power')).toMatch(/single-pool[\s\S]*dynamollm/);
    } finally {
      await browser.close();
    }
  }, 90_000);
});
