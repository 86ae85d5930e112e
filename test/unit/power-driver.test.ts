/**
 * The cluster manager's power driver (actors/cluster-manager/power-driver.ts) running real commands: placeholders,
 * retry classes (exit 75 and a deadline retried, any other exit refused at once), commands of one server in order;
 * and the config's `power` section (off by default, the driver validated).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PowerDriver, powerArgv } from '../../actors/cluster-manager/power-driver.ts';
import { parseConfig } from '../../actors/common/config.ts';
import { silentLogger } from '../../src/runtime/logger.ts';
import { systemClock } from '../../src/runtime/clock.ts';

const node = process.execPath;
/** real time for the commands' deadlines, no pause between attempts. */
const noPauses = { ...systemClock, sleep: async () => {} };
/** a driver whose program appends its arguments to a log, then runs `body`. */
function driver(body: string, o: { attempts?: number; timeoutMs?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'dyn-pd-'));
  const log = join(dir, 'calls');
  const script = `require('fs').appendFileSync(${JSON.stringify(log)}, process.argv.slice(1).join(' ') + '\\n'); ${body}`;
  const d = new PowerDriver({ command: [node, '-e', script, '{action}', '{server}', '{address}'], timeoutMs: o.timeoutMs ?? 10_000, attempts: o.attempts ?? 3 }, silentLogger(), noPauses);
  return { d, calls: () => readFileSync(log, 'utf8').split('\n').slice(0, -1) };
}

describe('power driver', () => {
  it('replaces the placeholders in every argument, and runs no shell', () => {
    expect(powerArgv(['/usr/bin/ipmitool', '-H', 'bmc-{server}', 'chassis', 'power', '{action}', '--host={address}'], 'off', { id: 'n3', address: '10.0.0.3' }))
      .toEqual(['/usr/bin/ipmitool', '-H', 'bmc-n3', 'chassis', 'power', 'off', '--host=10.0.0.3']);
    expect(powerArgv(['/x', '{server};{action}', '{address}'], 'on', { id: 'n1' })).toEqual(['/x', 'n1;on', '']);
  });

  it('exit 0 is done; exit 75 is retried up to its attempts; any other exit is refused at once', async () => {
    const ok = driver('process.exit(0)');
    expect(await ok.d.run('on', { id: 'n1', address: 'h1' })).toEqual({ ok: true, attempts: 1 });
    expect(ok.calls()).toEqual(['on n1 h1']);
    const temp = driver("process.stderr.write('BMC busy\\n'); process.exit(75)");
    const t = await temp.d.run('off', { id: 'n2' });
    expect(t).toMatchObject({ ok: false, attempts: 3, error: { code: 'unavailable', retryable: true } });
    expect(t.error!.message).toMatch(/exit 75: BMC busy$/);
    expect(temp.calls()).toEqual(['off n2 ', 'off n2 ', 'off n2 ']);
    const no = driver('process.exit(1)');
    expect(await no.d.run('off', { id: 'n2' })).toMatchObject({ ok: false, attempts: 1, error: { code: 'rejected', retryable: false } });
    expect(no.calls().length).toBe(1);
  });

  it('a command past its deadline is killed and retried', async () => {
    const slow = driver('setTimeout(() => {}, 60_000)', { attempts: 2, timeoutMs: 1000 });
    expect(await slow.d.run('on', { id: 'n1' })).toMatchObject({ ok: false, attempts: 2, error: { code: 'timeout', retryable: true } });
  });

  it("runs one server's commands in order, and reports the outcome to the machine without throwing", async () => {
    const d = driver("setTimeout(() => process.exit(process.argv[1] === 'off' ? 0 : 1), 100)");
    const [a, b] = await Promise.all([d.d.command('off', 'n1', undefined, 'idle'), d.d.command('on', 'n1', undefined, 'needed')]);
    expect(d.calls()).toEqual(['off n1 ', 'on n1 ']);
    expect(a).toEqual({ server: 'n1', action: 'off', ok: true });
    expect(b).toMatchObject({ server: 'n1', action: 'on', ok: false, error: expect.stringMatching(/exit 1 \(1 attempt\(s\)\)$/) });
    expect(d.d.commands).toBe(2);
  });
});

describe('config: power', () => {
  it('is off by default; a driver must be an absolute program naming {server} and {action}', () => {
    expect(parseConfig({}).power.driver).toBeUndefined();
    const c = parseConfig({ power: { driver: ['/usr/local/bin/server-power', '{action}', '{server}'] } });
    expect(c.power).toMatchObject({ timeoutS: 60, attempts: 3, bootS: 120, bootDeadlineS: 600, reserveServers: 1 });
    expect(() => parseConfig({ power: { driver: ['server-power', '{action}', '{server}'] } })).toThrow(/power.driver: the program must be an absolute path/);
    expect(() => parseConfig({ power: { driver: ['/bin/power', '{action}'] } })).toThrow(/no argument names '\{server\}'/);
    expect(() => parseConfig({ power: { driver: ['/bin/power', '{server}'] } })).toThrow(/no argument names '\{action\}'/);
    expect(() => parseConfig({ power: { bootS: 300, bootDeadlineS: 200 } })).toThrow(/power.bootDeadlineS \(200 s\) must be at least power.bootS/);
    expect(() => parseConfig({ power: { reserve: 1 } })).toThrow(/power/);
  });
});
