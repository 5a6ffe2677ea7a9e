/**
 * Whether an address is this machine: what may go over plain http (a token, a key, a screenshot) without crossing a
 * network, and what a server without a key answers.
 */
import * as net from 'node:net';

/** Whether `host` (a name, or an address as a URL or Host header writes it, IPv6 in brackets or not) is this machine. */
export function isLoopback(host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (name === 'localhost') return true;
  if (net.isIPv4(name)) return name.startsWith('127.');
  return name === '::1';
}

/** Whether what is sent to `url` stays private: over https, or over http to this machine itself. */
export function privateTo(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  return protocol === 'https:' || (protocol === 'http:' && isLoopback(hostname));
}
