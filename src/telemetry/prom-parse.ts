/**
 * A strict parser of the Prometheus text exposition format (0.0.4): HELP/TYPE lines, samples with label
 * sets (escaped \\ \" \n), values incl. NaN/+Inf/-Inf, optional timestamps. Used by tests to check that
 * /metrics is valid and by `dynamollm status` to read a gateway's metrics. Any malformed line throws,
 * naming the line.
 */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: PromSample[];
}

export class PromParseError extends Error {
  override name = 'PromParseError';
  readonly retryable = false;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** A sample's value as Prometheus' parser reads it (PromParseError naming `line` when it is not a number). */
export function parseValue(s: string, line: number): number {
  // as Prometheus' own parser (Go strconv.ParseFloat): NaN and Inf are case-insensitive (prom-client writes 'Nan')
  const l = s.toLowerCase();
  if (l === 'nan') return NaN;
  if (l === '+inf' || l === 'inf' || l === '+infinity' || l === 'infinity') return Infinity;
  if (l === '-inf' || l === '-infinity') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new PromParseError(`line ${line}: bad value '${s}'`);
  return Number(s);
}

/** The family a sample belongs to (histogram/summary suffixes stripped when such a family is declared). */
function familyOf(name: string, fams: Map<string, PromFamily>): string {
  for (const suf of ['_bucket', '_sum', '_count', '_created', '_total']) {
    if (name.endsWith(suf)) {
      const base = name.slice(0, -suf.length);
      const f = fams.get(base);
      if (f && (f.type === 'histogram' || f.type === 'summary' || (suf === '_total' && f.type === 'counter'))) return base;
    }
  }
  return name;
}

export function parsePrometheusText(text: string): Map<string, PromFamily> {
  const fams = new Map<string, PromFamily>();
  const get = (name: string): PromFamily => {
    let f = fams.get(name);
    if (!f) fams.set(name, (f = { name, type: 'untyped', help: '', samples: [] }));
    return f;
  };
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const ln = i + 1;
    const line = lines[i]!;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(line);
      if (!m) continue; // other comments are allowed
      const [, kw, name, rest = ''] = m;
      if (!NAME.test(name!)) throw new PromParseError(`line ${ln}: bad metric name '${name}'`);
      const f = get(name!);
      if (kw === 'TYPE') {
        if (!TYPES.has(rest.trim())) throw new PromParseError(`line ${ln}: bad type '${rest}'`);
        if (f.samples.length) throw new PromParseError(`line ${ln}: TYPE for ${name} after its samples`);
        f.type = rest.trim() as PromFamily['type'];
      } else f.help = rest;
      continue;
    }
    let p = 0;
    while (p < line.length && /[a-zA-Z0-9_:]/.test(line[p]!)) p++;
    const name = line.slice(0, p);
    if (!NAME.test(name)) throw new PromParseError(`line ${ln}: bad sample name in '${line}'`);
    const labels: Record<string, string> = {};
    if (line[p] === '{') {
      p++;
      for (;;) {
        while (line[p] === ' ') p++;
        if (line[p] === '}') {
          p++;
          break;
        }
        const eq = line.indexOf('=', p);
        if (eq < 0) throw new PromParseError(`line ${ln}: label without '='`);
        const lname = line.slice(p, eq).trim();
        if (!LABEL.test(lname)) throw new PromParseError(`line ${ln}: bad label name '${lname}'`);
        if (line[eq + 1] !== '"') throw new PromParseError(`line ${ln}: label value must be quoted`);
        let q = eq + 2;
        let val = '';
        for (;;) {
          const c = line[q];
          if (c === undefined) throw new PromParseError(`line ${ln}: unterminated label value`);
          if (c === '\\') {
            const n = line[q + 1];
            if (n === 'n') val += '\n';
            else if (n === '\\' || n === '"') val += n;
            else throw new PromParseError(`line ${ln}: bad escape '\\${n}'`);
            q += 2;
            continue;
          }
          if (c === '"') break;
          val += c;
          q++;
        }
        if (lname in labels) throw new PromParseError(`line ${ln}: duplicate label '${lname}'`);
        labels[lname] = val;
        p = q + 1;
        while (line[p] === ' ') p++;
        if (line[p] === ',') p++;
        else if (line[p] !== '}') throw new PromParseError(`line ${ln}: expected ',' or '}' in label set`);
      }
    }
    const rest = line.slice(p).trim().split(/\s+/);
    if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new PromParseError(`line ${ln}: expected 'value [timestamp]'`);
    const value = parseValue(rest[0]!, ln);
    if (rest[1] !== undefined && !/^-?\d+$/.test(rest[1])) throw new PromParseError(`line ${ln}: bad timestamp '${rest[1]}'`);
    get(familyOf(name, fams)).samples.push({ name, labels, value });
  }
  // histogram sanity: buckets cumulative and +Inf bucket equal to _count
  for (const f of fams.values()) {
    if (f.type !== 'histogram') continue;
    const groups = new Map<string, PromSample[]>();
    for (const s of f.samples) {
      if (!s.name.endsWith('_bucket')) continue;
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new PromParseError(`${f.name}: bucket without 'le'`);
      const k = JSON.stringify(rest);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k)!.push(s);
    }
    for (const [k, bs] of groups) {
      let prev = -Infinity;
      for (const b of bs) {
        if (b.value < prev) throw new PromParseError(`${f.name}${k}: buckets are not cumulative`);
        prev = b.value;
      }
      if (bs.at(-1)!.labels.le !== '+Inf') throw new PromParseError(`${f.name}${k}: last bucket is not +Inf`);
    }
  }
  return fams;
}
