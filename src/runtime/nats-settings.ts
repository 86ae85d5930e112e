/**
 * NATS connection settings: the ONE place every entry point (actors, `up`, status/top, the gateway, the
 * launcher of issue-5 actors) reads the server URL and credentials from. Sources, highest first:
 *   1. flags (`--nats URL`, `--user`, `--password`/`--pass`, `--creds FILE`, `--nkey FILE`, `--tlscert`,
 *      `--tlskey`, `--tlsca`),
 *   2. the environment, under the `nats` CLI's names: NATS_URL, NATS_USER, NATS_PASSWORD, NATS_CREDS,
 *      NATS_NKEY (a file holding an nkey seed), NATS_CERT, NATS_KEY, NATS_CA,
 *   3. the config file's `nats:` section (url, user, pass, creds, nkey, tls),
 *   4. the default URL nats://127.0.0.1:4222 and no credentials.
 * One credential kind wins, in this order: creds file (decentralized JWT), nkey seed file, user/password.
 * Files are read when connecting (a missing file is a NatsSettingsError naming it, never a silent anonymous
 * connection).
 */
import { readFileSync } from 'node:fs';
import {
  credsAuthenticator,
  usernamePasswordAuthenticator,
  type Authenticator,
  type TlsOptions,
} from '@nats-io/transport-node';
import { nativeNkeyAuthenticator } from './nkey-auth.ts';

export const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

export class NatsSettingsError extends Error {
  override name = 'NatsSettingsError';
  readonly retryable = false;
}

export interface NatsTls {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface NatsSettings {
  servers: string[];
  user?: string;
  pass?: string;
  /** path of a NATS creds file (user JWT + nkey seed). */
  creds?: string;
  /** path of a file holding an nkey seed (SU...). */
  nkey?: string;
  tls?: NatsTls;
}

/** The subset of a config file's `nats:` section this reads. */
export interface NatsConfigSection {
  url?: string | string[];
  user?: string;
  pass?: string;
  creds?: string;
  nkey?: string;
  tls?: NatsTls;
}

export interface NatsFlags {
  nats?: string;
  user?: string;
  password?: string;
  pass?: string;
  creds?: string;
  nkey?: string;
  tlscert?: string;
  tlskey?: string;
  tlsca?: string;
}

/** Flags every NATS-connecting CLI command accepts (node:util parseArgs option spec). */
export const NATS_FLAG_OPTIONS = {
  nats: { type: 'string' },
  user: { type: 'string' },
  password: { type: 'string' },
  pass: { type: 'string' },
  creds: { type: 'string' },
  nkey: { type: 'string' },
  tlscert: { type: 'string' },
  tlskey: { type: 'string' },
  tlsca: { type: 'string' },
} as const;

export const NATS_FLAGS_USAGE =
  '[--nats URL] [--user U --password P | --creds FILE | --nkey FILE] [--tlscert F --tlskey F --tlsca F] ' +
  '(env: NATS_URL NATS_USER NATS_PASSWORD NATS_CREDS NATS_NKEY NATS_CERT NATS_KEY NATS_CA)';

const splitUrls = (u: string | string[]): string[] =>
  (Array.isArray(u) ? u : u.split(','))
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

const nonEmpty = (...vs: (string | undefined)[]): string | undefined => vs.find((v) => v !== undefined && v !== '');

/**
 * Resolve the settings from flags, env and the config section (see the module comment for precedence).
 * Credentials are taken as one unit from the highest source that names any: a flag `--user` is never paired
 * with an env password, and env NATS_CREDS does not mix with a config user.
 */
export function natsSettings(src: { flags?: NatsFlags; env?: NodeJS.ProcessEnv; config?: NatsConfigSection } = {}): NatsSettings {
  const f = src.flags ?? {};
  const env = src.env ?? process.env;
  const c = src.config ?? {};
  const url = nonEmpty(f.nats, env.NATS_URL) ?? (c.url !== undefined ? c.url : DEFAULT_NATS_URL);
  const servers = splitUrls(url);
  if (servers.length === 0) throw new NatsSettingsError('no NATS URL given (--nats, NATS_URL or nats.url)');
  const layers: NatsConfigSection[] = [
    { user: f.user, pass: nonEmpty(f.password, f.pass), creds: f.creds, nkey: f.nkey, tls: { cert: f.tlscert, key: f.tlskey, ca: f.tlsca } },
    { user: env.NATS_USER, pass: env.NATS_PASSWORD, creds: env.NATS_CREDS, nkey: env.NATS_NKEY, tls: { cert: env.NATS_CERT, key: env.NATS_KEY, ca: env.NATS_CA } },
    c,
  ];
  const auth = layers.find((l) => nonEmpty(l.user, l.creds, l.nkey) !== undefined);
  const tlsLayer = layers.find((l) => l.tls && nonEmpty(l.tls.ca, l.tls.cert, l.tls.key) !== undefined);
  const out: NatsSettings = { servers };
  if (auth) {
    if (nonEmpty(auth.creds)) out.creds = auth.creds;
    else if (nonEmpty(auth.nkey)) out.nkey = auth.nkey;
    else {
      out.user = auth.user;
      out.pass = auth.pass ?? '';
    }
  }
  if (tlsLayer?.tls) {
    const t = tlsLayer.tls;
    if ((nonEmpty(t.cert) === undefined) !== (nonEmpty(t.key) === undefined)) throw new NatsSettingsError('TLS: give both a client certificate and its key (--tlscert/--tlskey, NATS_CERT/NATS_KEY)');
    out.tls = Object.fromEntries(Object.entries(t).filter(([, v]) => nonEmpty(v as string) !== undefined)) as NatsTls;
  }
  return out;
}

/** Per-role credentials of a config's `nats.roles` (an actor of that kind uses them over nats.user/pass). */
export interface NatsRolesSection {
  roles?: Partial<Record<string, { user: string; pass: string }>>;
}

/**
 * natsSettings for an actor of kind `role`: the config layer uses `nats.roles[role]` when the config names
 * it (a deployment with one user per role), else the section's own credentials.
 */
export function actorNatsSettings(role: string, src: { flags?: NatsFlags; env?: NodeJS.ProcessEnv; config?: NatsConfigSection & NatsRolesSection }): NatsSettings {
  const c = src.config ?? {};
  const r = c.roles?.[role];
  const config: NatsConfigSection = r ? { url: c.url, tls: c.tls, user: r.user, pass: r.pass } : c;
  return natsSettings({ ...src, config });
}

/** What the settings authenticate as, for logs and errors (never a secret). */
export function describeAuth(s: NatsSettings): string {
  if (s.creds) return `creds ${s.creds}`;
  if (s.nkey) return `nkey ${s.nkey}`;
  if (s.user !== undefined) return `user ${s.user}`;
  return 'anonymous';
}

function readFileOrThrow(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new NatsSettingsError(`cannot read NATS ${what} file ${path}: ${(err as Error).message}`);
  }
}

/** nats.js connection options for the settings (authenticator and TLS); reads the credential files. */
export function connectionOptions(s: NatsSettings): { servers: string[]; authenticator?: Authenticator; tls?: TlsOptions } {
  let authenticator: Authenticator | undefined;
  if (s.creds) authenticator = credsAuthenticator(readFileOrThrow(s.creds, 'creds'));
  else if (s.nkey) {
    const seed = new TextDecoder().decode(readFileOrThrow(s.nkey, 'nkey seed')).trim();
    const line = seed.split(/\s+/).find((w) => w.startsWith('SU'));
    if (!line) throw new NatsSettingsError(`NATS nkey file ${s.nkey} holds no user seed (a line starting with SU)`);
    authenticator = nativeNkeyAuthenticator(line);
  } else if (s.user !== undefined) authenticator = usernamePasswordAuthenticator(s.user, s.pass ?? '');
  const tls: TlsOptions | undefined = s.tls ? { caFile: s.tls.ca, certFile: s.tls.cert, keyFile: s.tls.key } : undefined;
  return { servers: s.servers, ...(authenticator ? { authenticator } : {}), ...(tls ? { tls } : {}) };
}

/** Environment variables that hand these settings to a child process (the `nats` CLI's names). */
export function settingsEnv(s: NatsSettings): Record<string, string> {
  const env: Record<string, string> = { NATS_URL: s.servers.join(',') };
  if (s.creds) env.NATS_CREDS = s.creds;
  if (s.nkey) env.NATS_NKEY = s.nkey;
  if (s.user !== undefined) {
    env.NATS_USER = s.user;
    env.NATS_PASSWORD = s.pass ?? '';
  }
  if (s.tls?.ca) env.NATS_CA = s.tls.ca;
  if (s.tls?.cert) env.NATS_CERT = s.tls.cert;
  if (s.tls?.key) env.NATS_KEY = s.tls.key;
  return env;
}

/** Env names this module reads; a parent clears them before passing its own settings to a child. */
export const NATS_ENV_NAMES = ['NATS_URL', 'NATS_USER', 'NATS_PASSWORD', 'NATS_CREDS', 'NATS_NKEY', 'NATS_CERT', 'NATS_KEY', 'NATS_CA'] as const;
