/**
 * The emulator's vLLM sleep mode (POST /sleep?level=1|2, POST /wake_up): each call answers after the time
 * src/model/sleep.ts models for it (falling asleep: the weights off the GPU; waking: level 1 copies them back over
 * PCIe, level 2 reloads them), in wall time divided by the time scale. The driver keeps the power and the refusals:
 * asleep the core draws unloaded idle power and drops its prefix cache; completions are refused from the sleep call
 * until the wake is over.
 */
import type { ModelSpec } from '../../model/types.ts';
import { sleepTimeS, wakeTimeS, type SleepLevel } from '../../model/sleep.ts';
import type { RealtimeDriver } from './driver.ts';

/** A sleep call the engine refuses: `status` is the HTTP status it answers with. */
export class SleepCallError extends Error {
  override name = 'SleepCallError';
  readonly retryable: boolean;
  constructor(readonly status: 400 | 409, message: string) {
    super(message);
    this.retryable = status === 409; // in flight work: drain, then retry
  }
}

export class EmulatedSleepMode {
  /** a wake under way (concurrent /wake_up calls wait for the same one). */
  #waking: Promise<void> | null = null;

  constructor(private readonly driver: RealtimeDriver, private readonly model: Pick<ModelSpec, 'paramsB' | 'dtypeBytes'>, private readonly tp: number, private readonly zeroDelay: boolean) {}

  /** POST /sleep?level=<raw>: answers once asleep; asleep already, at once. */
  async sleep(raw: string | null): Promise<void> {
    const text = raw ?? '1';
    if (text !== '1' && text !== '2') throw new SleepCallError(400, `level must be 1 or 2, got ${text}`);
    const level: SleepLevel = text === '2' ? 2 : 1;
    if (this.driver.isSleeping()) return;
    try {
      this.driver.sleep(level);
    } catch (e) {
      throw new SleepCallError(409, (e as Error).message);
    }
    await this.#wait(sleepTimeS(this.model, this.tp, level));
    this.driver.asleep();
  }

  /** POST /wake_up: answers once awake; awake already, at once. */
  async wakeUp(): Promise<void> {
    const level = this.driver.sleepingAt();
    if (level === null) return;
    this.#waking ??= (async () => {
      this.driver.beginWake();
      await this.#wait(wakeTimeS(this.model, this.tp, level));
      this.driver.awake();
    })().finally(() => (this.#waking = null));
    await this.#waking;
  }

  async #wait(s: number): Promise<void> {
    const ms = this.zeroDelay ? 0 : (s * 1000) / this.driver.timeScale;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }
}
