/**
 * A Hugging Face Hub on 127.0.0.1: model folders served through the Hub's API (revision info, file tree with
 * LFS checksums, resolve with Range), with faults on request — a connection dropped mid-file, corrupted bytes,
 * slow transfers — and a hostile server's answers: paths and commits that try to escape, files without checksums,
 * pagination links to another origin, a token demanded as a gated repository does.
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
  /** when set, such a connection is reset (TCP RST) as a failing network does: bytes still in flight are lost */
  resetOnDrop?: boolean;
  /** paths served with one byte flipped */
  corrupt: Set<string>;
  /** Range headers of resolve requests, e.g. "model.safetensors bytes=1000-4194303" */
  rangeRequests: string[];
  /** bytes of file content sent so far */
  bytesServed: number;
  /**
   * a hostile server: entries added to every file tree, the commit the revision API answers, paths listed without
   * checksums
   */
  hostile: { extraEntries: HubTreeEntry[]; sha?: string; withoutChecksum: Set<string> };
  /** when set, the tree's second half is left to this URL (a `Link: <…>; rel="next"` header), e.g. another server's */
  nextPageUrl?: string;
  /** when set, every request without `Authorization: Bearer <token>` is refused with 401, as a gated repository */
  requiredToken?: string;
  /** the path and Authorization header of every request */
  requests: { path: string; authorization?: string }[];
  /** when set, file bytes are sent at most this fast */
  bytesPerSecond?: number;
  /** when set, a Range from past the start is ignored: the whole file comes back with 200, as a resume would not be */
  ignoreRange?: boolean;
  close(): Promise<void>;
}

const LFS = /\.safetensors$/;

/** `host`: the address to listen on (127.0.0.1 unless a test needs another). */
export async function startFakeHub(repos: Record<string, FakeRepo>, host = '127.0.0.1'): Promise<FakeHub> {
  const hub: Omit<FakeHub, 'url' | 'close'> = {
    dropAfter: new Map(),
    corrupt: new Set(),
    rangeRequests: [],
    bytesServed: 0,
    hostile: { extraEntries: [], withoutChecksum: new Set() },
    requests: [],
  };
  // The file trees with their checksums, computed once (streamed: benchmark models are gigabytes).
  const trees = new Map<FakeRepo, HubTreeEntry[]>();
  for (const repo of Object.values(repos))
    trees.set(repo, await Promise.all(listFolder(repo.folder).map((file) => treeEntry(repo.folder, file))));
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    hub.requests.push({
      path: url.pathname,
      ...(request.headers.authorization ? { authorization: request.headers.authorization } : {}),
    });
    if (hub.requiredToken !== undefined && request.headers.authorization !== `Bearer ${hub.requiredToken}`) {
      response.writeHead(401, { 'content-type': 'application/json', 'x-error-code': 'GatedRepo' });
      return response.end(JSON.stringify({ error: 'Access to this model is restricted.' }));
    }
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const api = parts[0] === 'api' && parts[1] === 'models';
    const [owner, name, kind, revision, ...rest] = api ? parts.slice(2) : parts;
    const repo = repos[`${owner}/${name}`];
    if (!repo) return notFound(response, 'RepositoryNotFound');
    if (revision !== 'main' && revision !== repo.commit) return notFound(response, 'RevisionNotFound');
    const tree = trees.get(repo)!;
    if (api && kind === 'revision') {
      const sha = hub.hostile.sha ?? repo.commit;
      return json(response, {
        _id: repo.commit.slice(0, 24),
        id: `${owner}/${name}`,
        sha,
        private: false,
        gated: false,
        downloads: 0,
        likes: 0,
        lastModified: '2026-01-01T00:00:00.000Z',
        siblings: tree.map((f) => ({ rfilename: f.path })),
      });
    }
    if (api && kind === 'tree') {
      const listed = [...tree, ...hub.hostile.extraEntries].map((entry) =>
        hub.hostile.withoutChecksum.has(entry.path) ? { ...entry, oid: undefined, lfs: undefined } : entry,
      );
      if (hub.nextPageUrl === undefined || url.searchParams.has('cursor'))
        return json(response, url.searchParams.has('cursor') ? listed.slice(1) : listed);
      response.setHeader('link', `<${hub.nextPageUrl}>; rel="next"`);
      return json(response, listed.slice(0, 1));
    }
    if (!api && kind === 'resolve') {
      const entry = tree.find((f) => f.path === rest.join('/'));
      if (!entry) return notFound(response, 'EntryNotFound');
      return serveFile(hub, request, response, path.join(repo.folder, entry.path), entry, repo.commit);
    }
    notFound(response, 'EntryNotFound');
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return Object.assign(hub, {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

export interface HubTreeEntry {
  type: 'file' | 'directory';
  oid: string;
  size: number;
  path: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

function serveFile(
  hub: Omit<FakeHub, 'url' | 'close'>,
  request: http.IncomingMessage,
  response: http.ServerResponse,
  file: string,
  entry: HubTreeEntry,
  commit: string,
): void {
  const asked = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
  const range = hub.ignoreRange && asked && Number(asked[1]) > 0 ? null : asked;
  if (request.headers.range) hub.rangeRequests.push(`${entry.path} ${request.headers.range}`);
  const start = range ? Number(range[1]) : 0;
  const end = range && range[2] ? Math.min(Number(range[2]), entry.size - 1) : entry.size - 1;
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/octet-stream',
    etag: `"${entry.lfs?.oid ?? entry.oid}"`,
    'x-repo-commit': commit,
    'accept-ranges': 'bytes',
    'content-length': end - start + 1,
  };
  if (range) headers['content-range'] = `bytes ${start}-${end}/${entry.size}`;
  response.writeHead(range ? 206 : 200, headers);
  const drop = hub.dropAfter.get(entry.path);
  if (drop !== undefined && end > start) {
    hub.dropAfter.delete(entry.path);
    // The bytes up to the drop, then the connection dies without finishing the response.
    const partial = fs.createReadStream(file, { start, end: Math.max(start, drop) - 1 });
    partial.on('data', (chunk) => (hub.bytesServed += chunk.length));
    partial.on('end', () =>
      hub.resetOnDrop ? response.socket?.resetAndDestroy() : setTimeout(() => response.socket?.destroy(), 20),
    );
    partial.pipe(response, { end: false });
    return;
  }
  if (hub.corrupt.has(entry.path)) {
    const body = fs.readFileSync(file);
    body[0] ^= 0xff;
    hub.bytesServed += end - start + 1;
    response.end(body.subarray(start, end + 1));
    return;
  }
  const stream = fs.createReadStream(file, { start, end, highWaterMark: 64 * 1024 });
  response.on('close', () => stream.destroy());
  if (hub.bytesPerSecond === undefined) {
    stream.on('data', (chunk) => (hub.bytesServed += chunk.length));
    stream.pipe(response);
    return;
  }
  // A slow server: each chunk, then a pause as long as the rate asks (a test may lift the limit meanwhile); a pause
  // ends with the connection.
  let pause: NodeJS.Timeout | undefined;
  response.on('close', () => clearTimeout(pause));
  stream.on('data', (chunk) => {
    hub.bytesServed += chunk.length;
    response.write(chunk);
    stream.pause();
    pause = setTimeout(
      () => stream.resume(),
      hub.bytesPerSecond === undefined ? 0 : (1000 * chunk.length) / hub.bytesPerSecond,
    );
  });
  stream.on('end', () => response.end());
}

async function treeEntry(folder: string, file: string): Promise<HubTreeEntry> {
  const size = fs.statSync(path.join(folder, file)).size;
  const gitOid = createHash('sha1').update(`blob ${size}\0`);
  const sha256 = createHash('sha256');
  for await (const chunk of fs.createReadStream(path.join(folder, file))) {
    gitOid.update(chunk as Buffer);
    sha256.update(chunk as Buffer);
  }
  const entry: HubTreeEntry = { type: 'file', oid: gitOid.digest('hex'), size, path: file };
  // An LFS entry's content checksum is lfs.oid (its oid is the pointer's blob id; the same here, unused).
  return LFS.test(file) ? { ...entry, lfs: { oid: sha256.digest('hex'), size, pointerSize: 134 } } : entry;
}

function listFolder(folder: string, prefix = ''): string[] {
  return fs.readdirSync(path.join(folder, prefix), { withFileTypes: true }).flatMap((entry) => {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? listFolder(folder, relative) : [relative];
  });
}

function json(response: http.ServerResponse, value: unknown): void {
  response.writeHead(200, { 'content-type': 'application/json' });
  response.end(JSON.stringify(value));
}

function notFound(response: http.ServerResponse, code: string): void {
  response.writeHead(404, { 'content-type': 'application/json', 'x-error-code': code });
  response.end(JSON.stringify({ error: code }));
}
