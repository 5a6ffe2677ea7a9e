/**
 * A Hugging Face Hub on 127.0.0.1: model folders served through the Hub's API (revision info, file tree with
 * LFS checksums, resolve with Range), with faults on request — a connection dropped mid-file, corrupted bytes.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

export interface FakeRepo {
  folder: string;
  commit: string;
}

export interface FakeHub {
  url: string;
  /** path → bytes after which the next download of that file loses its connection (once) */
  dropAfter: Map<string, number>;
  /** paths served with one byte flipped */
  corrupt: Set<string>;
  /** Range headers of resolve requests, e.g. "model.safetensors bytes=1000-4194303" */
  rangeRequests: string[];
  /** bytes of file content sent so far */
  bytesServed: number;
  close(): Promise<void>;
}

const LFS = /\.safetensors$/;

export async function startFakeHub(repos: Record<string, FakeRepo>): Promise<FakeHub> {
  const hub: Omit<FakeHub, 'url' | 'close'> = { dropAfter: new Map(), corrupt: new Set(), rangeRequests: [], bytesServed: 0 };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const api = parts[0] === 'api' && parts[1] === 'models';
    const [owner, name, kind, revision, ...rest] = api ? parts.slice(2) : parts;
    const repo = repos[`${owner}/${name}`];
    if (!repo) return notFound(response, 'RepositoryNotFound');
    if (revision !== 'main' && revision !== repo.commit) return notFound(response, 'RevisionNotFound');
    const files = listFolder(repo.folder);
    if (api && kind === 'revision') {
      return json(response, { _id: repo.commit.slice(0, 24), id: `${owner}/${name}`, sha: repo.commit, private: false, gated: false, downloads: 0, likes: 0, lastModified: '2026-01-01T00:00:00.000Z', siblings: files.map((f) => ({ rfilename: f })) });
    }
    if (api && kind === 'tree') return json(response, files.map((file) => treeEntry(repo.folder, file)));
    if (!api && kind === 'resolve') {
      const file = rest.join('/');
      if (!files.includes(file)) return notFound(response, 'EntryNotFound');
      return serveFile(hub, request, response, file, fs.readFileSync(path.join(repo.folder, file)), repo.commit);
    }
    notFound(response, 'EntryNotFound');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(hub, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  });
}

function serveFile(hub: Omit<FakeHub, 'url' | 'close'>, request: http.IncomingMessage, response: http.ServerResponse, file: string, content: Buffer, commit: string): void {
  const body = hub.corrupt.has(file) ? Buffer.from(content).fill(content[0] ^ 0xff, 0, 1) : content;
  const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
  if (request.headers.range) hub.rangeRequests.push(`${file} ${request.headers.range}`);
  const start = range ? Number(range[1]) : 0;
  const end = range && range[2] ? Math.min(Number(range[2]), body.length - 1) : body.length - 1;
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', etag: `"${sha256(content)}"`, 'x-repo-commit': commit, 'accept-ranges': 'bytes' };
  if (range) {
    headers['content-range'] = `bytes ${start}-${end}/${body.length}`;
  }
  const slice = body.subarray(start, end + 1);
  response.writeHead(range ? 206 : 200, { ...headers, 'content-length': slice.length });
  const drop = hub.dropAfter.get(file);
  if (drop !== undefined && slice.length > 1) {
    hub.dropAfter.delete(file);
    const sent = slice.subarray(0, Math.max(0, drop - start));
    hub.bytesServed += sent.length;
    response.write(sent, () => setTimeout(() => response.socket?.destroy(), 20));
    return;
  }
  hub.bytesServed += slice.length;
  response.end(slice);
}

function treeEntry(folder: string, file: string): object {
  const content = fs.readFileSync(path.join(folder, file));
  const gitOid = createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
  if (!LFS.test(file)) return { type: 'file', oid: gitOid, size: content.length, path: file };
  // An LFS entry's oid is the pointer's blob id; its content checksum is lfs.oid.
  return { type: 'file', oid: gitOid, size: content.length, path: file, lfs: { oid: sha256(content), size: content.length, pointerSize: 134 } };
}

function listFolder(folder: string, prefix = ''): string[] {
  return fs.readdirSync(path.join(folder, prefix), { withFileTypes: true }).flatMap((entry) => {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? listFolder(folder, relative) : [relative];
  });
}

function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function json(response: http.ServerResponse, value: unknown): void {
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify(value));
}

function notFound(response: http.ServerResponse, code: string): void {
  response.writeHead(404, { 'content-type': 'application/json', 'x-error-code': code });
  response.end(JSON.stringify({ error: code }));
}
