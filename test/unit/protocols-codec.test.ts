import { describe, it, expect } from 'vitest';
import { packRaw, ProtocolError, VersionMismatchError, ALL_CODECS } from '../../protocols/index.ts';
import { SAMPLES, CODECS } from '../fixtures/actors/samples.ts';
import { senderTrusted } from '../../protocols/codec.ts';
import { LegReport, type LegReport as LegReportT } from '../../protocols/messages.ts';

describe('codec: every message type', () => {
  it('has a sample for every codec', () => {
    for (const name of Object.keys(ALL_CODECS)) expect(SAMPLES[name], name).toBeDefined();
  });
  for (const [name, c] of Object.entries(CODECS)) {
    describe(name, () => {
      it('round-trips', () => {
        const bytes = c.encode(SAMPLES[name]);
        expect(c.decode(bytes, 'x')).toEqual(SAMPLES[name]);
      });
      it('rejects garbage, a wrong version, a truncated payload and a wrong shape with ProtocolError', () => {
        const good = c.encode(SAMPLES[name]);
        const garbage = new Uint8Array([0xc1, 0xff, 0x00, 0x13, 0x37]);
        const wrongVersion = packRaw({ ...(SAMPLES[name] as object), v: 2 });
        const truncated = good.subarray(0, Math.floor(good.length / 2));
        const wrongShape = packRaw({ v: 1, nonsense: true });
        // a message whose only required field is `v` (StatusRequest) legitimately accepts {v:1, extra}
        let onlyV = true;
        try {
          c.check({ v: 1 });
        } catch {
          onlyV = false;
        }
        const cases: [string, Uint8Array][] = [['garbage', garbage], ['version', wrongVersion], ['truncated', truncated], ['empty', new Uint8Array()]];
        if (!onlyV) cases.push(['shape', wrongShape]);
        for (const [what, bytes] of cases) {
          let err: unknown;
          try {
            c.decode(bytes, 'dyn.v1.test');
          } catch (e) {
            err = e;
          }
          expect(err, `${name}/${what}`).toBeInstanceOf(ProtocolError);
          expect((err as ProtocolError).retryable).toBe(false);
          expect((err as ProtocolError).subject).toBe('dyn.v1.test');
          if (what === 'version') expect(err).toBeInstanceOf(VersionMismatchError);
        }
      });
      it('refuses to encode an invalid value (sender bug caught at the sender)', () => {
        expect(() => c.encode({ ...(SAMPLES[name] as object), v: 2 })).toThrow(ProtocolError);
      });
    });
  }
});

describe('codec: senderTrusted (a hot sender that builds its values from checked ones)', () => {
  it('packs the same bytes without the sender-side check; the receiver still validates', () => {
    const trusted = senderTrusted(LegReport);
    const good = SAMPLES.LegReport as LegReportT;
    expect(trusted.encode(good)).toEqual(LegReport.encode(good));
    const bad = { ...good, phase: 'nonsense' } as unknown as LegReportT;
    expect(() => LegReport.encode(bad)).toThrow(ProtocolError);
    const bytes = trusted.encode(bad);
    expect(() => trusted.decode(bytes, 'x')).toThrow(ProtocolError);
    expect(() => LegReport.decode(bytes, 'x')).toThrow(ProtocolError);
  });
});
