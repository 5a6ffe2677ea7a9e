import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { LlavaEngine } from '../../src/engine/engine';
import { FicocoError } from '../../src/common/errors';
import { checkDiskRoom } from '../../src/hub/diskRoom';
import { DownloadProgress, downloadModel } from '../../src/hub/download';
import { DownloadPlan, ModelRequest, planDownload } from '../../src/hub/downloadPlan';
import { DownloadSummary } from '../../src/hub/downloadSummary';
import {
  DOWNLOAD_MANIFEST,
  deleteStoredModel,
  listPartialDownloads,
  listStoredModels,
  missingModelFiles,
} from '../../src/hub/store';
import { FakeHub, startFakeHub } from '../../tools/fakeHub';
import { temporaryFolders } from '../helpers/tempFolders';

const ROOT = path.join(__dirname, '..', '..');
const BUILTIN = path.join(ROOT, 'models', 'tiny-llava-screens');
const COMMIT = 'a'.repeat(40);
const REPO = 'ficoco/tiny-llava-screens';
const WEIGHTS = 'model.safetensors';
const TEMPLATE = 'chat template (chat_template in tokenizer_config.json, chat_template.json or chat_template.jinja)';
const NEEDED = [
  'config.json',
  'generation_config.json',
  'model.safetensors',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
];

describe('model downloads from a Hub on 127.0.0.1', () => {
  let hub: FakeHub;
  let root: string;
  let cache: string;
  const savedCache = process.env.HF_HUB_CACHE;
  const tempDir = temporaryFolders();
  const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
    repo: REPO,
    revision: 'main',
    endpoint: hub.url,
    root,
    ...overrides,
  });

  before(async () => {
    hub = await startFakeHub({ [REPO]: { folder: BUILTIN, commit: COMMIT } });
    cache = tempDir('ficoco-hf-cache-');
    process.env.HF_HUB_CACHE = cache;
  });
  after(async () => {
    await hub.close();
    if (savedCache === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = savedCache;
  });
  beforeEach(() => {
    root = tempDir('ficoco-models-');
    hub.bytesServed = 0;
    hub.rangeRequests.length = 0;
  });

  test('plans from the Hub API: the revision resolves to its commit, only the model files, with checksums', async () => {
    const plan = await planDownload(request());
    assert.equal(plan.commit, COMMIT);
    assert.deepEqual(plan.files.map((f) => f.path).sort(), NEEDED, 'README.md and train_log.json are not model files');
    assert.equal(
      plan.totalBytes,
      NEEDED.reduce((sum, f) => sum + fs.statSync(path.join(BUILTIN, f)).size, 0),
    );
    assert.match(plan.files.find((f) => f.path === WEIGHTS)!.sha256!, /^[0-9a-f]{64}$/);
    assert.match(plan.files.find((f) => f.path === 'config.json')!.gitSha1!, /^[0-9a-f]{40}$/);
    assert.equal(plan.existing, undefined);
  });

  test('downloads the built-in model into <root>/<owner>--<name>/<commit>, verified, and the engine loads it', async () => {
    const progress: DownloadProgress[] = [];
    const folder = await downloadModel(await planDownload(request()), { onProgress: (p) => progress.push(p) });
    assert.equal(folder, path.join(root, 'ficoco--tiny-llava-screens', COMMIT));
    for (const file of NEEDED)
      assert.ok(fs.readFileSync(path.join(folder, file)).equals(fs.readFileSync(path.join(BUILTIN, file))), file);
    assert.ok(fs.existsSync(path.join(folder, DOWNLOAD_MANIFEST)));
    assert.deepEqual(fs.readdirSync(path.join(root, '.partial')), [], 'nothing left half-done');
    const done = progress.map((p) => p.bytesDone);
    assert.deepEqual(
      done,
      [...done].sort((a, b) => a - b),
      'progress only grows',
    );
    assert.equal(done.at(-1), progress[0].bytesTotal);
    const engine = await LlavaEngine.load(folder, { provider: 'cpu', threads: 1 });
    await engine.dispose();
    assert.deepEqual(
      listStoredModels(root).map((m) => [m.repo, m.commit, m.folder]),
      [[REPO, COMMIT, folder]],
    );
  });

  test('a connection dropped mid-file resumes with a Range request from where it stopped', async () => {
    const size = fs.statSync(path.join(BUILTIN, WEIGHTS)).size;
    const dropAt = Math.floor(size / 3);
    hub.dropAfter.set(WEIGHTS, dropAt);
    const folder = await downloadModel(await planDownload(request()), { retryDelayMs: 10 });
    assert.ok(fs.readFileSync(path.join(folder, WEIGHTS)).equals(fs.readFileSync(path.join(BUILTIN, WEIGHTS))));
    // The resume starts at what reached the disk: at most what the server sent before the drop.
    const resumes = hub.rangeRequests
      .map((r) => new RegExp(`^${WEIGHTS} bytes=(\\d+)-${size - 1}$`).exec(r))
      .filter((m) => m !== null);
    assert.equal(resumes.length, 1, hub.rangeRequests.join('; '));
    const from = Number(resumes[0]![1]);
    assert.ok(from > 0 && from <= dropAt, `resumed from ${from}, the drop was at ${dropAt}`);
  });

  test('progress never steps back when a reset connection lost bytes the download had counted', async () => {
    const size = fs.statSync(path.join(BUILTIN, WEIGHTS)).size;
    hub.dropAfter.set(WEIGHTS, Math.floor(size / 3));
    hub.resetOnDrop = true;
    const progress: DownloadProgress[] = [];
    try {
      const plan = await planDownload(request());
      await downloadModel(plan, { retryDelayMs: 10, onProgress: (p) => progress.push(p) });
      const done = progress.map((p) => p.bytesDone);
      const backwards = done.flatMap((bytes, i) => (bytes < done[i - 1] ? [`${done[i - 1]} → ${bytes}`] : []));
      assert.deepEqual(backwards, [], 'bytes done only grow');
      assert.equal(done.at(-1), plan.totalBytes);
      const { bytesFetched, bytesOnDiskBefore } = progress.at(-1)!;
      assert.ok(
        bytesFetched >= plan.totalBytes,
        `a rate is of every byte that came, the lost ones' too: ${bytesFetched}`,
      );
      assert.equal(bytesOnDiskBefore, 0, 'nothing was on disk, however many bytes came twice');
    } finally {
      hub.resetOnDrop = false;
    }
  });

  test('an empty file the repository lists is written and verified without asking the server for its bytes', async () => {
    const folder = tempDir('ficoco-empty-file-repo-');
    for (const file of NEEDED) fs.copyFileSync(path.join(BUILTIN, file), path.join(folder, file));
    fs.writeFileSync(path.join(folder, 'added_tokens.json'), '');
    const emptyHub = await startFakeHub({ [REPO]: { folder, commit: COMMIT } });
    try {
      const plan = await planDownload(request({ endpoint: emptyHub.url }));
      assert.equal(plan.files.find((f) => f.path === 'added_tokens.json')?.size, 0);
      const downloaded = await downloadModel(plan);
      assert.equal(fs.readFileSync(path.join(downloaded, 'added_tokens.json')).length, 0);
      assert.ok(!emptyHub.requests.some((r) => r.path.endsWith('/added_tokens.json')), 'nothing to fetch for no bytes');
      assert.equal((await planDownload(request({ endpoint: emptyHub.url }))).existing, 'downloaded');
    } finally {
      await emptyHub.close();
    }
  });

  test('a cancelled download never looks complete, and the next one fetches only the rest', async () => {
    const size = fs.statSync(path.join(BUILTIN, WEIGHTS)).size;
    const plan = await planDownload(request());
    const controller = new AbortController();
    const cut = downloadModel(plan, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.file === WEIGHTS && p.bytesDone - (plan.totalBytes - size) > size / 2) controller.abort();
      },
    });
    await assert.rejects(
      cut,
      (error: unknown) =>
        error instanceof FicocoError && error.kind === 'cancelled' && /resumes next time/.test(error.message),
    );
    assert.equal(fs.existsSync(plan.folder), false, 'no model folder after a cancel');
    assert.deepEqual(listStoredModels(root), []);
    const servedBefore = hub.bytesServed;
    const again = await planDownload(request());
    assert.equal(again.existing, undefined);
    const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    const onDisk = again.files.reduce((sum, file) => sum + bytesOnDisk(partial, file.path), 0);
    let last: DownloadProgress | undefined;
    await downloadModel(again, { onProgress: (p) => (last = p) });
    const servedForResume = hub.bytesServed - servedBefore;
    assert.ok(
      servedForResume < plan.totalBytes - size / 3,
      `the resume fetched ${servedForResume} of ${plan.totalBytes} bytes`,
    );
    assert.ok(onDisk > 0);
    assert.equal(last!.bytesDone, plan.totalBytes);
    assert.equal(last!.bytesFetched, plan.totalBytes - onDisk, 'what a rate is of: the bytes this run fetched');
    assert.ok(fs.readFileSync(path.join(plan.folder, WEIGHTS)).equals(fs.readFileSync(path.join(BUILTIN, WEIGHTS))));
  });

  /** Cancels `plan`'s download half-way through the weights: the files before them finished, those after not begun. */
  async function pausedInWeights(plan: DownloadPlan): Promise<void> {
    const size = fs.statSync(path.join(BUILTIN, WEIGHTS)).size;
    const controller = new AbortController();
    await assert.rejects(
      downloadModel(plan, {
        signal: controller.signal,
        onProgress: (p) =>
          p.file === WEIGHTS && p.bytesDone - (plan.totalBytes - size) > size / 2 && controller.abort(),
      }),
      (error: unknown) => error instanceof FicocoError && error.kind === 'cancelled',
    );
  }

  // The paused download was asked for the branch (stale once it moves), or for its commit (kept: it is that commit's);
  // a stale one's old config.json may have another link (a damaged copy it was seeded from), which keeps its bytes.
  for (const [asked, stays, linked] of [
    ['main', false, false],
    ['main', false, true],
    [COMMIT, true, false],
  ] as const)
    test(`a paused download (asked at ${asked.slice(0, 7)}${linked ? ', a file linked elsewhere' : ''}) gives a moved branch's commit its unchanged files`, async () => {
      await pausedInWeights(await planDownload(request({ revision: asked })));
      const paused = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
      if (linked) fs.linkSync(path.join(paused, 'config.json'), path.join(tempDir('ficoco-link-'), 'config.json'));
      // main moves on: config.json changes, the rest stays as it was.
      const moved = tempDir('ficoco-moved-branch-');
      for (const file of NEEDED) fs.copyFileSync(path.join(BUILTIN, file), path.join(moved, file));
      fs.appendFileSync(path.join(moved, 'config.json'), '\n');
      const movedHub = await startFakeHub({ [REPO]: { folder: moved, commit: 'b'.repeat(40) } });
      try {
        const after = await planDownload(request({ endpoint: movedHub.url }));
        assert.equal(after.commit, 'b'.repeat(40));
        // The paused download's unchanged files move over, so the disk needs room for the changed one and the rest…
        const given = after.files
          .filter((file) => file.path !== 'config.json')
          .reduce((sum, file) => sum + bytesOnDisk(paused, file.path), 0);
        // …less, where it is stale and removed, what it does not give (its old config.json, unless linked elsewhere).
        const [{ bytes: pausedBytes }] = listPartialDownloads(root);
        const keptByLink = linked ? bytesOnDisk(paused, 'config.json') : 0;
        const staleFreed = stays ? 0 : pausedBytes - given - keptByLink;
        assert.ok(stays || linked || staleFreed > bytesOnDisk(paused, 'config.json'), `${staleFreed} bytes freed`);
        // Its own first bytes of the weights, fewer than the paused download's, are deleted when those move in.
        const mine = path.join(root, '.partial', `ficoco--tiny-llava-screens--${after.commit}`);
        const mineBytes = 1000;
        fs.mkdirSync(mine);
        fs.writeFileSync(
          path.join(mine, `${WEIGHTS}.incomplete`),
          fs.readFileSync(path.join(BUILTIN, WEIGHTS)).subarray(0, mineBytes),
        );
        const freed = staleFreed + mineBytes;
        const room = after.totalBytes - given - freed;
        assert.doesNotThrow(() => checkDiskRoom(after, room));
        assert.throws(() => checkDiskRoom(after, room - 1), /needs .* more on disk/);
        const folder = await downloadModel(after);
        for (const file of NEEDED)
          assert.ok(fs.readFileSync(path.join(folder, file)).equals(fs.readFileSync(path.join(moved, file))), file);
        const fetched = movedHub.requests
          .filter((r) => r.path.includes('/resolve/'))
          .map((r) => r.path.split('/').pop());
        assert.ok(!fetched.includes('generation_config.json'), `unchanged and finished: not fetched (${fetched})`);
        assert.ok(fetched.includes('config.json'), 'changed: fetched');
        assert.match(movedHub.rangeRequests.join('; '), new RegExp(`${WEIGHTS} bytes=[1-9]\\d*-`), 'weights resumed');
        assert.deepEqual(
          listPartialDownloads(root).map((p) => path.basename(p.folder)),
          stays ? [`ficoco--tiny-llava-screens--${COMMIT}`] : [],
        );
      } finally {
        await movedHub.close();
      }
    });

  test("a download paused by 0.1.0 (no record) gives a moved branch's commit the finished files its hash matches", async () => {
    await pausedInWeights(await planDownload(request()));
    const paused = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
    fs.rmSync(path.join(paused, 'ficoco-partial.json'));
    // main moves on: config.json changes at the same size (so only its hash tells), the rest stays as it was.
    const moved = tempDir('ficoco-moved-branch-');
    for (const file of NEEDED) fs.copyFileSync(path.join(BUILTIN, file), path.join(moved, file));
    const config = fs.readFileSync(path.join(BUILTIN, 'config.json'), 'utf8');
    fs.writeFileSync(path.join(moved, 'config.json'), config.replace('"float16"', '"float32"'));
    assert.equal(fs.statSync(path.join(moved, 'config.json')).size, Buffer.byteLength(config));
    const movedHub = await startFakeHub({ [REPO]: { folder: moved, commit: 'b'.repeat(40) } });
    try {
      const folder = await downloadModel(await planDownload(request({ endpoint: movedHub.url })));
      for (const file of NEEDED)
        assert.ok(fs.readFileSync(path.join(folder, file)).equals(fs.readFileSync(path.join(moved, file))), file);
      const fetched = movedHub.requests.filter((r) => r.path.includes('/resolve/')).map((r) => r.path.split('/').pop());
      assert.ok(!fetched.includes('generation_config.json'), `unchanged and finished: not fetched (${fetched})`);
      assert.ok(fetched.includes('config.json'), 'changed at the same size: fetched');
      // What it was asked for is unknown, so it stays (`ficoco models clean` removes it), less the file it gave.
      assert.deepEqual(
        listPartialDownloads(root).map((p) => p.folder),
        [paused],
      );
      assert.equal(fs.existsSync(path.join(paused, 'generation_config.json')), false);
      assert.ok(fs.existsSync(path.join(paused, 'config.json')));
    } finally {
      await movedHub.close();
    }
  });

  test('a download stopped half-way needs room for the rest only', async () => {
    const plan = await planDownload(request());
    assert.doesNotThrow(() => checkDiskRoom(plan, plan.totalBytes));
    assert.throws(
      () => checkDiskRoom(plan, plan.totalBytes - 1),
      (error: unknown) =>
        error instanceof FicocoError &&
        error.kind === 'download' &&
        /^ficoco\/tiny-llava-screens needs 4\.\d{6} MB more on disk, but .* has 4\.\d{6} MB free\. Free some/.test(
          error.message,
        ),
    );
    const controller = new AbortController();
    await assert.rejects(
      downloadModel(plan, {
        signal: controller.signal,
        onProgress: (p) => p.bytesDone > plan.totalBytes / 2 && controller.abort(),
      }),
      (error: unknown) => error instanceof FicocoError && error.kind === 'cancelled',
    );
    const [{ folder: partial }] = listPartialDownloads(root);
    const downloaded = plan.files.reduce((sum, file) => sum + bytesOnDisk(partial, file.path), 0);
    assert.doesNotThrow(() => checkDiskRoom(plan, plan.totalBytes - downloaded));
    assert.throws(
      () => checkDiskRoom(plan, plan.totalBytes - downloaded - 1),
      new RegExp(`needs .* more on disk \\(.* of 4\\.4 MB are downloaded\\)`),
    );
  });

  test("bytes that do not match the Hub's SHA-256 are deleted and the download fails, naming the file", async () => {
    hub.corrupt.add(WEIGHTS);
    try {
      const plan = await planDownload(request());
      await assert.rejects(
        downloadModel(plan),
        (error: unknown) =>
          error instanceof FicocoError &&
          error.kind === 'download' &&
          /model\.safetensors .*failed its checksum \(SHA-256/.test(error.message),
      );
      assert.equal(fs.existsSync(plan.folder), false);
      const partial = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
      assert.equal(fs.existsSync(path.join(partial, `${WEIGHTS}.incomplete`)), false, 'the corrupt bytes are gone');
      assert.ok(fs.existsSync(path.join(partial, 'config.json')), 'verified files stay for the next attempt');
    } finally {
      hub.corrupt.delete(WEIGHTS);
    }
  });

  test('404s: an unknown repository, revision or file each get an actionable message', async () => {
    await assert.rejects(
      planDownload(request({ repo: 'ficoco/no-such-model' })),
      /ficoco\/no-such-model at main on http:\/\/127\.0\.0\.1:\d+: not found \(404\)\. Check the repository name/,
    );
    await assert.rejects(planDownload(request({ revision: 'v9' })), /not found \(404\)/);
    await assert.rejects(
      planDownload(request({ files: ['config.json', 'model-00001-of-00002.safetensors'] })),
      /has no model-00001-of-00002\.safetensors: the model preset and the repository disagree/,
    );
    const withOptional = await planDownload(request({ files: [...NEEDED, 'added_tokens.json', 'chat_template.json'] }));
    assert.deepEqual(
      withOptional.files.map((f) => f.path),
      NEEDED,
      'files a folder can do without may be missing',
    );
    await assert.rejects(
      planDownload(request({ endpoint: 'http://127.0.0.1:9' })),
      (error: unknown) => error instanceof FicocoError && error.kind === 'download',
    );
  });

  test('a model another process completed after the plan was made is found, and the summary says who did it', async () => {
    // The extension plans, then asks for consent: another window or CLI run may complete the model meanwhile.
    const planned = await planDownload(request());
    const other = await downloadModel(await planDownload(request()));
    hub.bytesServed = 0;
    const summary = new DownloadSummary();
    assert.equal(await downloadModel(planned, { onProgress: (p) => summary.noteProgress(p) }), other);
    assert.equal(hub.bytesServed, 0);
    assert.ok(summary.completedElsewhere);
    assert.equal(summary.describe(), 'downloaded and verified by another process meanwhile');
  });

  test('a complete copy is used in place: an earlier download, or a snapshot in the Hugging Face cache', async () => {
    const first = await downloadModel(await planDownload(request()));
    hub.bytesServed = 0;
    const again = await planDownload(request({ revision: COMMIT }));
    assert.equal(again.existing, 'downloaded');
    assert.equal(await downloadModel(again), first);
    assert.equal(hub.bytesServed, 0);

    // The cache as huggingface_hub leaves it: blobs named for their checksums, snapshot entries linking to them.
    const otherRoot = tempDir('ficoco-models-');
    const cached = path.join(cache, 'models--ficoco--tiny-llava-screens');
    const snapshot = path.join(cached, 'snapshots', COMMIT);
    fs.mkdirSync(snapshot, { recursive: true });
    fs.mkdirSync(path.join(cached, 'blobs'));
    for (const file of again.files) {
      const blob = path.join(cached, 'blobs', file.sha256 ?? file.gitSha1!);
      fs.copyFileSync(path.join(first, file.path), blob);
      fs.symlinkSync(path.relative(snapshot, blob), path.join(snapshot, file.path));
    }
    const fromCache = await planDownload(request({ root: otherRoot }));
    assert.equal(fromCache.existing, 'hf-cache');
    assert.equal(await downloadModel(fromCache), snapshot);
    assert.equal(hub.bytesServed, 0);

    // Weights of the right size in a blob named for other bytes are not the model's.
    const weights = again.files.find((file) => file.path === WEIGHTS)!;
    const other = path.join(cached, 'blobs', 'f'.repeat(64));
    fs.renameSync(path.join(cached, 'blobs', weights.sha256!), other);
    fs.rmSync(path.join(snapshot, WEIGHTS));
    fs.symlinkSync(path.relative(snapshot, other), path.join(snapshot, WEIGHTS));
    assert.equal((await planDownload(request({ root: otherRoot }))).existing, undefined);
    fs.rmSync(cached, { recursive: true });
  });

  test('a download damaged since (a file cut short, one deleted) is mended by downloading again: those files only', async () => {
    const folder = await downloadModel(await planDownload(request()));
    fs.truncateSync(path.join(folder, WEIGHTS), 1000);
    fs.rmSync(path.join(folder, 'config.json'));
    const again = await planDownload(request());
    assert.equal(again.existing, undefined, 'not complete');
    const bad = fs.statSync(path.join(BUILTIN, WEIGHTS)).size + fs.statSync(path.join(BUILTIN, 'config.json')).size;
    assert.doesNotThrow(() => checkDiskRoom(again, bad), 'room for the two bad files is room enough');
    hub.requests.length = 0;
    assert.equal(await downloadModel(again), folder);
    for (const file of NEEDED)
      assert.ok(fs.readFileSync(path.join(folder, file)).equals(fs.readFileSync(path.join(BUILTIN, file))), file);
    const fetched = new Set(hub.requests.map((r) => r.path.split('/').pop()));
    assert.deepEqual([...fetched].sort(), ['config.json', WEIGHTS]);
    assert.equal((await planDownload(request())).existing, 'downloaded');
  });

  test('a damaged download stays in its folder while it is mended, and after a repair that failed', async () => {
    const folder = await downloadModel(await planDownload(request()));
    fs.rmSync(path.join(folder, 'config.json'));
    const again = await planDownload(request());
    hub.dropAfter.set('config.json', 10);
    await assert.rejects(downloadModel(again, { retries: 0 }));
    assert.ok(fs.readFileSync(path.join(folder, WEIGHTS)).equals(fs.readFileSync(path.join(BUILTIN, WEIGHTS))));
    assert.equal(await downloadModel(await planDownload(request())), folder);
    assert.equal((await planDownload(request())).existing, 'downloaded');
  });

  test('a model folder that is a link is refused by name when it needs mending; the link stays', async () => {
    const folder = await downloadModel(await planDownload(request()));
    const moved = path.join(tempDir('ficoco-other-disk-'), 'commit');
    fs.renameSync(folder, moved);
    fs.symlinkSync(moved, folder);
    fs.rmSync(path.join(moved, 'config.json'));
    await assert.rejects(
      downloadModel(await planDownload(request())),
      (error: unknown) => error instanceof FicocoError && error.message.startsWith(`${folder} is a link to`),
    );
    assert.ok(fs.lstatSync(folder).isSymbolicLink());
  });

  test("a repository's folder that is a link is refused before any file is fetched", async () => {
    const plan = await planDownload(request());
    fs.symlinkSync(tempDir('ficoco-other-disk-'), path.dirname(plan.folder));
    hub.requests.length = 0;
    await assert.rejects(downloadModel(plan), /is a link to .* Remove the link and download again/);
    assert.deepEqual(hub.requests, [], 'nothing was fetched');
  });

  test('delete removes a downloaded model and refuses folders it did not download', async () => {
    const plan = await planDownload(request());
    const folder = await downloadModel(plan);
    // What deleting it frees, as Delete Model and `ficoco models` say: the engine's int8 cache beside it too.
    fs.writeFileSync(path.join(folder, 'ficoco-int8-channels-cpu-0123456789abcdef.quantized'), Buffer.alloc(5000));
    const manifestBytes = fs.statSync(path.join(folder, DOWNLOAD_MANIFEST)).size;
    assert.equal(listStoredModels(root)[0].bytes, plan.totalBytes + manifestBytes + 5000);
    assert.throws(() => deleteStoredModel(root, BUILTIN), /is not a model FiCoCo downloaded/);
    assert.throws(() => deleteStoredModel(root, root), /is not a model FiCoCo downloaded/);
    deleteStoredModel(root, folder);
    assert.equal(fs.existsSync(folder), false);
    assert.deepEqual(listStoredModels(root), []);
    assert.ok(fs.existsSync(path.join(BUILTIN, 'config.json')));
  });

  test("Use Local Model Folder's check: what a folder lacks to be loadable", () => {
    assert.deepEqual(missingModelFiles(BUILTIN), []);
    assert.deepEqual(missingModelFiles(path.join(ROOT, 'bench')), [
      'config.json',
      'tokenizer.json',
      'preprocessor_config.json',
      TEMPLATE,
      '*.safetensors weights',
    ]);
    assert.deepEqual(missingModelFiles(path.join(root, 'nowhere')), ['the folder itself']);
  });

  test("Use Local Model Folder's check refuses what the engine cannot load, and takes what it can", async () => {
    const copy = (name: string) => {
      const folder = path.join(root, name);
      fs.cpSync(BUILTIN, folder, { recursive: true });
      return folder;
    };
    const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(BUILTIN, 'tokenizer_config.json'), 'utf8')) as {
      chat_template?: string;
    };
    const { chat_template: template, ...withoutTemplate } = tokenizerConfig;
    const loads = (folder: string) => LlavaEngine.load(folder).then((engine) => engine.dispose());

    // A snapshot from before the repository had a chat template.
    const noTemplate = copy('no-template');
    fs.writeFileSync(path.join(noTemplate, 'tokenizer_config.json'), JSON.stringify(withoutTemplate));
    assert.deepEqual(missingModelFiles(noTemplate), [TEMPLATE]);
    await assert.rejects(loads(noTemplate), /has no chat template/);

    // The template in chat_template.json, as the llava-hf repositories keep it: no tokenizer_config.json needed.
    const templateFile = copy('template-file');
    fs.rmSync(path.join(templateFile, 'tokenizer_config.json'));
    fs.writeFileSync(path.join(templateFile, 'chat_template.json'), JSON.stringify({ chat_template: template }));
    assert.deepEqual(missingModelFiles(templateFile), []);
    await loads(templateFile);

    // A Hugging Face cache snapshot whose weights' blob is gone: the link is there, the file is not.
    const dangling = copy('dangling');
    fs.rmSync(path.join(dangling, WEIGHTS));
    fs.symlinkSync(path.join('..', '..', 'blobs', 'f'.repeat(64)), path.join(dangling, WEIGHTS));
    assert.deepEqual(missingModelFiles(dangling), ['*.safetensors weights']);
    await assert.rejects(loads(dangling), /broken link/);

    // Sharded weights with a shard missing.
    const sharded = copy('sharded');
    fs.renameSync(path.join(sharded, WEIGHTS), path.join(sharded, 'model-00001-of-00002.safetensors'));
    fs.writeFileSync(
      path.join(sharded, 'model.safetensors.index.json'),
      JSON.stringify({
        weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' },
      }),
    );
    assert.deepEqual(missingModelFiles(sharded), [
      'model-00002-of-00002.safetensors (named in model.safetensors.index.json)',
    ]);
    await assert.rejects(loads(sharded), /names model-00002-of-00002\.safetensors, but it is missing/);
  });
});

/** Bytes of `file` in the unfinished download `partial`: the finished file's, else its `.incomplete` part's, else 0. */
function bytesOnDisk(partial: string, file: string): number {
  const done = fs.statSync(path.join(partial, file), { throwIfNoEntry: false });
  const part = fs.statSync(path.join(partial, `${file}.incomplete`), { throwIfNoEntry: false });
  return done?.size ?? part?.size ?? 0;
}
