/**
 * The built CLI (bin/dynamollm.js -> dist/) as an operator meets it: `--help` on every command and subcommand,
 * exit codes (0 ok, 1 runtime failure, 2 usage error), did-you-mean suggestions, one-line errors that name the
 * missing file or the unreachable server (a stack only with --verbose or DEBUG), and `--json` meaning JSON on
 * stdout wherever it is offered.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NO_TSX } from '../helpers/cluster.ts';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/dynamollm.js', ...args],
      { env: { ...process.env, NODE_OPTIONS: NO_TSX, DEBUG: '', ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

const COMMANDS = ['up', 'replay', 'status', 'top', 'events', 'telemetry', 'simulate', 'model', 'profile', 'fidelity', 'engine-emulator', 'actor', 'nats'];
const SUBCOMMANDS = [['model', 'predict'], ['profile', 'generate'], ['profile', 'run'], ['nats', 'up']];
const PREDICT = ['model', 'predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', '4', '--batch', '8', '--context', '1000'];
/** no stack frame in the output ("    at fn (file:line)") */
const NO_STACK = /^\s+at /m;

/** A port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('dynamollm CLI', () => {
  it('every command and subcommand answers --help with its usage and exit codes, exit 0', async () => {
    const runs = await Promise.all([...COMMANDS.map((c) => [c]), ...SUBCOMMANDS].map(async (words) => ({ words, r: await cli([...words, '--help']) })));
    for (const { words, r } of runs) {
      expect(r.code, `${words.join(' ')} --help: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(`Usage: dynamollm ${words.join(' ')}`);
      expect(r.stdout).toContain('Exit codes: 0 ok, 1 runtime failure, 2 usage error.');
    }
    // `help X` is the same help
    const h = await cli(['help', 'simulate']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('--policy <names>');
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('usage errors exit 2 with a did-you-mean suggestion', async () => {
    const [none, cmd, opt, sub, missing, badNumber, extra] = await Promise.all([
      cli([]),
      cli(['stauts']),
      cli([...PREDICT, '--jsn']),
      cli(['profile', 'generat']),
      cli(['model', 'predict', '--model', 'llama2-70b']),
      cli(['model', 'predict', '--model', 'llama2-70b', '--gpu', 'h100', '--tp', 'four', '--batch', '8', '--context', '1000']),
      cli(['replay', '--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--json', '/tmp/out.json']),
    ]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('Usage: dynamollm');
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain("unknown command 'stauts'");
    expect(cmd.stderr).toContain('Did you mean status?');
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain("unknown option '--jsn'");
    expect(opt.stderr).toContain('Did you mean --json?');
    expect(sub.code).toBe(2);
    expect(sub.stderr).toContain('Did you mean generate?');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '--gpu <g>' not specified/);
    expect(badNumber.code).toBe(2);
    expect(badNumber.stderr).toContain("--tp must be a number, got 'four'");
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain('--json takes no value');
    for (const r of [none, cmd, opt, sub, missing, badNumber, extra]) expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('chaos refuses a schedule it cannot keep: a kill interval of 0, a negative duration, an unknown kind of request (exit 2, before starting anything)', async () => {
    const [every, dur, mix] = await Promise.all([
      cli(['chaos', '--kill-every', '0']),
      cli(['chaos', '--duration', '-5']),
      cli(['chaos', '--mix', 'resumable=1,sse=1']),
    ]);
    expect(mix.code).toBe(2);
    expect(mix.stderr).toContain("--mix: unknown kind 'sse'");
    expect(every.code).toBe(2);
    expect(every.stderr).toContain('--kill-every must be at least 0.05 s, got 0');
    expect(dur.code).toBe(2);
    expect(dur.stderr).toContain('--duration must be above 0 s, got -5');
    for (const r of [every, dur, mix]) expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('a missing input file is a one-line usage error naming it (exit 2)', async () => {
    const [replay, sim, cfg] = await Promise.all([
      cli(['replay', '--trace', '/nonexistent.csv']),
      cli(['simulate', '--trace', 'nope.csv', '--policy', 'dynamollm', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '2']),
      cli(['up', '--config', '/nonexistent.yaml']),
    ]);
    expect(replay.code).toBe(2);
    expect(replay.stderr.split('\n')[0]).toBe('dynamollm replay: --trace /nonexistent.csv: no such file');
    expect(sim.code).toBe(2);
    expect(sim.stderr.split('\n')[0]).toBe('dynamollm simulate: --trace nope.csv: no such file');
    expect(cfg.code).toBe(2);
    expect(cfg.stderr.split('\n')[0]).toMatch(/^dynamollm up: cannot read --config \/nonexistent\.yaml: ENOENT/);
    for (const r of [replay, sim, cfg]) expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('simulate --predictor takes proxy or online, online at step fidelity only (usage errors, exit 2)', async () => {
    const base = ['simulate', '--trace', 'synth:flat:0.002:2', '--policy', 'dynamollm', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '1'];
    const [bad, fluid] = await Promise.all([cli([...base, '--predictor', 'bert']), cli([...base, '--predictor', 'online', '--fidelity', 'fluid'])]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe("dynamollm simulate: --predictor must be proxy or online, got 'bert'");
    expect(fluid.code).toBe(2);
    expect(fluid.stderr).toContain('--predictor online learns from completed requests: step fidelity only');
  });

  it('an unreachable server is a one-line runtime error naming it (exit 1); --verbose or DEBUG adds the stack', async () => {
    const port = await closedPort();
    const [gw, nats, natsVerbose, unknownModel, debug] = await Promise.all([
      cli(['replay', '--trace', 'data/traces/AzureLLMInferenceTrace_conv.csv', '--url', `http://127.0.0.1:${port}`]),
      cli(['status', '--nats', `nats://127.0.0.1:${port}`]),
      cli(['status', '--nats', `nats://127.0.0.1:${port}`, '--verbose']),
      cli(['model', 'predict', '--model', 'gpt-99', '--gpu', 'h100', '--tp', '4', '--batch', '8', '--context', '1000']),
      cli(['status', '--nats', `nats://127.0.0.1:${port}`], { DEBUG: '1' }),
    ]);
    expect(gw.code).toBe(1);
    expect(gw.stderr.split('\n')[0]).toBe(`dynamollm replay: cannot reach http://127.0.0.1:${port}: ECONNREFUSED`);
    expect(nats.code).toBe(1);
    expect(nats.stderr.split('\n')[0]).toContain(`dynamollm status: cannot connect to NATS at nats://127.0.0.1:${port}: `);
    for (const r of [gw, nats]) {
      expect(r.stderr).not.toMatch(NO_STACK);
      expect(r.stderr).toContain('(run with --verbose for details)');
    }
    expect(natsVerbose.code).toBe(1);
    expect(natsVerbose.stderr).toMatch(NO_STACK);
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(NO_STACK);
    // an unknown model named on the command line is the user's mistake: usage (2), naming it
    expect(unknownModel.code).toBe(2);
    expect(unknownModel.stderr.split('\n')[0]).toMatch(/^dynamollm model predict: unknown model 'gpt-99'/);
  });

  it('--json prints the result as JSON on stdout, text otherwise; --out writes the same JSON to a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-json-'));
    const out = join(dir, 'sim.json');
    const sim = ['simulate', '--trace', 'synth:flat:0.002:2', '--policy', 'single-pool', '--model', 'llama2-70b', '--gpu', 'h100', '--servers', '1', '--fidelity', 'fluid'];
    const [text, json, simText, simJson] = await Promise.all([cli(PREDICT), cli([...PREDICT, '--json']), cli(sim), cli([...sim, '--json', '--out', out])]);
    expect(text.code).toBe(0);
    expect(() => JSON.parse(text.stdout)).toThrow();
    expect(text.stdout).toMatch(/^tbtMs\s+\d/m);
    expect(json.code).toBe(0);
    const p = JSON.parse(json.stdout) as { tbtMs: number; tp: number };
    expect(p.tp).toBe(4);
    expect(p.tbtMs).toBeGreaterThan(0);
    expect(simText.code).toBe(0);
    expect(simText.stdout).toMatch(/^single-pool\s+fluid/m);
    expect(simJson.code).toBe(0);
    const doc = JSON.parse(simJson.stdout) as { results: { policy: string; requests: number }[] };
    expect(doc.results.map((r) => r.policy)).toEqual(['single-pool']);
    expect(doc.results[0]!.requests).toBeGreaterThan(0);
    // the human table went to stderr, not into the JSON
    expect(simJson.stderr).toMatch(/^single-pool\s+fluid/m);
    expect((JSON.parse(readFileSync(out, 'utf8')) as typeof doc).results[0]!.requests).toBe(doc.results[0]!.requests);
  });

  it('up refuses a profile that lacks the configured TP before starting anything (exit 2, one line naming both)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-tp-'));
    const cfg = join(dir, 'tp1.yaml');
    writeFileSync(cfg, 'model: llama2-70b\ngpu: h100\nprofile: profiles/llama2-70b.h100.json\nservers:\n  - { id: n0, gpus: 2 }\nengine: { kind: emulator, initialTp: 1 }\n');
    const r = await cli(['up', '--config', cfg, '--run-dir', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(
      `dynamollm up: config ${cfg}: profile profiles/llama2-70b.h100.json covers TP 2, 4, 8 but not TP 1 (engine.initialTp or the instance's tp): profile those degrees or change engine.initialTp`,
    );
    // nothing was started: no NATS state directory in the run dir
    expect(readdirSync(dir).filter((f) => f !== 'tp1.yaml')).toEqual([]);
  });

  it('a standalone actor (systemd, k8s) refuses a profile that lacks its TP before it connects (exit 2, one line)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-tp-actor-'));
    const cfg = join(dir, 'tp1.yaml');
    // NATS at a port nothing listens on: the refusal must come before any connection attempt
    writeFileSync(cfg, 'model: llama2-70b\ngpu: h100\nprofile: profiles/llama2-70b.h100.json\nnats: { url: "nats://127.0.0.1:9" }\nservers:\n  - { id: n0, gpus: 2 }\nengine: { kind: emulator, initialTp: 1 }\n');
    const gap = `profile profiles/llama2-70b.h100.json covers TP 2, 4, 8 but not TP 1 (engine.initialTp or the instance's tp): profile those degrees or change engine.initialTp`;
    for (const kind of ['cluster', 'pool', 'node']) {
      const r = await cli(['actor', kind, '--id', `${kind}-x`, '--config', cfg]);
      expect(r.code, kind).toBe(2);
      expect(r.stderr.split('\n')[0], kind).toBe(`dynamollm actor: config ${cfg}: ${gap}`);
    }
    // an instance at a TP the profile lacks, under a config whose initialTp it covers
    const cfg2 = join(dir, 'tp2.yaml');
    writeFileSync(cfg2, 'model: llama2-70b\ngpu: h100\nprofile: profiles/llama2-70b.h100.json\nnats: { url: "nats://127.0.0.1:9" }\nservers:\n  - { id: n0, gpus: 2 }\nengine: { kind: emulator, initialTp: 2 }\n');
    const r = await cli(['actor', 'instance', '--id', 'i-x', '--config', cfg2, '--set', 'tp=1', '--set', 'gpus=0', '--set', 'pool=pool-all']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toMatch(/^dynamollm actor: config .*tp2\.yaml: profile profiles\/llama2-70b\.h100\.json covers TP 2, 4, 8 but not TP 1 /);
  });
});
