import AdmZip from 'adm-zip';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import {
  CUDA_PROVIDER_FILES,
  ORT_LIBRARY,
  ORT_LIBRARY_DIR_ENV,
  cudaProviderInstalled,
  cudaRuntimeEnvironment,
  cudaRuntimeFolder,
  isCudaPlatform,
  ortBinaryFolder,
} from '../../src/common/cudaRuntime';
import { EngineClient } from '../../src/client/engineClient';
import { findCudaPackage, installCudaProvider } from '../../src/hub/cudaProvider';
import { MAX_API_BYTES } from '../../src/hub/hubHttp';

const VERSION = '1.30.0';
const ID = 'microsoft.ml.onnxruntime.gpu.linux';

/** How a hostile or broken feed answers a request, in place of the feed's own answer. */
type Misbehaviour = (response: http.ServerResponse) => void;

/**
 * A NuGet v3 feed on 127.0.0.1 with one version of the GPU package: index, registration leaf, catalog entry, .nupkg;
 * `misbehave` answers the index or the .nupkg instead.
 */
async function startFeed(
  nupkg: Buffer,
  publishedHash: string,
  misbehave: { index?: Misbehaviour; nupkg?: Misbehaviour } = {},
) {
  const server = http.createServer((request, response) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (request.url === '/v3/index.json' && misbehave.index) return misbehave.index(response);
    if (request.url === `/flat/${ID}/${VERSION}/${ID}.${VERSION}.nupkg` && misbehave.nupkg)
      return misbehave.nupkg(response);
    const routes: Partial<Record<string, () => unknown>> = {
      '/v3/index.json': () => ({
        version: '3.0.0',
        resources: [
          { '@id': `${base}/flat/`, '@type': 'PackageBaseAddress/3.0.0' },
          { '@id': `${base}/registration/`, '@type': 'RegistrationsBaseUrl/3.6.0' },
        ],
      }),
      [`/registration/${ID}/${VERSION}.json`]: () => ({ catalogEntry: `${base}/catalog/${ID}.${VERSION}.json` }),
      [`/catalog/${ID}.${VERSION}.json`]: () => ({
        id: 'Microsoft.ML.OnnxRuntime.Gpu.Linux',
        version: VERSION,
        packageHash: publishedHash,
        packageHashAlgorithm: 'SHA512',
        packageSize: nupkg.length,
      }),
    };
    if (request.url === `/flat/${ID}/${VERSION}/${ID}.${VERSION}.nupkg`) {
      response.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': nupkg.length });
      return void response.end(nupkg);
    }
    const route = routes[request.url ?? ''];
    response.writeHead(route ? 200 : 404, { 'content-type': 'application/json' });
    response.end(JSON.stringify(route ? route() : { error: 'not found' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    feed: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v3/index.json`,
    close: () =>
      new Promise<void>((resolve) => {
        // A misbehaving answer may still hold its connection open.
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Sends `first`, then a space every 20 ms until the connection closes: an answer that never ends. */
function trickle(response: http.ServerResponse, first: Buffer | string): void {
  response.write(first);
  const timer = setInterval(() => response.write(' '), 20);
  response.on('close', () => clearInterval(timer));
}

/** What `run` leaves in the system's temporary folder, pointed ($TMPDIR) at a fresh one while it runs. */
async function leftInTemporaryFolder(run: () => Promise<void>): Promise<string[]> {
  const temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-tmpdir-'));
  const before = process.env.TMPDIR;
  process.env.TMPDIR = temporary;
  try {
    await run();
    return fs.readdirSync(temporary);
  } finally {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    fs.rmSync(temporary, { recursive: true, force: true });
  }
}

describe('the CUDA provider libraries from a NuGet feed on 127.0.0.1', () => {
  const libraries = Object.fromEntries(
    CUDA_PROVIDER_FILES.map((file, i) => [file, Buffer.from(`ELF stand-in for ${file} `.repeat(1000 + i))]),
  );
  let nupkg: Buffer;
  let binaries: string;
  before(() => {
    const zip = new AdmZip();
    for (const [file, bytes] of Object.entries(libraries)) zip.addFile(`runtimes/linux-x64/native/${file}`, bytes);
    zip.addFile('runtimes/linux-x64/native/libonnxruntime_providers_tensorrt.so', Buffer.from('not wanted'));
    nupkg = zip.toBuffer();
  });
  after(() => fs.rmSync(binaries, { recursive: true, force: true }));

  test('finds the package, verifies its SHA-512 and places the provider libraries beside libonnxruntime.so', async () => {
    const feed = await startFeed(nupkg, createHash('sha512').update(nupkg).digest('base64'));
    try {
      binaries = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-ort-bin-'));
      const found = await findCudaPackage(VERSION, { feed: feed.feed });
      assert.equal(found.bytes, nupkg.length);
      assert.match(found.url, new RegExp(`/flat/${ID}/${VERSION}/${ID}\\.${VERSION}\\.nupkg$`));
      assert.equal(cudaProviderInstalled(binaries), false);
      const progress: number[] = [];
      await installCudaProvider(found, binaries, { onProgress: (bytes) => progress.push(bytes) });
      assert.equal(progress.at(-1), nupkg.length);
      assert.ok(cudaProviderInstalled(binaries));
      for (const [file, bytes] of Object.entries(libraries))
        assert.ok(fs.readFileSync(path.join(binaries, file)).equals(bytes), file);
      assert.deepEqual(
        fs.readdirSync(binaries).sort(),
        [...CUDA_PROVIDER_FILES].sort(),
        "TensorRT's library and temporary files stay out",
      );
    } finally {
      await feed.close();
    }
  });

  test('a package that does not match the published SHA-512 installs nothing', async () => {
    const feed = await startFeed(nupkg, createHash('sha512').update('something else').digest('base64'));
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-ort-bin-'));
    try {
      const found = await findCudaPackage(VERSION, { feed: feed.feed });
      await assert.rejects(
        installCudaProvider(found, empty),
        (error: unknown) =>
          error instanceof FicocoError && /failed its checksum \(SHA-512 .*nothing was installed/.test(error.message),
      );
      assert.deepEqual(fs.readdirSync(empty), []);
    } finally {
      await feed.close();
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('an answer from the feed larger than 32 MiB is refused, naming the bound', async () => {
    const oversized = `{"resources":[],"padding":"${'a'.repeat(MAX_API_BYTES)}"}`;
    const feed = await startFeed(nupkg, '', {
      index: (response) => response.writeHead(200, { 'content-type': 'application/json' }).end(oversized),
    });
    try {
      await assert.rejects(
        findCudaPackage(VERSION, { feed: feed.feed }),
        (error: unknown) =>
          error instanceof FicocoError &&
          error.kind === 'download' &&
          error.message ===
            `Looking up Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 on ${feed.feed} failed: ` +
              `${new URL(feed.feed).host}/v3/index.json sent more than 33554432 bytes; try again later.`,
      );
    } finally {
      await feed.close();
    }
  });

  test("an answer from the feed that trickles past the lookup's deadline is given up", async () => {
    const feed = await startFeed(nupkg, '', {
      index: (response) => trickle(response.writeHead(200, { 'content-type': 'application/json' }), '{'),
    });
    try {
      await assert.rejects(
        findCudaPackage(VERSION, { feed: feed.feed, answerTimeoutMs: 300 }),
        (error: unknown) =>
          error instanceof FicocoError &&
          /failed: the feed took more than 0\.3 s to answer; try again later\.$/.test(error.message),
      );
    } finally {
      await feed.close();
    }
  });

  test('a lookup cancelled while the feed answers stops with a cancelled error', async () => {
    const cancel = new AbortController();
    const feed = await startFeed(nupkg, '', {
      index: (response) => {
        trickle(response.writeHead(200, { 'content-type': 'application/json' }), '{');
        cancel.abort();
      },
    });
    try {
      await assert.rejects(
        findCudaPackage(VERSION, { feed: feed.feed, signal: cancel.signal }),
        (error: unknown) =>
          error instanceof FicocoError &&
          error.kind === 'cancelled' &&
          /^Looking up Microsoft\.ML\.OnnxRuntime\.Gpu\.Linux 1\.30\.0 on .* was cancelled\.$/.test(error.message),
      );
    } finally {
      await feed.close();
    }
  });

  test('a package longer than the feed declared stops at the declared size; nothing is installed or left', async () => {
    const feed = await startFeed(nupkg, createHash('sha512').update(nupkg).digest('base64'), {
      nupkg: (response) => response.writeHead(200).end(Buffer.concat([nupkg, Buffer.alloc(2 ** 20)])),
    });
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-ort-bin-'));
    let written = 0;
    try {
      const found = await findCudaPackage(VERSION, { feed: feed.feed });
      const left = await leftInTemporaryFolder(() =>
        assert.rejects(
          installCudaProvider(found, empty, { onProgress: (bytes) => (written = bytes) }),
          (error: unknown) =>
            error instanceof FicocoError &&
            error.message.startsWith(
              `Downloading Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 (${nupkg.length} bytes, `,
            ) &&
            error.message.endsWith(
              `.nupkg sent more than ${nupkg.length} bytes; nothing was installed; try again later.`,
            ),
        ),
      );
      assert.ok(written <= nupkg.length, `${written} bytes written of ${nupkg.length} declared`);
      assert.deepEqual(left, [], 'no temporary folder left');
      assert.deepEqual(fs.readdirSync(empty), []);
    } finally {
      await feed.close();
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('a package download that receives nothing for the idle time is given up', async () => {
    const feed = await startFeed(nupkg, createHash('sha512').update(nupkg).digest('base64'), {
      nupkg: (response) => response.writeHead(200, { 'content-length': nupkg.length }).write(nupkg.subarray(0, 100)),
    });
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-ort-bin-'));
    try {
      const found = await findCudaPackage(VERSION, { feed: feed.feed });
      const left = await leftInTemporaryFolder(() =>
        assert.rejects(
          installCudaProvider(found, empty, { idleTimeoutMs: 300 }),
          (error: unknown) =>
            error instanceof FicocoError &&
            /failed: 127\.0\.0\.1:\d+ sent nothing for 0\.3 s; nothing was installed; try again later\.$/.test(
              error.message,
            ),
        ),
      );
      assert.deepEqual(left, [], 'no temporary folder left');
      assert.deepEqual(fs.readdirSync(empty), []);
    } finally {
      await feed.close();
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  test('a version the feed does not have is a clear 404', async () => {
    const feed = await startFeed(nupkg, '');
    try {
      await assert.rejects(
        findCudaPackage('9.9.9', { feed: feed.feed }),
        /HTTP 404 \(not found: this ONNX Runtime version may have no CUDA package on the feed\)/,
      );
    } finally {
      await feed.close();
    }
  });
});

describe(
  "the CUDA runtime in the extension's storage, which updates keep",
  { skip: isCudaPlatform() ? false : "ONNX Runtime's CUDA provider is for Linux x64" },
  () => {
    const ROOT = path.join(__dirname, '..', '..');
    const packaged = ortBinaryFolder(path.join(ROOT, 'node_modules', 'onnxruntime-node'));
    let storage: string;
    let client: EngineClient | undefined;
    before(() => {
      storage = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-global-storage-'));
    });
    after(() => {
      client?.dispose();
      fs.rmSync(storage, { recursive: true, force: true });
    });

    test(
      "installs a copy of ORT's library beside the providers; an engine process started with its " +
        'environment runs ORT from there',
      async () => {
        const zip = new AdmZip();
        for (const file of CUDA_PROVIDER_FILES)
          zip.addFile(`runtimes/linux-x64/native/${file}`, Buffer.from(`not a real ${file}`));
        const nupkg = zip.toBuffer();
        const feed = await startFeed(nupkg, createHash('sha512').update(nupkg).digest('base64'));
        const runtime = cudaRuntimeFolder(storage, VERSION);
        try {
          assert.deepEqual(cudaRuntimeEnvironment(runtime), {}, 'nothing until it is installed');
          await installCudaProvider(await findCudaPackage(VERSION, { feed: feed.feed }), runtime, {
            copyRuntimeFrom: packaged,
          });
        } finally {
          await feed.close();
        }
        assert.ok(
          fs.readFileSync(path.join(runtime, ORT_LIBRARY)).equals(fs.readFileSync(path.join(packaged, ORT_LIBRARY))),
        );
        assert.deepEqual(
          fs.readdirSync(packaged).filter((file) => file.includes('providers')),
          [],
          'nothing was added to the package folder',
        );
        const environment = cudaRuntimeEnvironment(runtime, {});
        assert.deepEqual(environment, { LD_LIBRARY_PATH: runtime, [ORT_LIBRARY_DIR_ENV]: runtime });

        client = new EngineClient({
          hostModule: path.join(ROOT, 'src', 'host', 'main.ts'),
          execArgv: ['--import', 'tsx'],
          environment: () => environment,
        });
        const loaded = await client.load({
          modelDir: path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama'),
          provider: 'auto',
          threads: 1,
        });
        const maps = fs.readFileSync(`/proc/${client.processId}/maps`, 'utf8');
        assert.ok(
          maps.includes(path.join(runtime, ORT_LIBRARY)),
          'the engine process mapped the storage copy of libonnxruntime',
        );
        assert.ok(!maps.includes(path.join(packaged, ORT_LIBRARY)), "and not the package's");
        // The stand-in provider libraries are no libraries: auto tried CUDA from the storage folder, then fell back.
        assert.equal(loaded.provider, 'cpu');
        assert.match(loaded.providerFallback ?? '', /cuda could not be used/);
      },
    );
  },
);
