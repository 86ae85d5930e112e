/**
 * Compiled validators: a zod schema turned once into plain closures that answer "does zod accept this value
 * AND return it unchanged?" without building zod's parse context, issue lists and output copies. The codec
 * (protocols/codec.ts) tries it first; `false` only means "ask zod", so acceptance, the parsed value and every
 * error message stay zod's. test/unit/protocols-fast.test.ts checks the agreement on generated inputs for
 * every codec.
 *
 * Each compiled node says whether it is `exact`: false from it means zod rejects too. Unions rely on that (zod
 * returns its first accepting option, so a later option may vouch only when the earlier ones are exact). An
 * object that strips unknown keys is not exact (zod accepts and changes the value); a schema kind this file
 * does not know (refinements, transforms, defaults...) compiles to "never vouch", which is always safe.
 */
import type { z } from 'zod';

type Check = (x: unknown) => boolean;
interface Node {
  check: Check;
  /** check(x) === false implies zod rejects x. */
  exact: boolean;
}

const NEVER: Node = { check: () => false, exact: false };

/** zod's idea of an object: not null, not an array; we vouch only for plain ones (what msgpack and JSON build). */
function isPlain(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const p = Object.getPrototypeOf(x) as unknown;
  return p === Object.prototype || p === null;
}
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

interface Def {
  typeName?: string;
  checks?: { kind: string; value?: number; inclusive?: boolean; regex?: RegExp }[];
  [k: string]: unknown;
}

function compileNode(schema: z.ZodTypeAny): Node {
  const def = schema._def as Def;
  switch (def.typeName) {
    case 'ZodString': {
      let min = 0, max = Infinity;
      const res: RegExp[] = [];
      for (const c of def.checks ?? []) {
        if (c.kind === 'min') min = Math.max(min, c.value!);
        else if (c.kind === 'max') max = Math.min(max, c.value!);
        else if (c.kind === 'length') {
          min = Math.max(min, c.value!);
          max = Math.min(max, c.value!);
        }
        else if (c.kind === 'regex') res.push(c.regex!);
        else return NEVER;
      }
      return {
        exact: true,
        check: (x) => {
          if (typeof x !== 'string' || x.length < min || x.length > max) return false;
          for (const r of res) {
            r.lastIndex = 0;
            if (!r.test(x)) return false;
          }
          return true;
        },
      };
    }
    case 'ZodNumber': {
      let int = false, finite = false, lo = -Infinity, loIncl = true, hi = Infinity, hiIncl = true;
      for (const c of def.checks ?? []) {
        if (c.kind === 'int') int = true;
        else if (c.kind === 'finite') finite = true;
        else if (c.kind === 'min') {
          if (c.value! > lo || (c.value === lo && !c.inclusive)) {
            lo = c.value!;
            loIncl = !!c.inclusive;
          }
        } else if (c.kind === 'max') {
          if (c.value! < hi || (c.value === hi && !c.inclusive)) {
            hi = c.value!;
            hiIncl = !!c.inclusive;
          }
        } else return NEVER;
      }
      return {
        exact: true,
        check: (x) => {
          // (-0: zod may hand back +0; rare enough to leave to zod)
          if (typeof x !== 'number' || Number.isNaN(x) || Object.is(x, -0)) return false;
          if (int && !Number.isInteger(x)) return false;
          if (finite && !Number.isFinite(x)) return false;
          if (loIncl ? x < lo : x <= lo) return false;
          if (hiIncl ? x > hi : x >= hi) return false;
          return true;
        },
      };
    }
    case 'ZodBoolean':
      return { exact: true, check: (x) => typeof x === 'boolean' };
    case 'ZodNull':
      return { exact: true, check: (x) => x === null };
    case 'ZodUnknown':
    case 'ZodAny':
      return { exact: true, check: () => true };
    case 'ZodLiteral': {
      const val = def.value;
      return { exact: true, check: (x) => x === val };
    }
    case 'ZodEnum': {
      const set = new Set<unknown>(def.values as string[]);
      return { exact: true, check: (x) => typeof x === 'string' && set.has(x) };
    }
    case 'ZodOptional': {
      const inner = compileNode(def.innerType as z.ZodTypeAny);
      return { exact: inner.exact, check: (x) => x === undefined || inner.check(x) };
    }
    case 'ZodNullable': {
      const inner = compileNode(def.innerType as z.ZodTypeAny);
      return { exact: inner.exact, check: (x) => x === null || inner.check(x) };
    }
    case 'ZodArray': {
      const el = compileNode(def.type as z.ZodTypeAny);
      const min = (def.minLength as { value: number } | null)?.value ?? 0;
      const max = (def.maxLength as { value: number } | null)?.value ?? Infinity;
      if (def.exactLength) return NEVER;
      return {
        exact: el.exact,
        check: (x) => {
          if (!Array.isArray(x) || x.length < min || x.length > max) return false;
          for (let i = 0; i < x.length; i++) if (!el.check(x[i])) return false;
          return true;
        },
      };
    }
    case 'ZodRecord': {
      const key = compileNode(def.keyType as z.ZodTypeAny);
      const val = compileNode(def.valueType as z.ZodTypeAny);
      return {
        exact: key.exact && val.exact,
        check: (x) => {
          if (!isPlain(x)) return false;
          for (const k in x) {
            if (k === '__proto__' || !key.check(k) || !val.check(x[k])) return false;
          }
          return true;
        },
      };
    }
    case 'ZodUnion': {
      const opts = (def.options as z.ZodTypeAny[]).map(compileNode);
      return {
        exact: opts.every((o) => o.exact),
        check: (x) => {
          for (const o of opts) {
            if (o.check(x)) return true;
            // zod returns the first option that accepts: a later one may vouch only if this one surely rejects
            if (!o.exact) return false;
          }
          return false;
        },
      };
    }
    case 'ZodObject': {
      const shape = (def.shape as () => Record<string, z.ZodTypeAny>)();
      const unknownKeys = def.unknownKeys as 'strip' | 'strict' | 'passthrough';
      if (((def.catchall as z.ZodTypeAny | undefined)?._def as Def | undefined)?.typeName !== 'ZodNever') return NEVER;
      const fields = Object.entries(shape).map(([k, s]) => ({ k, node: compileNode(s), optional: s.isOptional() }));
      const byKey = new Map(fields.map((f) => [f.k, f.node]));
      const required = fields.filter((f) => !f.optional).map((f) => f.k);
      const exact = unknownKeys !== 'strip' && fields.every((f) => f.node.exact);
      return {
        exact,
        check: (x) => {
          if (!isPlain(x)) return false;
          for (const k of required) if (!hasOwn(x, k)) return false;
          for (const k in x) {
            if (k === '__proto__') return false;
            const n = byKey.get(k);
            if (n) {
              if (!n.check(x[k])) return false;
            } else if (unknownKeys !== 'passthrough') return false; // strip: zod would change it; strict: refuses
          }
          return true;
        },
      };
    }
    default:
      return NEVER;
  }
}

/** A validator that vouches for values zod accepts unchanged; `false` means "let zod decide". */
export function compileFastCheck(schema: z.ZodTypeAny): (value: Record<string, unknown>) => boolean {
  return compileNode(schema).check as (value: Record<string, unknown>) => boolean;
}
