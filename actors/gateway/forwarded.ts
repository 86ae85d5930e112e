/**
 * Whether a browser reached the gateway over https (the dashboard cookie's Secure flag, dashboard-login.ts): the
 * connection is TLS, or a proxy the operator trusts (gateway.trustedProxies: addresses or CIDRs of the TLS-terminating
 * proxies, e.g. an ingress controller's pod network) says so with X-Forwarded-Proto: https. The header from any other
 * peer is ignored: a client could send it itself.
 */
import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';

/** gateway.cookieSecure: true or false outright, or auto (https as viaHttps sees it). */
export type CookieSecure = 'auto' | boolean;

/** `10.0.0.7`, `10.0.0.0/8`, `fd00::1`, `fd00::/8`: an address, or a network with its prefix length. */
export function isAddressOrCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  const v = isIP(addr ?? '');
  if (v === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (v === 4 ? 32 : 128);
}

/** The trusted proxies as a matcher; throws on an entry that is no address or CIDR (the config schema refuses it first). */
export function trustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    if (!isAddressOrCidr(e)) throw new Error(`trusted proxy '${e}' is not an IP address or CIDR (10.0.0.0/8, fd00::/8)`);
    const [addr, bits] = e.split('/') as [string, string | undefined];
    const type = isIP(addr) === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

/** Whether `peer` (a socket's remoteAddress; an IPv4-mapped IPv6 address counts as its IPv4 one) is in `list`. */
export function isTrusted(list: BlockList, peer: string | undefined): boolean {
  if (!peer) return false;
  const a = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(peer)?.[1] ?? peer;
  const v = isIP(a);
  return v !== 0 && list.check(a, v === 4 ? 'ipv4' : 'ipv6');
}

/**
 * The browser's connection is https: `setting` when it is true or false; for auto, a TLS socket, or X-Forwarded-Proto
 * whose first value is https from a trusted proxy.
 */
export function viaHttps(req: IncomingMessage, setting: CookieSecure, trusted: BlockList): boolean {
  if (setting !== 'auto') return setting;
  if ((req.socket as Partial<TLSSocket>).encrypted === true) return true;
  if (!isTrusted(trusted, req.socket.remoteAddress)) return false;
  const h = req.headers['x-forwarded-proto'];
  const first = (Array.isArray(h) ? h[0] : h)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https';
}
