/** The protocol catalog's subjects as regular expressions, for counting traffic per subject. */
import { CATALOG } from '../../protocols/catalog.ts';
export { Admission, InferenceRequest, subjects } from '../../protocols/index.ts';

const re = (w: string) => new RegExp('^' + w.replace(/[.$]/g, (c) => `\\${c}`).replace(/\*/g, '[^.]+').replace(/>$/, '.+') + '$');
export const CATALOG_FOR_BENCH = CATALOG.filter((e) => e.pattern !== 'kv').map((e) => ({ subject: e.subject, re: re(e.wildcard) }));
