/**
 * What a hostile Hub answers, on a server of its own on 127.0.0.1: listings that page on without end or run
 * past their bound off /api/, a file said to be in a xet store, a file's answer without a body, answers trickled a
 * byte at a time, a resumed file that comes whole as JSON. Each must end in a clear error or a verified file, soon,
 * never in a hang.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { downloadModel } from '../../src/hub/download';
import { ModelRequest, planDownload } from '../../src/hub/downloadPlan';
import { temporaryFolders } from '../helpers/tempFolders';

const REPO = 'hostile/model';
const COMMIT = 'c'.repeat(40);

const downloadError = (pattern: RegExp) => (error: unknown) =>
  error instanceof FicocoError && error.kind === 'download' && pattern.test(error.message);

/** Takes a request the Hub would answer (true) or leaves it to the Hub's usual answer (false). */
type Answer = (request: http.IncomingMessage, response: http.ServerResponse, url: URL) => boolean;

interface MiniHub {
  url: string;
  /** "PATH RANGE" of every request */
  requests: string[];
  close(): Promise<void>;
}

/** The listing entry of `bytes` at `file`: LFS with a SHA-256 for weights, git's blob SHA-1 otherwise. */
function treeEntry(file: string, bytes: Buffer) {
  const oid = createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return file.endsWith('.safetensors')
    ? { type: 'file', path: file, size: bytes.length, oid, lfs: { oid: sha256, size: bytes.length, pointerSize: 134 } }
    : { type: 'file', path: file, size: bytes.length, oid };
}

/** The listing of `files`, as one page. */
function tree(files: Record<string, Buffer>) {
  return Object.entries(files).map(([file, bytes]) => treeEntry(file, bytes));
}

/** A Hub serving `files` of REPO at COMMIT (revision, one-page tree, resolve with one Range), unless `answer` does. */
async function startMiniHub(files: Record<string, Buffer>, answer: Answer = () => false): Promise<MiniHub> {
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    requests.push(`${url.pathname} ${request.headers.range ?? ''}`.trim());
    if (answer(request, response, url)) return;
    if (url.pathname.startsWith(`/api/models/${REPO}/revision/`)) return json(response, { id: REPO, sha: COMMIT });
    if (url.pathname.startsWith(`/api/models/${REPO}/tree/`)) return json(response, tree(files));
    const file = files[decodeURIComponent(url.pathname.slice(`/${REPO}/resolve/${COMMIT}/`.length))];
    if (!url.pathname.startsWith(`/${REPO}/resolve/${COMMIT}/`) || !file) {
      response.writeHead(404, { 'x-error-code': 'EntryNotFound' });
      return response.end();
    }
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range?.[2] ? Math.min(Number(range[2]), file.length - 1) : file.length - 1;
    response.writeHead(range ? 206 : 200, {
      'content-type': 'application/octet-stream',
      etag: '"x"',
      ...(range ? { 'content-range': `bytes ${start}-${end}/${file.length}` } : {}),
    });
    response.end(file.subarray(start, end + 1));
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((closed) => {
        server.closeAllConnections();
        server.close(() => closed());
      }),
  };
}

function json(response: http.ServerResponse, value: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  response.writeHead(200, { 'content-type': 'application/json', ...headers });
  response.end(JSON.stringify(value));
}

describe('what a hostile Hub answers', () => {
  const tempDir = temporaryFolders();
  const files = { 'config.json': Buffer.from('{"model_type":"llava"}'), 'model.safetensors': randomBytes(200_000) };
  let hub: MiniHub | undefined;
  let root: string;
  const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
    repo: REPO,
    revision: 'main',
    endpoint: hub!.url,
    root,
    ...overrides,
  });

  beforeEach(() => {
    root = tempDir('ficoco-models-');
  });
  afterEach(async () => {
    await hub?.close();
    hub = undefined;
  });

  test('a listing that pages on through fresh links to empty pages is refused', { timeout: 30_000 }, async () => {
    hub = await startMiniHub(files, (_request, response, url) => {
      if (!url.pathname.startsWith(`/api/models/${REPO}/tree/`)) return false;
      const page = Number(url.searchParams.get('cursor') ?? 0);
      json(response, page === 0 ? tree(files) : [], {
        link: `<${hub!.url}/api/models/${REPO}/tree/${COMMIT}?recursive=true&cursor=${page + 1}>; rel="next"`,
      });
      return true;
    });
    await assert.rejects(planDownload(request()), downloadError(/sent more than 1000 listing pages/));
    const pages = hub.requests.filter((r) => r.includes('/tree/')).length;
    assert.equal(pages, 1000, `${pages} pages read`);
  });

  test('a next page off /api/ is bounded as an API answer: 32 MiB, however it is compressed', async () => {
    const page2 = zlib.gzipSync(Buffer.concat([Buffer.from('['), Buffer.alloc(32 * 2 ** 20, 0x20), Buffer.from(']')]));
    hub = await startMiniHub(files, (_request, response, url) => {
      if (url.pathname.startsWith(`/api/models/${REPO}/tree/`)) {
        json(response, tree(files), {
          link: `<${hub!.url}/x/tree/page2>; rel="next"`,
        });
        return true;
      }
      if (url.pathname !== '/x/tree/page2') return false;
      response.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      response.end(page2);
      return true;
    });
    await assert.rejects(planDownload(request()), downloadError(/\/x\/tree\/page2 sent more than 33554432 bytes/));
  });

  test('a file the Hub says is in a xet store is fetched from its own URL; the xet links are never asked', async () => {
    const weights = files['model.safetensors'];
    hub = await startMiniHub(files, (request, response, url) => {
      if (!url.pathname.endsWith('/model.safetensors') || request.headers.range !== 'bytes=0-0') return false;
      response.writeHead(200, {
        'content-type': 'application/vnd.xet-fileinfo+json',
        etag: '"x"',
        'x-linked-size': String(weights.length),
        'x-xet-hash': 'a'.repeat(64),
        link: `<${hub!.url}/xet-auth>; rel="xet-auth", <${hub!.url}/v2/reconstructions/a>; rel="xet-reconstruction-info"`,
      });
      response.end('{}');
      return true;
    });
    const folder = await downloadModel(await planDownload(request()), { retries: 1, retryDelayMs: 10 });
    assert.ok(fs.readFileSync(path.join(folder, 'model.safetensors')).equals(weights));
    assert.deepEqual(
      hub.requests.filter((r) => r.startsWith('/xet-auth') || r.startsWith('/v2/')),
      [],
    );
  });

  test("the listing asks for the repository's top only: one small page, whatever lies in its folders", async () => {
    const asked: string[] = [];
    hub = await startMiniHub(files, (_request, _response, url) => {
      if (url.pathname.startsWith(`/api/models/${REPO}/tree/`)) asked.push(url.search);
      return false;
    });
    await planDownload(request());
    assert.equal(asked.length, 1);
    assert.ok(!asked[0]!.includes('recursive=true'), asked[0]);
  });

  test('a listing trickled a byte at a time is given up at the answer deadline', { timeout: 20_000 }, async () => {
    hub = await startMiniHub(files, (_request, response, url) => {
      if (!url.pathname.startsWith(`/api/models/${REPO}/tree/`)) return false;
      const listing = Buffer.from(JSON.stringify(tree(files)));
      response.writeHead(200, { 'content-type': 'application/json' });
      // Every byte well within the idle timeout; the whole listing in about 15 s.
      let sent = 0;
      const trickle = setInterval(() => {
        response.write(listing.subarray(sent, ++sent));
        if (sent === listing.length) response.end();
      }, 50);
      response.on('close', () => clearInterval(trickle));
      return true;
    });
    const started = Date.now();
    await assert.rejects(
      planDownload(request({ idleTimeoutMs: 500, answerTimeoutMs: 1_000 })),
      downloadError(
        /127\.0\.0\.1:\d+ took more than 1 s to answer \/api\/models\/.*; try again later, or another mirror/,
      ),
    );
    assert.ok(Date.now() - started < 5_000, `gave up after ${Date.now() - started} ms`);
  });

  test(
    "a file's answer without a body (204) is a dropped connection: retried, then a clear error",
    { timeout: 20_000 },
    async () => {
      hub = await startMiniHub(files, (request, response, url) => {
        if (!url.pathname.endsWith('/model.safetensors') || request.headers.range === 'bytes=0-0') return false;
        response.writeHead(204, { etag: '"x"' });
        response.end();
        return true;
      });
      const plan = await planDownload(request());
      await assert.rejects(
        downloadModel(plan, { retries: 1, retryDelayMs: 10 }),
        downloadError(/model\.safetensors of hostile\/model: .*\/model\.safetensors answered 204 without a body/),
      );
      const fileGets = hub.requests.filter((r) => r.endsWith('/model.safetensors'));
      assert.equal(fileGets.length, 2, 'one try and one retry');
      assert.deepEqual(
        fs.readdirSync(path.join(root, '.partial')).filter((name) => name.endsWith('.lock')),
        [],
        'the lock is released',
      );
    },
  );

  test('a JSON file cut off, from a server that ignores Range, resumes with the bytes it lacks', async () => {
    const tokenizer = Buffer.from(JSON.stringify({ vocab: randomBytes(150_000).toString('hex') }));
    const jsonFiles = { 'tokenizer.json': tokenizer, 'model.safetensors': files['model.safetensors'] };
    let cut = false;
    hub = await startMiniHub(jsonFiles, (request, response, url) => {
      if (!url.pathname.endsWith('/tokenizer.json')) return false;
      const headers = { 'content-type': 'application/json', etag: '"x"' };
      if (request.headers.range === 'bytes=0-0') {
        response.writeHead(206, { ...headers, 'content-range': `bytes 0-0/${tokenizer.length}` });
        response.end(tokenizer.subarray(0, 1));
        return true;
      }
      // Every answer is the whole file, as JSON; the first is cut off a third of the way in.
      response.writeHead(200, { ...headers, 'content-length': tokenizer.length });
      if (cut) response.end(tokenizer);
      else {
        cut = true;
        response.write(tokenizer.subarray(0, tokenizer.length / 3));
        setTimeout(() => response.destroy(), 100);
      }
      return true;
    });
    const folder = await downloadModel(await planDownload(request()), { retryDelayMs: 10 });
    assert.ok(fs.readFileSync(path.join(folder, 'tokenizer.json')).equals(tokenizer));
    assert.ok(
      hub.requests.some((r) => /\/tokenizer\.json bytes=[1-9]\d*-/.test(r)),
      `it resumed: ${hub.requests.join('; ')}`,
    );
  });
});
