import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { resolveModelArg } from '../../src/cli/models';
import { promisify } from 'node:util';
import { anyresLayout } from '../../src/common/anyres';
import { downloadModel } from '../../src/hub/download';
import { planDownload } from '../../src/hub/downloadPlan';
import { DOWNLOAD_MANIFEST, listStoredModels } from '../../src/hub/store';
import { MODEL_PRESETS, findPreset } from '../../src/hub/presets';
import { parseModelConfig } from '../../src/engine/models/registry';
import { FakeHub, startFakeHub } from '../../tools/fakeHub';
import { ONEVISION_05B_LISTING, writeHubListing } from '../helpers/hubListings';
import { screenshotPng } from '../../tools/screenshotPng';
import { runCli } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..');
const BUILTIN = path.join(ROOT, 'models', 'tiny-llava-screens');
const COMMIT = 'b'.repeat(40);

let hub: FakeHub;
let dir: string;
before(async () => {
  hub = await startFakeHub({ 'ficoco/tiny-llava-screens': { folder: BUILTIN, commit: COMMIT } });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-cli-models-'));
});
after(async () => {
  await hub.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function ficoco(...args: string[]): ReturnType<typeof runCli> {
  // An empty HF cache, so nothing on this machine is reused by accident.
  return runCli(args, { ...process.env, HF_HUB_CACHE: path.join(dir, 'hf-cache'), FICOCO_MODELS_DIR: dir });
}

/** `ficoco models download TARGET --endpoint ENDPOINT --dir ROOT`, the built-in model from the fake Hub by default. */
function downloadInto(root: string, target = 'ficoco/tiny-llava-screens', endpoint = hub.url) {
  return ficoco('models', 'download', target, '--endpoint', endpoint, '--dir', root);
}

/**
 * `ficoco ARGS` where no file may grow past `kib` KiB (bash's ulimit -f): a write past it fails with EFBIG, as on a
 * FAT32 drive.
 */
function ficocoWithFileLimit(kib: number, ...args: string[]) {
  const cli = path.join(ROOT, 'src', 'cli', 'main.ts');
  return promisify(execFile)(
    'bash',
    ['-c', `ulimit -f ${kib} && exec "$@"`, 'bash', process.execPath, '--import', 'tsx', cli, ...args],
    { cwd: ROOT, env: { ...process.env, HF_HUB_CACHE: path.join(dir, 'hf-cache') } },
  );
}

/** Asserts `run` failed with exit code 2 and an error line matching `message`, without a stack trace. */
async function failsWith(run: Promise<unknown>, message: RegExp): Promise<void> {
  await assert.rejects(run, (error: { code?: number; stderr?: string }) => {
    assert.equal(error.code, 2, error.stderr);
    assert.match(error.stderr ?? '', message);
    assert.doesNotMatch(error.stderr ?? '', /^\s+at /m, 'no stack trace');
    return true;
  });
}

test('ficoco models download fetches a repository from the endpoint; ask answers with the downloaded folder', async () => {
  const { stdout } = await downloadInto(dir);
  const folder = path.join(dir, 'ficoco--tiny-llava-screens', COMMIT);
  assert.equal(stdout.split('\n')[0], folder);
  assert.match(stdout, /MB in \d+\.\d s \(.+\/s\)/);
  const listing = await ficoco('models', '--dir', dir);
  assert.match(listing.stdout, new RegExp(`ficoco/tiny-llava-screens@bbbbbbb .*${folder}`));
  const again = await ficoco('models', 'download', 'ficoco/tiny-llava-screens', '--endpoint', hub.url, '--dir', dir);
  assert.match(again.stdout, /already complete \(downloaded\)/);
  const answer = await ficoco(
    'ask',
    '--model',
    folder,
    '--image',
    path.join(ROOT, 'bench', 'eval-set', 'images', '1000000025.png'),
    '--max-new-tokens',
    '4',
    'which box does the arrow point to ?',
  );
  assert.match(answer.stdout, /^G\b/);
});

test('ficoco models download llava-onevision-0.5b takes its files from the real listing; ask reads a 1080p screenshot', async () => {
  const preset = findPreset('llava-onevision-0.5b')!;
  const repo = path.join(dir, 'hub-onevision');
  writeHubListing(ONEVISION_05B_LISTING, repo);
  const onevisionHub = await startFakeHub({ [preset.hub!.repo]: { folder: repo, commit: preset.hub!.revision } });
  try {
    await ficoco('models', 'download', preset.id, '--endpoint', onevisionHub.url, '--dir', dir);
  } finally {
    await onevisionHub.close();
  }
  const folder = resolveModelArg(preset.id, dir);
  const downloaded = fs
    .readdirSync(folder, { recursive: true, encoding: 'utf8' })
    .filter((f) => f !== DOWNLOAD_MANIFEST);
  const expected = preset.hub!.files.filter((file) => ONEVISION_05B_LISTING.files.includes(file));
  assert.deepEqual(downloaded.sort(), [...expected].sort(), 'the preset files the repository has, nothing else');

  const shot = path.join(dir, 'screenshot.png');
  fs.writeFileSync(shot, screenshotPng(1920, 1080));
  const { stdout } = await ficoco(
    'ask',
    '--model',
    preset.id,
    '--image',
    shot,
    '--max-new-tokens',
    '3',
    'what is shown ?',
  );
  const configFile = path.join(folder, 'config.json');
  const { config } = parseModelConfig(JSON.parse(fs.readFileSync(configFile, 'utf8')), configFile);
  const tiles = anyresLayout(config.tiling!, { width: 1920, height: 1080 });
  assert.match(stdout, new RegExp(`^tokens in +\\d+ \\(visual ${tiles.tokens}/${tiles.tokens}\\)$`, 'm'));
});

test('ficoco models lists every preset with its size, licence and pinned revision', async () => {
  const { stdout } = await ficoco('models', '--dir', dir);
  for (const preset of MODEL_PRESETS) {
    assert.ok(stdout.includes(preset.id), preset.id);
    assert.ok(stdout.includes(preset.licence), preset.licence);
    if (preset.hub) assert.ok(stdout.includes(`${preset.hub.repo}@${preset.hub.revision.slice(0, 7)}`));
    const resolution = preset.screenshots.highResolution ? 'high resolution' : 'low resolution';
    assert.ok(stdout.includes(`screenshots: ${resolution}, ${preset.screenshots.summary}`), preset.id);
  }
  assert.match(stdout, /^ {2}llava-onevision-0\.5b \* +LLaVA-OneVision 0\.5B/m, 'the recommended preset is marked');
  // A preset's revision and screenshot lines start under its title, as one column.
  const lines = stdout.split('\n');
  MODEL_PRESETS.forEach((preset, index) => {
    const [first, ...rest] = lines.slice(1 + 3 * index, 4 + 3 * index);
    for (const line of rest)
      assert.equal(line.search(/\S/), first.indexOf(preset.title), `${preset.id}:\n${first}\n${line}`);
  });
});

test('ficoco models lists unfinished downloads; ficoco models clean removes them', async () => {
  const partial = path.join(dir, '.partial', `ficoco--half-done--${COMMIT}`);
  fs.mkdirSync(partial, { recursive: true });
  fs.writeFileSync(path.join(partial, 'model.safetensors.incomplete'), Buffer.alloc(2_000_000));
  assert.match(
    (await ficoco('models', '--dir', dir)).stdout,
    new RegExp(`Unfinished downloads .*\\n  2\\.0 MB  ${partial}`),
  );
  assert.match(
    (await ficoco('models', 'clean', '--dir', dir)).stdout,
    new RegExp(`^removed ${partial} \\(2\\.0 MB\\)$`, 'm'),
  );
  assert.equal(fs.existsSync(partial), false);
  assert.doesNotMatch((await ficoco('models', '--dir', dir)).stdout, /Unfinished downloads/);
  // Nothing left: it says so rather than nothing.
  assert.equal((await ficoco('models', 'clean', '--dir', dir)).stdout, `no unfinished downloads in ${dir}\n`);
});

test('--model PRESET names a downloaded preset, and says how to download one that is not there', () => {
  assert.equal(resolveModelArg('/some/folder', dir), '/some/folder');
  // `ficoco models` lists the built-in model among the presets, by this id.
  assert.equal(resolveModelArg('tiny-llava-screens', dir), BUILTIN);
  assert.throws(
    () => resolveModelArg('llava-1.5-7b', dir),
    /llava-1\.5-7b is not downloaded yet: run `ficoco models download llava-1\.5-7b` \(14 GB\)/,
  );
});

test('--model PRESET uses the preset commit in the Hugging Face cache, as `models download` does', () => {
  const preset = findPreset('llava-onevision-0.5b')!;
  const hfCache = path.join(dir, 'hf-cache-with-preset');
  const snapshot = path.join(
    hfCache,
    `models--${preset.hub!.repo.replace('/', '--')}`,
    'snapshots',
    preset.hub!.revision,
  );
  const env = { ...process.env, HF_HUB_CACHE: hfCache };
  fs.mkdirSync(snapshot, { recursive: true });
  // Files a folder can do without may be missing, as transformers leaves some out.
  const needed = preset.hub!.files.filter(
    (file) => !/^(generation_config|processor_config|chat_template)\./.test(file),
  );
  for (const file of needed) fs.writeFileSync(path.join(snapshot, file), '{}');
  try {
    assert.equal(resolveModelArg(preset.id, path.join(dir, 'empty-store'), env), snapshot);
    // Another commit of the repository, or one without a needed file, is not the preset.
    fs.rmSync(path.join(snapshot, 'config.json'));
    assert.throws(
      () => resolveModelArg(preset.id, path.join(dir, 'empty-store'), env),
      /llava-onevision-0\.5b is not downloaded yet/,
    );
  } finally {
    fs.rmSync(hfCache, { recursive: true, force: true });
  }
});

test('a wrong endpoint or repository name fails with exit code 2 and a message', async () => {
  await assert.rejects(
    ficoco('models', 'download', 'ficoco/nothing-here', '--endpoint', hub.url, '--dir', dir),
    (error: { code?: number; stderr?: string }) => {
      assert.equal(error.code, 2);
      assert.match(error.stderr ?? '', /ficoco\/nothing-here at main on http:\/\/127\.0\.0\.1:\d+: not found \(404\)/);
      return true;
    },
  );
  await assert.rejects(
    ficoco('models', 'download', 'not a repo', '--endpoint', hub.url, '--dir', dir),
    /"not a repo" is neither a preset \(.*\) nor a Hub repository OWNER\/NAME\./,
  );
  await assert.rejects(
    ficoco('models', 'download', 'not/a repo', '--endpoint', hub.url, '--dir', dir),
    /"not\/a repo" is not a Hub model name/,
  );
});

test('ficoco models download OWNER/NAME@REV downloads that revision, as the README says', async () => {
  const { stdout } = await downloadInto(dir, `ficoco/tiny-llava-screens@${COMMIT}`);
  assert.ok(stdout.includes(path.join(dir, 'ficoco--tiny-llava-screens', COMMIT)), stdout);
  await assert.rejects(
    ficoco('models', 'download', 'ficoco/tiny-llava-screens@main', '--revision', 'main', '--dir', dir),
    /names a revision and so does --revision main: give one/,
  );
});

test('a resumed download gives the rate of what it fetched, and says what was on disk already', async () => {
  const resumed = fs.mkdtempSync(path.join(dir, 'resumed-'));
  const partial = path.join(resumed, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
  fs.mkdirSync(partial, { recursive: true });
  fs.copyFileSync(path.join(BUILTIN, 'model.safetensors'), path.join(partial, 'model.safetensors'));
  const { stdout } = await downloadInto(resumed);
  // The weights (4.4 MB) were there: only the small files came.
  assert.match(stdout.split('\n')[1]!, /^\d+(\.\d)? kB in \d+\.\d s \(.+\/s\); 4\.4 MB were on disk already$/);
});

test('a resumed download whose connection is reset says what was on disk before it, not less', async () => {
  const resumed = fs.mkdtempSync(path.join(dir, 'reset-'));
  const partial = path.join(resumed, '.partial', `ficoco--tiny-llava-screens--${COMMIT}`);
  fs.mkdirSync(partial, { recursive: true });
  const weights = fs.readFileSync(path.join(BUILTIN, 'model.safetensors'));
  // Exactly 1.0 MB of the weights: one byte fewer reads 1000.0 kB.
  fs.writeFileSync(path.join(partial, 'model.safetensors.incomplete'), weights.subarray(0, 1_000_000));
  // Reset past a third of the weights: the bytes it loses on their way to the disk are fetched again.
  hub.dropAfter.set('model.safetensors', Math.floor(weights.length / 3));
  hub.resetOnDrop = true;
  try {
    const { stdout } = await downloadInto(resumed);
    assert.match(stdout.split('\n')[1]!, /; 1\.0 MB were on disk already$/);
  } finally {
    hub.resetOnDrop = false;
  }
});

test('a download that waited for another process says that process downloaded it, not "0 B in … s"', async () => {
  const root = fs.mkdtempSync(path.join(dir, 'waited-'));
  hub.bytesPerSecond = 100e3;
  try {
    const plan = await planDownload({ repo: 'ficoco/tiny-llava-screens', revision: 'main', endpoint: hub.url, root });
    const first = downloadModel(plan);
    const second = downloadInto(root);
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      second.child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes(`waiting for the download already running in process ${process.pid}`)) resolve();
      });
      second.catch(reject);
    });
    hub.bytesPerSecond = undefined;
    await first;
    const { stdout } = await second;
    assert.deepEqual(stdout.split('\n'), [
      plan.folder,
      `downloaded and verified by process ${process.pid} meanwhile`,
      '',
    ]);
  } finally {
    hub.bytesPerSecond = undefined;
  }
});

test('a download that waited for another process gives the rate of its own download, not of the wait', async () => {
  const root = fs.mkdtempSync(path.join(dir, 'waited-then-downloaded-'));
  const lock = path.join(root, '.partial', `ficoco--tiny-llava-screens--${COMMIT}.lock`);
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  // A live process (this one) holds the lock, then gives it up without downloading anything.
  const owner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), token: 'the-test' };
  fs.writeFileSync(lock, JSON.stringify(owner));
  const download = downloadInto(root);
  await new Promise<void>((resolve, reject) => {
    download.child.stderr!.on('data', (chunk: Buffer) => chunk.toString().includes('waiting for') && resolve());
    download.catch(reject);
  });
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  const released = performance.now();
  fs.rmSync(lock);
  const { stdout } = await download;
  const sinceRelease = (performance.now() - released) / 1000;
  const seconds = Number(/^4\.4 MB in (\d+\.\d) s /.exec(stdout.split('\n')[1]!)?.[1]);
  assert.ok(seconds <= sinceRelease + 0.05, `${stdout.split('\n')[1]}: the 2 s wait is not in it (${sinceRelease} s)`);
});

test('an endpoint that is not an http(s) URL, or a file as --dir, is one line and exit code 2', async () => {
  const refused = (args: string[], message: RegExp, env: NodeJS.ProcessEnv = {}) =>
    assert.rejects(
      runCli(['models', 'download', 'ficoco/tiny-llava-screens', ...args], { ...process.env, ...env }),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 2, error.stderr);
        assert.match((error.stderr ?? '').trimEnd(), message);
        assert.equal(error.stderr?.trimEnd().split('\n').length, 1, error.stderr);
        return true;
      },
    );
  await refused(['--endpoint', 'not a url', '--dir', dir], /^error: --endpoint "not a url" is not an http\(s\) URL/);
  await refused(['--dir', dir], /^error: \$HF_ENDPOINT "garbage" is not an http\(s\) URL/, { HF_ENDPOINT: 'garbage' });
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, '');
  await refused(['--endpoint', hub.url, '--dir', file], /^error: --dir .*a-file is not a folder\.$/);
});

const unixOnly = { skip: process.platform === 'win32' ? 'needs bash and ulimit' : false };

test(
  'a file larger than the disk allows is said at once (EFBIG), not retried as a network failure',
  unixOnly,
  async () => {
    const root = fs.mkdtempSync(path.join(dir, 'efbig-'));
    hub.requests.length = 0;
    await failsWith(
      ficocoWithFileLimit(1, 'models', 'download', 'ficoco/tiny-llava-screens', '--endpoint', hub.url, '--dir', root),
      /^error: .*config\.json\.incomplete cannot be written: it would be larger than this disk's file system/m,
    );
    const configGets = hub.requests.filter((r) => r.path.endsWith('/config.json')).length;
    assert.equal(configGets, 2, 'its probe and one try');
  },
);

test('a disk that fails the lock or the manifest says so in one line and leaves no lock behind', unixOnly, async () => {
  const root = fs.mkdtempSync(path.join(dir, 'no-room-'));
  const download = (kib: number, endpoint: string) =>
    ficocoWithFileLimit(kib, 'models', 'download', 'ficoco/tiny-llava-screens', '--endpoint', endpoint, '--dir', root);
  await failsWith(download(0, hub.url), /^error: .*\.lock cannot be written: it would be larger than/m);
  assert.deepEqual(fs.readdirSync(path.join(root, '.partial')), [], 'no lock left to stop the next download');

  // Files of a few bytes fit under 1 KiB; the manifest, which lists them all with their checksums, does not.
  const repo = fs.mkdtempSync(path.join(dir, 'small-repo-'));
  const names = ['config', 'generation_config', 'preprocessor_config', 'tokenizer', 'tokenizer_config'];
  for (const name of [...names, 'special_tokens_map', 'added_tokens', 'chat_template'])
    fs.writeFileSync(path.join(repo, `${name}.json`), '{}');
  fs.writeFileSync(path.join(repo, 'model.safetensors'), Buffer.alloc(100));
  const smallHub = await startFakeHub({ 'ficoco/tiny-llava-screens': { folder: repo, commit: COMMIT } });
  try {
    await failsWith(download(1, smallHub.url), /^error: .*ficoco-download\.json cannot be written: it would be/m);
    assert.deepEqual(listStoredModels(root), []);
    const { stdout } = await downloadInto(root, 'ficoco/tiny-llava-screens', smallHub.url);
    assert.equal(stdout.split('\n')[0], path.join(root, 'ficoco--tiny-llava-screens', COMMIT));
  } finally {
    await smallHub.close();
  }
});

test(
  'a lock that fails to be written and then to be removed still says why it failed, not why the removal did',
  unixOnly,
  async (t) => {
    const root = fs.mkdtempSync(path.join(dir, 'append-only-'));
    const locks = path.join(root, '.partial');
    fs.mkdirSync(locks);
    // An append-only folder (ext4, as root) takes new files and refuses to remove them, as Windows refuses to remove
    // a file another process has open.
    if (spawnSync('chattr', ['+a', locks]).status !== 0) return t.skip('needs chattr +a (root, on ext4 or XFS)');
    try {
      await failsWith(
        ficocoWithFileLimit(0, 'models', 'download', 'ficoco/tiny-llava-screens', '--endpoint', hub.url, '--dir', root),
        /^error: .*\.lock cannot be written: it would be larger than/m,
      );
    } finally {
      spawnSync('chattr', ['-a', locks]);
    }
  },
);

test('ficoco models download refuses a model the disk cannot hold before it downloads anything', async () => {
  const repo = fs.mkdtempSync(path.join(dir, 'huge-repo-'));
  fs.writeFileSync(path.join(repo, 'config.json'), '{}');
  const hugeHub = await startFakeHub({ 'ficoco/huge': { folder: repo, commit: COMMIT } });
  // A mirror's listing that says the weights are a petabyte.
  const size = 2 ** 50;
  const lfs = { oid: 'e'.repeat(64), size, pointerSize: 134 };
  hugeHub.hostile.extraEntries = [{ type: 'file', oid: 'f'.repeat(40), size, path: 'model.safetensors', lfs }];
  try {
    const root = fs.mkdtempSync(path.join(dir, 'huge-'));
    await failsWith(
      ficoco('models', 'download', 'ficoco/huge', '--endpoint', hugeHub.url, '--dir', root),
      /^error: ficoco\/huge needs 1125900 GB more on disk, but .* has .* free\. Free some space and download again\.$/m,
    );
    assert.deepEqual(
      hugeHub.requests.filter((r) => !r.path.startsWith('/api/')),
      [],
      'no file was asked for',
    );
  } finally {
    await hugeHub.close();
  }
});

test('ficoco providers says what this machine can run on and what auto tries', async () => {
  const { stdout } = await ficoco('providers');
  assert.match(stdout, new RegExp(`^platform\\s+${process.platform} ${process.arch}$`, 'm'));
  assert.match(stdout, /^built in\s+.*\bcpu\b/m);
  assert.match(stdout, /^auto tries\s+(\w+ → )*cpu$/m);
  if (process.platform === 'linux' && process.arch === 'x64')
    assert.match(stdout, /^CUDA 12 \/ cuDNN 9\s+(found|missing libc)/m);
  // Without Vulkan's loader or a driver, Dawn finds no adapter and prints a warning of its own: auto leaves it out.
  const vulkan = /^Vulkan\s+(found|no (libvulkan\.so\.1|Vulkan driver) is installed.* \(WebGPU needs it\))$/m.exec(
    stdout,
  );
  if (process.platform === 'linux' && /^built in\s+.*\bwebgpu\b/m.test(stdout)) {
    assert.ok(vulkan, stdout);
    if (vulkan[1] !== 'found') assert.match(stdout, /^auto tries\s+(?!.*webgpu).*cpu$/m);
  } else assert.equal(vulkan, null);
});
