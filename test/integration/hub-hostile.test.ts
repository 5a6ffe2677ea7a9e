/**
 * Downloads from a server that is not to be trusted, and two processes downloading the same model: a Hub on
 * 127.0.0.1 answers with paths and commits that try to escape, files without checksums, a pagination link to
 * another origin; the tests check nothing is written outside the models folder, the token stays on the Hub's
 * origin, and two concurrent downloads never produce a "verified" corrupt model.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { after, before, beforeEach, describe, test } from 'node:test';
import { FicocoError } from '../../src/common/errors';
import { downloadModel } from '../../src/hub/download';
import { ModelRequest, planDownload, verificationSummary } from '../../src/hub/downloadPlan';
import { STALE_LOCK_MS } from '../../src/common/processLock';
import { DOWNLOAD_MANIFEST, deletePartialDownload, listPartialDownloads, listStoredModels } from '../../src/hub/store';
import { FakeHub, HubTreeEntry, startFakeHub } from '../../tools/fakeHub';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const BUILTIN = path.join(ROOT, 'models', 'tiny-llava-screens');
const COMMIT = 'a'.repeat(40);
const REPO = 'ficoco/tiny-llava-screens';
const WEIGHTS = 'model.safetensors';
const TOKEN = 'hf_test_token_0123456789';
const CHILD = path.join(__dirname, '..', 'helpers', 'downloadChild.ts');
const LOCK_CHILD = path.join(__dirname, '..', 'helpers', 'lockChild.ts');

const downloadError = (pattern: RegExp) => (error: unknown) =>
  error instanceof FicocoError && error.kind === 'download' && pattern.test(error.message);

describe('downloads from a hostile Hub, and two processes downloading one model', () => {
  let hub: FakeHub;
  let root: string;
  const tempDir = temporaryFolders();
  const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
    repo: REPO,
    revision: 'main',
    endpoint: hub.url,
    root,
    ...overrides,
  });
  const lockFile = () => path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}.lock`);

  before(async () => {
    hub = await startFakeHub({ [REPO]: { folder: BUILTIN, commit: COMMIT } });
  });
  after(() => hub.close());
  beforeEach(() => {
    root = tempDir('ficoco-models-');
    hub.hostile = { extraEntries: [], withoutChecksum: new Set() };
    hub.requests.length = 0;
    hub.bytesServed = 0;
    hub.bytesPerSecond = undefined;
    hub.nextPageUrl = undefined;
    hub.requiredToken = undefined;
    hub.dropAfter.clear();
  });

  test('a listed path that leaves the folder, or that git could not hold, is refused before anything is written', async () => {
    const outside = tempDir('ficoco-outside-');
    const escape = `y/${path.relative(path.join(root, 'y'), outside).split(path.sep).join('/')}/config.json`;
    const hostilePaths = [
      escape,
      '/etc/ficoco/config.json',
      'C:/ficoco/config.json',
      'a\\..\\..\\config.json',
      'a/./config.json',
      'a//config.json',
      'evil\u0000/config.json',
      '',
      `${'a'.repeat(300)}/config.json`,
    ];
    for (const hostilePath of hostilePaths) {
      hub.hostile.extraEntries = [fileEntry(hostilePath)];
      await assert.rejects(
        planDownload(request()),
        downloadError(/the server lists the file .* refuses to download from it \(nothing was written\)/),
        JSON.stringify(hostilePath),
      );
    }
    assert.deepEqual(fs.readdirSync(outside), [], 'nothing was written outside the models folder');
    assert.deepEqual(fs.readdirSync(root), []);
  });

  test('a preset file that Windows could not write is refused; an unrelated such file in the repository is not', async () => {
    hub.hostile.extraEntries = [fileEntry('scripts/aux.py')];
    const plan = await planDownload(request());
    assert.ok(!plan.files.some((f) => f.path === 'scripts/aux.py'), 'only model files are downloaded');
    const longName = `${'n'.repeat(240)}.json`;
    const unwritable = ['con.json', 'what?.json', 'trailing.json.', longName];
    hub.hostile.extraEntries = unwritable.map(fileEntry);
    for (const file of unwritable) {
      await assert.rejects(
        planDownload(request({ files: ['config.json', WEIGHTS, file] })),
        downloadError(/Windows|too long to download: with \.incomplete after it, it is longer than 255 bytes/),
        file,
      );
    }
  });

  test("only the model files at the repository's top are picked, not copies in its folders", async () => {
    hub.hostile.extraEntries = ['checkpoint-100/model.safetensors', 'x/config.json', 'onnx/tokenizer.json'].map(
      fileEntry,
    );
    const plan = await planDownload(request());
    assert.deepEqual(
      plan.files.map((f) => f.path).filter((file) => file.includes('/')),
      [],
    );
    assert.equal(plan.files.length, 6);
  });

  test('a listed path longer or deeper than any model has is refused at once', async () => {
    hub.hostile.extraEntries = [fileEntry(`${'a/'.repeat(24_000)}config.json`)];
    const started = Date.now();
    await assert.rejects(
      planDownload(request()),
      downloadError(/… \(\d+ characters\), and it is longer than 1024 bytes/),
    );
    assert.ok(Date.now() - started < 2_000, `refused after ${Date.now() - started} ms`);
    hub.hostile.extraEntries = [fileEntry(`${'a/'.repeat(40)}config.json`)];
    await assert.rejects(planDownload(request()), downloadError(/it is more than 32 folders deep/));
  });

  test('a commit that is not 40 hex digits is refused; it never names a folder', async () => {
    hub.hostile.sha = '../../../ESCAPED';
    await assert.rejects(
      planDownload(request()),
      downloadError(/answered the commit "\.\.\/\.\.\/\.\.\/ESCAPED", not 40 hex digits/),
    );
    assert.equal(fs.existsSync(path.resolve(root, 'ficoco--tiny-llava-screens', hub.hostile.sha)), false);
    assert.deepEqual(fs.readdirSync(root), []);
  });

  test('a file listed without a checksum is refused, naming it; the consent summary says how every file is checked', async () => {
    hub.hostile.withoutChecksum.add('config.json');
    await assert.rejects(
      planDownload(request()),
      downloadError(/lists config\.json without a valid checksum .* downloads only files it can verify/),
    );
    hub.hostile.withoutChecksum.clear();
    const plan = await planDownload(request());
    assert.ok(
      plan.files.every((file) => /^[0-9a-f]{64}$/.test(file.sha256 ?? '') || /^[0-9a-f]{40}$/.test(file.gitSha1 ?? '')),
    );
    assert.equal(
      verificationSummary(plan),
      "Every file is checked against the checksum the Hub lists: 1 by SHA-256 (Git LFS), 5 by git's blob SHA-1.",
    );
  });

  test("the token goes to the Hub's origin only: never to a pagination link on another origin", async () => {
    const other = await startFakeHub({ [REPO]: { folder: BUILTIN, commit: COMMIT } });
    try {
      hub.nextPageUrl = `${other.url}/api/models/${REPO}/tree/${COMMIT}?recursive=true&cursor=2`;
      const plan = await planDownload(request({ accessToken: TOKEN }));
      assert.ok(
        plan.files.some((file) => file.path === WEIGHTS),
        'the second page was read',
      );
      assert.ok(
        other.requests.some((r) => r.path.endsWith('/tree/' + COMMIT)),
        'the other origin served the second page',
      );
      assert.deepEqual(
        other.requests.filter((r) => r.authorization !== undefined),
        [],
        'the other origin never saw the token',
      );
      assert.ok(
        hub.requests.every((r) => r.authorization === `Bearer ${TOKEN}`),
        'the Hub itself got it on every request',
      );
    } finally {
      await other.close();
    }
  });

  test('a gated repository: without a token the error says how to set one; with it the download completes', async () => {
    hub.requiredToken = TOKEN;
    await assert.rejects(
      planDownload(request()),
      downloadError(/access denied \(401\).*Set Hugging Face Token.*\$HF_TOKEN/),
    );
    const folder = await downloadModel(await planDownload(request({ accessToken: TOKEN })));
    assert.ok(fs.readFileSync(path.join(folder, WEIGHTS)).equals(fs.readFileSync(path.join(BUILTIN, WEIGHTS))));
  });

  test("over plain http to another address than this machine's loopback, the token is withheld", async (t) => {
    const address = Object.values(os.networkInterfaces())
      .flat()
      .find((a) => a?.family === 'IPv4' && !a.internal)?.address;
    if (!address) return t.skip('needs a network interface with a non-loopback IPv4 address');
    const remote = await startFakeHub({ [REPO]: { folder: BUILTIN, commit: COMMIT } }, address);
    try {
      const plan = await planDownload(request({ endpoint: remote.url, accessToken: TOKEN }));
      assert.equal(plan.tokenWithheld, true);
      assert.ok(remote.requests.length > 0);
      assert.deepEqual(
        remote.requests.filter((r) => r.authorization !== undefined),
        [],
      );
    } finally {
      await remote.close();
    }
  });

  test('a second process downloading the same model is told another is running; the first completes, verified', async () => {
    hub.bytesPerSecond = 100e3;
    const first = runChild(hub.url, root, 'fail');
    await waitFor(() => fs.existsSync(lockFile()));
    const second = await runChild(hub.url, root, 'fail').done;
    hub.bytesPerSecond = undefined;
    assert.equal(second.at(-1)?.kind, 'download', JSON.stringify(second));
    assert.match(
      String(second.at(-1)?.error),
      /is already downloading in another window or process \(process \d+, since /,
    );
    const firstEvents = await first.done;
    const folder = String(firstEvents.at(-1)?.folder);
    assert.equal(folder, path.join(root, 'ficoco--tiny-llava-screens', COMMIT), JSON.stringify(firstEvents));
    assertSameAsBuiltin(folder);
    assert.equal(fs.existsSync(lockFile()), false, 'the lock is released');
  });

  test('a second process told to wait gets the finished folder without downloading it again', async () => {
    hub.bytesPerSecond = 100e3;
    const first = runChild(hub.url, root, 'wait');
    await waitFor(() => fs.existsSync(lockFile()));
    const waiting = runChild(hub.url, root, 'wait');
    await waitFor(() => waiting.events().length > 0);
    hub.bytesPerSecond = undefined;
    const second = await waiting.done;
    const firstEvents = await first.done;
    assert.deepEqual(second[0], { waiting: true });
    assert.equal(second.at(-1)?.folder, firstEvents.at(-1)?.folder);
    const plan = await planDownload(request());
    // One byte per file besides the content: the library's `Range: bytes=0-0` probe before each file.
    assert.ok(
      hub.bytesServed <= plan.totalBytes + plan.files.length,
      `${hub.bytesServed} bytes served for a ${plan.totalBytes}-byte model`,
    );
    assertSameAsBuiltin(String(second.at(-1)?.folder));
  });

  test('a lock left by a process that died, or untouched for a minute, is taken over; a live one is not', async () => {
    fs.mkdirSync(path.dirname(lockFile()), { recursive: true });
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    const lock = (pid: number) =>
      JSON.stringify({ pid, host: os.hostname(), since: new Date().toISOString(), token: 'someone-else' });

    fs.writeFileSync(lockFile(), lock(process.pid));
    await assert.rejects(
      downloadModel(await planDownload(request())),
      downloadError(/already downloading in another window or process \(process \d+/),
    );

    const old = new Date(Date.now() - STALE_LOCK_MS - 5_000);
    fs.utimesSync(lockFile(), old, old);
    assertSameAsBuiltin(await downloadModel(await planDownload(request())));
    assert.equal(fs.existsSync(lockFile()), false);

    root = tempDir('ficoco-models-');
    fs.mkdirSync(path.dirname(lockFile()), { recursive: true });
    fs.writeFileSync(lockFile(), lock(dead.pid!));
    assertSameAsBuiltin(await downloadModel(await planDownload(request())));
  });

  test(
    'a lock whose write fails, and whose close then fails too, says why the write failed and is not left behind',
    { skip: process.platform === 'win32' ? 'needs bash and ulimit' : false },
    async () => {
      fs.mkdirSync(path.dirname(lockFile()), { recursive: true });
      // No file may grow (ulimit -f 0): the lock's write fails with EFBIG, as on a full disk.
      const { stdout } = await promisify(execFile)('bash', [
        '-c',
        'ulimit -f 0 && exec "$@"',
        'bash',
        process.execPath,
        '--import',
        'tsx',
        LOCK_CHILD,
        lockFile(),
      ]);
      assert.match(String(JSON.parse(stdout).error), /\.lock cannot be written: it would be larger than/);
      assert.equal(fs.existsSync(lockFile()), false, 'no empty lock left to stop the next download for a minute');
    },
  );

  test('a lock written whole whose close then fails says why and is not left behind', async () => {
    fs.mkdirSync(path.dirname(lockFile()), { recursive: true });
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', LOCK_CHILD, lockFile()]);
    assert.match(String(JSON.parse(stdout).error), /EIO: i\/o error, close/);
    assert.equal(fs.existsSync(lockFile()), false, 'no lock left to stop the next download for a minute');
  });

  test('a download whose lock another process takes over stops writing at once, and says why', async () => {
    const plan = await planDownload(request());
    hub.bytesPerSecond = 256 * 1024;
    const taken = downloadModel(plan, {
      onProgress: ({ file, bytesDone }) => {
        // Mid-weights, another process judges this one stale and takes the lock.
        if (file === WEIGHTS && bytesDone > 0 && fs.existsSync(lockFile()))
          fs.writeFileSync(lockFile(), JSON.stringify({ pid: 1, host: 'elsewhere', since: '', token: 'another' }));
      },
    });
    const started = Date.now();
    await assert.rejects(taken, downloadError(/Another process took over the download/));
    assert.ok(Date.now() - started < 15_000, `stopped after ${Date.now() - started} ms`);
    const incomplete = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`, `${WEIGHTS}.incomplete`);
    const size = fs.statSync(incomplete).size;
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(fs.statSync(incomplete).size, size, 'nothing more was written after it stopped');
  });

  test('a server that ignores Range still resumes right: the bytes the file lacks, skipped from the whole file', async () => {
    const plan = await planDownload(request());
    hub.dropAfter.set(WEIGHTS, 2 ** 20);
    hub.ignoreRange = true;
    try {
      const folder = await downloadModel(plan, { retryDelayMs: 10 });
      assert.ok(
        hub.rangeRequests.some((range) => range.startsWith(`${WEIGHTS} bytes=${2 ** 20}-`)),
        'it resumed',
      );
      assertSameAsBuiltin(folder);
    } finally {
      hub.ignoreRange = undefined;
    }
  });

  test('a listing whose next page is one already read is refused, not followed forever', async () => {
    hub.nextPageUrl = `${hub.url}/api/models/${REPO}/tree/${COMMIT}?loop=1`;
    await assert.rejects(planDownload(request()), downloadError(/sent \/api\/models\/.* again as its next page/));
  });

  test('a server that stops sending is given up after the idle timeout, retried, then one clear error', async () => {
    const plan = await planDownload(request({ idleTimeoutMs: 300 }));
    // One 64 KiB chunk, then a pause of about 18 hours.
    hub.bytesPerSecond = 1;
    const started = Date.now();
    await assert.rejects(
      downloadModel(plan, { retries: 1, retryDelayMs: 10 }),
      downloadError(/sent nothing for 0\.3 s/),
    );
    assert.ok(Date.now() - started < 20_000, `gave up after ${Date.now() - started} ms`);
  });

  test(
    'an error whose body never ends is given up after the idle timeout, not waited on forever',
    { timeout: 20_000 },
    async () => {
      const connections = new Set<net.Socket>();
      const stalling = http.createServer((_request, response) => {
        response.writeHead(500, { 'content-type': 'application/json' });
        response.write('{"error":');
      });
      stalling.on('connection', (socket) => connections.add(socket));
      await new Promise<void>((listening) => stalling.listen(0, '127.0.0.1', listening));
      try {
        const endpoint = `http://127.0.0.1:${(stalling.address() as net.AddressInfo).port}`;
        await assert.rejects(
          planDownload(request({ endpoint, idleTimeoutMs: 300 })),
          downloadError(/sent nothing for 0\.3 s/),
        );
      } finally {
        for (const socket of connections) socket.destroy();
        stalling.close();
      }
    },
  );

  test('asking a server that answers nothing stops at once when cancelled', { timeout: 20_000 }, async () => {
    const connections = new Set<net.Socket>();
    const silent = http.createServer(() => undefined);
    silent.on('connection', (socket) => connections.add(socket));
    await new Promise<void>((listening) => silent.listen(0, '127.0.0.1', listening));
    const endpoint = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const controller = new AbortController();
      const started = Date.now();
      setTimeout(() => controller.abort(), 200);
      await assert.rejects(
        planDownload(request({ endpoint }), { signal: controller.signal }),
        (error: unknown) =>
          error instanceof FicocoError &&
          error.kind === 'cancelled' &&
          error.message === `Asking ${endpoint} about ${REPO} was cancelled.`,
      );
      assert.ok(Date.now() - started < 5_000, `stopped after ${Date.now() - started} ms, not at the idle timeout`);
      assert.ok(connections.size > 0, 'the question reached the server');
    } finally {
      for (const socket of connections) socket.destroy();
      silent.close();
    }
  });

  test('listed paths one folder cannot hold apart (a file and a folder of one name) are refused', async () => {
    hub.hostile.extraEntries = [fileEntry(`${WEIGHTS}/config.json`)];
    await assert.rejects(
      planDownload(request({ files: ['config.json', WEIGHTS, `${WEIGHTS}/config.json`] })),
      downloadError(
        /lists both model\.safetensors and model\.safetensors\/config\.json, which one folder cannot hold apart/,
      ),
    );
  });

  test('a download manifest this version did not write is passed over, and that download can be made again', async () => {
    const plan = await planDownload(request());
    await downloadModel(plan);
    const damaged = path.join(root, 'ficoco--other', 'a'.repeat(40));
    fs.mkdirSync(damaged, { recursive: true });
    fs.writeFileSync(path.join(damaged, DOWNLOAD_MANIFEST), JSON.stringify({ completedAt: 5 }));
    assert.deepEqual(
      listStoredModels(root).map(({ folder }) => folder),
      [plan.folder],
    );
    // The download's own manifest damaged: it is no longer a download, and asking again makes it one.
    fs.writeFileSync(path.join(plan.folder, DOWNLOAD_MANIFEST), '{"completedAt": 5}');
    const again = await planDownload(request());
    assert.equal(again.existing, undefined);
    await downloadModel(again);
    assert.deepEqual(
      listStoredModels(root).map(({ folder }) => folder),
      [plan.folder],
    );
  });

  test('a file that changed on disk after its check is caught before the manifest is written', async () => {
    const plan = await planDownload(request());
    const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    let tampered = false;
    const onProgress = ({ file }: { file: string }) => {
      // Another writer changes an already verified file while the weights arrive.
      if (file !== WEIGHTS || tampered || !fs.existsSync(path.join(partial, 'config.json'))) return;
      const config = fs.readFileSync(path.join(partial, 'config.json'));
      config[config.length - 2] ^= 0x01;
      fs.writeFileSync(path.join(partial, 'config.json'), config);
      tampered = true;
    };
    await assert.rejects(
      downloadModel(plan, { onProgress }),
      downloadError(/config\.json of ficoco\/tiny-llava-screens changed on disk after it was verified/),
    );
    assert.ok(tampered, 'config.json came before the weights');
    assert.equal(fs.existsSync(path.join(plan.folder, DOWNLOAD_MANIFEST)), false);
    assert.deepEqual(listStoredModels(root), []);
  });

  test('finished files damaged in an unfinished download are all fetched again, not one per run', async () => {
    const plan = await planDownload(request());
    const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    fs.mkdirSync(partial, { recursive: true });
    // Emptied, as a crash before their bytes reached the disk leaves them.
    for (const file of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
      fs.writeFileSync(path.join(partial, file), '');
    assertSameAsBuiltin(await downloadModel(plan));

    // At their sizes but changed, they are caught by the final check: all of them, and the next run mends them all.
    root = tempDir('ficoco-models-');
    const again = await planDownload(request());
    const partialAgain = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    fs.mkdirSync(partialAgain, { recursive: true });
    for (const file of ['config.json', 'tokenizer.json']) {
      const bytes = fs.readFileSync(path.join(BUILTIN, file));
      bytes[0] ^= 0x01;
      fs.writeFileSync(path.join(partialAgain, file), bytes);
    }
    await assert.rejects(
      downloadModel(again),
      downloadError(/^config\.json, tokenizer\.json of .* changed on disk after they were verified; they were deleted/),
    );
    assertSameAsBuiltin(await downloadModel(again));
  });

  test('links in the unfinished download are never written through: every write stays in the models folder', async () => {
    const outside = tempDir('ficoco-outside-');
    const victim = path.join(outside, 'notes.txt');
    fs.writeFileSync(victim, 'not part of any model\n');
    const copy = path.join(outside, 'tokenizer.json');
    fs.copyFileSync(path.join(BUILTIN, 'tokenizer.json'), copy);
    const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    fs.mkdirSync(partial, { recursive: true });
    // A part to resume that leads outside, and a finished file that is a link to a copy (right size, right bytes).
    fs.symlinkSync(victim, path.join(partial, 'config.json.incomplete'));
    fs.symlinkSync(copy, path.join(partial, 'tokenizer.json'));
    const folder = await downloadModel(await planDownload(request()));
    assertSameAsBuiltin(folder);
    assert.equal(fs.readFileSync(victim, 'utf8'), 'not part of any model\n');
    for (const file of ['config.json', 'tokenizer.json'])
      assert.ok(fs.lstatSync(path.join(folder, file)).isFile(), file);

    // The unfinished downloads' folder itself a link elsewhere: refused before anything is written.
    root = tempDir('ficoco-models-');
    fs.symlinkSync(outside, path.join(root, '.partial'));
    await assert.rejects(
      downloadModel(await planDownload(request())),
      downloadError(/\.partial is a link to .*: downloads are written only inside .* itself\. Remove the link/),
    );
    assert.deepEqual(fs.readdirSync(outside).sort(), ['notes.txt', 'tokenizer.json']);
  });

  test('unfinished downloads are listed while another process renames their files', async () => {
    const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    fs.mkdirSync(partial, { recursive: true });
    const part = path.join(partial, `${WEIGHTS}.incomplete`);
    fs.writeFileSync(part, 'part');
    // A file finished and renamed, again and again, as a download running there does.
    const renaming = spawn(process.execPath, [
      '-e',
      `const fs = require('fs'); const end = Date.now() + 1500;
       while (Date.now() < end) { fs.renameSync(process.argv[1], process.argv[2]); fs.renameSync(process.argv[2], process.argv[1]); }`,
      part,
      path.join(partial, WEIGHTS),
    ]);
    const exited = new Promise((resolve) => renaming.on('exit', resolve));
    let running = true;
    void exited.then(() => (running = false));
    let listings = 0;
    while (running) {
      assert.ok(listPartialDownloads(root)[0].bytes <= 4);
      listings++;
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.ok(listings > 100, `${listings} listings`);
  });

  test('unfinished downloads are listed and can be removed, unless one is running', async () => {
    const plan = await planDownload(request());
    const controller = new AbortController();
    await assert.rejects(
      downloadModel(plan, {
        signal: controller.signal,
        onProgress: ({ file }) => file === WEIGHTS && controller.abort(),
      }),
      (error: unknown) => error instanceof FicocoError && error.kind === 'cancelled',
    );
    const [partial] = listPartialDownloads(root);
    assert.equal(partial.inUse, false);
    assert.ok(partial.bytes > 0);
    fs.writeFileSync(
      `${partial.folder}.lock`,
      JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token: 'x' }),
    );
    assert.equal(listPartialDownloads(root)[0].inUse, true);
    assert.throws(() => deletePartialDownload(root, partial.folder), /is downloading in another window or process now/);
    fs.rmSync(`${partial.folder}.lock`);
    assert.throws(() => deletePartialDownload(root, BUILTIN), /is not an unfinished download/);
    deletePartialDownload(root, partial.folder);
    assert.deepEqual(listPartialDownloads(root), []);
    assert.ok(fs.existsSync(path.join(BUILTIN, WEIGHTS)));
  });
});

function fileEntry(file: string): HubTreeEntry {
  return { type: 'file', oid: 'b'.repeat(40), size: 2, path: file };
}

function assertSameAsBuiltin(folder: string): void {
  const manifest = JSON.parse(fs.readFileSync(path.join(folder, DOWNLOAD_MANIFEST), 'utf8')) as {
    files: { path: string }[];
  };
  for (const { path: file } of manifest.files)
    assert.ok(fs.readFileSync(path.join(folder, file)).equals(fs.readFileSync(path.join(BUILTIN, file))), file);
}

type ChildEvent = Record<string, unknown>;

/** A download in its own process: the JSON events it printed so far, and all of them once it exits. */
function runChild(
  endpoint: string,
  root: string,
  whenBusy: 'wait' | 'fail',
): { events: () => ChildEvent[]; done: Promise<ChildEvent[]> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, endpoint, root, whenBusy], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const events = () =>
    output
      .split('\n')
      .filter((line) => line.endsWith('}'))
      .map((line) => JSON.parse(line) as ChildEvent);
  return { events, done: new Promise((resolve) => child.on('exit', () => resolve(events()))) };
}

async function waitFor(condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
