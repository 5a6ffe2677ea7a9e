import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FicocoError } from '../common/errors';
import { checkDiskRoom } from '../hub/diskRoom';
import { downloadModel } from '../hub/download';
import { ModelRequest, isOptionalModelFile, planDownload } from '../hub/downloadPlan';
import { DEFAULT_HUB_ENDPOINT, checkHubEndpoint } from '../hub/hubHttp';
import { DownloadSummary } from '../hub/downloadSummary';
import { findSnapshotInHfCache } from '../hub/hfCache';
import { formatBytes } from '../common/bytes';
import { MODEL_PRESETS, findBuiltinModel, findPreset } from '../hub/presets';
import {
  deletePartialDownload,
  deleteStoredModel,
  freeBytes,
  listPartialDownloads,
  listStoredModels,
} from '../hub/store';
import { CommandOptions, outputFolderArg, parseCommandArgs } from './args';

export const MODELS_USAGE = `Usage:
  ficoco models                                   the presets, the models downloaded so far, unfinished downloads
  ficoco models download PRESET|OWNER/NAME[@REV] [--revision REV] [--endpoint URL] [--dir DIR]
  ficoco models delete FOLDER [--dir DIR]
  ficoco models clean [--dir DIR]                 removes unfinished downloads (not one that is running)

Downloads go to --dir (default $FICOCO_MODELS_DIR or ~/.cache/ficoco-vision/models) as
OWNER--NAME/COMMIT/, verified against the Hub's checksums; an interrupted download resumes, and a second
download of the same model waits for the first. A model already in the Hugging Face cache ($HF_HUB_CACHE,
$HF_HOME/hub or ~/.cache/huggingface/hub) is used in place. --endpoint defaults to $HF_ENDPOINT or
${DEFAULT_HUB_ENDPOINT}; $HF_TOKEN is sent for gated repositories, to the endpoint only and only over https.
\`ficoco ask --model PRESET\` uses a downloaded preset, or its commit in the Hugging Face cache
(tiny-llava-screens: the built-in model).
`;

export const MODELS_OPTIONS = {
  revision: { type: 'string' },
  endpoint: { type: 'string' },
  dir: { type: 'string' },
  help: { type: 'boolean' },
} satisfies CommandOptions;

export function defaultModelsRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.FICOCO_MODELS_DIR ?? path.join(os.homedir(), '.cache', 'ficoco-vision', 'models');
}

/**
 * `--model` as given: a folder, the built-in preset's id (its folder in this package), or the id of a downloaded preset
 * (its newest download), else of one whose commit is in the Hugging Face cache, which `ficoco models download` uses in
 * place.
 */
export function resolveModelArg(model: string, root = defaultModelsRoot(), env = process.env): string {
  const preset = findPreset(model);
  if (!preset || model.includes(path.sep)) return model;
  if (!preset.hub) return findBuiltinModel(__dirname) ?? model;
  const { repo, revision, files } = preset.hub;
  const stored = listStoredModels(root).find((m) => m.repo === repo && m.commit === revision);
  if (stored) return stored.folder;
  // Offline, so by name: `ficoco models download` checks sizes and checksums; the engine checks the files it loads.
  const needed = files.filter((file) => !isOptionalModelFile(file)).map((file) => ({ path: file }));
  const cached = findSnapshotInHfCache(repo, revision, needed, env);
  if (cached) return cached;
  throw new FicocoError(
    `${model} is not downloaded yet: run \`ficoco models download ${model}\` (${formatBytes(preset.approxBytes)}).`,
    'model-folder',
  );
}

/** --model as given (a folder or a downloaded preset), else the built-in model; one not there is refused. */
export function modelDirArg(model: string | undefined): string {
  const dir = model !== undefined ? resolveModelArg(model) : findBuiltinModel(__dirname);
  if (dir === undefined)
    throw new FicocoError(
      '--model DIR is required: this package has no built-in model (models/tiny-llava-screens).',
      'input',
    );
  if (!fs.existsSync(dir)) throw new FicocoError(`--model ${dir} does not exist.`, 'model-folder');
  return dir;
}

export async function modelsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('models', { args, allowPositionals: true, options: MODELS_OPTIONS });
  if (values.help) {
    process.stdout.write(MODELS_USAGE);
    return 0;
  }
  const root = outputFolderArg('--dir', values.dir ?? defaultModelsRoot());
  const [action, target] = positionals;
  if (action === undefined) return list(root);
  if (action === 'download' && !target)
    throw new FicocoError(
      `ficoco models download needs a model: a preset (${downloadablePresets()}) or a Hub repository ` +
        `OWNER/NAME[@REV].`,
      'input',
    );
  if (action === 'download' && target) {
    // An empty $HF_ENDPOINT is an unset one.
    const endpoint = values.endpoint ?? (process.env.HF_ENDPOINT || DEFAULT_HUB_ENDPOINT);
    checkHubEndpoint(endpoint, values.endpoint !== undefined ? '--endpoint' : '$HF_ENDPOINT');
    const [name, revision] = revisionOf(target, values.revision);
    return download(name, revision, endpoint, root);
  }
  if (action === 'delete' && target) {
    deleteStoredModel(root, path.resolve(target));
    process.stdout.write(`deleted ${target}\n`);
    return 0;
  }
  if (action === 'clean' && !target) return clean(root);
  throw new FicocoError(
    `ficoco models ${positionals.join(' ')}: expected nothing, "download PRESET|OWNER/NAME", "delete ` +
      `FOLDER" or "clean". See \`ficoco models --help\`.`,
    'input',
  );
}

/** OWNER/NAME@REV (or PRESET@REV) as the name and the revision; --revision REV says the same, so not both. */
function revisionOf(target: string, flag: string | undefined): [string, string | undefined] {
  const at = target.indexOf('@');
  if (at < 0) return [target, flag];
  const revision = target.slice(at + 1);
  if (revision === '') throw new FicocoError(`${target}: give a revision after @, or leave out the @.`, 'input');
  if (flag !== undefined)
    throw new FicocoError(`${target} names a revision and so does --revision ${flag}: give one.`, 'input');
  return [target.slice(0, at), revision];
}

function list(root: string): number {
  const lines = ['Presets:'];
  const nameWidth = 24;
  // A preset's later lines start under its title: after the two spaces, the name's column and one space.
  const indent = ' '.repeat(2 + nameWidth + 1);
  for (const preset of MODEL_PRESETS) {
    lines.push(
      `  ${`${preset.id}${preset.recommended ? ' *' : ''}`.padEnd(nameWidth)} ${preset.title}, ${preset.parameters} parameters, ` +
        `${formatBytes(preset.approxBytes)}, ${preset.licence}`,
      `${indent}${preset.hub ? `${preset.hub.repo}@${preset.hub.revision.slice(0, 7)}` : 'built in'}; ${preset.hardware}`,
      `${indent}screenshots: ${preset.screenshots.highResolution ? 'high resolution' : 'low resolution'}, ` +
        preset.screenshots.summary,
    );
  }
  lines.push(`  * recommended on a machine without a GPU`);
  const stored = listStoredModels(root);
  lines.push('', stored.length === 0 ? `Nothing downloaded in ${root}.` : `Downloaded (${root}):`);
  for (const model of stored)
    lines.push(`  ${model.repo}@${model.commit.slice(0, 7)}  ${formatBytes(model.bytes)}  ${model.folder}`);
  const partial = listPartialDownloads(root);
  if (partial.length > 0) lines.push('', 'Unfinished downloads (download again to resume, or `ficoco models clean`):');
  for (const download of partial)
    lines.push(`  ${formatBytes(download.bytes)}  ${download.folder}${download.inUse ? '  (downloading now)' : ''}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

function clean(root: string): number {
  const downloads = listPartialDownloads(root);
  if (downloads.length === 0) process.stdout.write(`no unfinished downloads in ${root}\n`);
  for (const download of downloads) {
    if (download.inUse) {
      process.stdout.write(`kept ${download.folder}: it is downloading now\n`);
      continue;
    }
    deletePartialDownload(root, download.folder);
    process.stdout.write(`removed ${download.folder} (${formatBytes(download.bytes)})\n`);
  }
  return 0;
}

/** The presets a download can fetch, for messages: "tiny-llava-1.5b, llava-onevision-0.5b, …". */
function downloadablePresets(): string {
  return MODEL_PRESETS.filter((preset) => preset.hub)
    .map((preset) => preset.id)
    .join(', ');
}

async function download(target: string, revision: string | undefined, endpoint: string, root: string): Promise<number> {
  const preset = findPreset(target);
  if (preset && !preset.hub) throw new FicocoError(`${target} is built in; there is nothing to download.`, 'input');
  // A mistyped preset would otherwise be told only what a Hub repository name looks like.
  if (!preset && !target.includes('/'))
    throw new FicocoError(
      `"${target}" is neither a preset (${downloadablePresets()}) nor a Hub repository OWNER/NAME.`,
      'input',
    );
  const request: ModelRequest = preset?.hub
    ? {
        repo: preset.hub.repo,
        revision: revision ?? preset.hub.revision,
        files: revision ? undefined : preset.hub.files,
        endpoint,
        root,
      }
    : { repo: target, revision: revision ?? 'main', endpoint, root };
  if (process.env.HF_TOKEN) request.accessToken = process.env.HF_TOKEN;
  const plan = await planDownload(request);
  if (plan.tokenWithheld) process.stderr.write(`$HF_TOKEN was not sent to ${endpoint}: tokens go only over https.\n`);
  if (plan.existing) {
    process.stdout.write(
      `${request.repo}@${plan.commit.slice(0, 7)} is already complete ` +
        `(${plan.existing === 'hf-cache' ? 'Hugging Face cache' : 'downloaded'}): ${plan.folder}\n`,
    );
    return 0;
  }
  checkDiskRoom(plan, freeBytes(root));
  process.stderr.write(
    `downloading ${request.repo}@${plan.commit.slice(0, 7)}: ${plan.files.length} files, ` +
      `${formatBytes(plan.totalBytes)} into ${plan.folder}\n`,
  );
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  const summary = new DownloadSummary();
  let reported = -1;
  const folder = await downloadModel(plan, {
    signal: controller.signal,
    whenBusy: 'wait',
    onWait: (owner) => {
      summary.noteWait(owner);
      process.stderr.write(`waiting for the download already running in ${summary.otherProcess}…\n`);
    },
    onProgress: (progress) => {
      summary.noteProgress(progress);
      const { bytesDone, bytesTotal } = progress;
      const percent = Math.floor((100 * bytesDone) / bytesTotal);
      if (percent < reported + 5 && bytesDone < bytesTotal) return;
      reported = percent;
      process.stderr.write(`  ${percent}%  ${formatBytes(bytesDone)} of ${formatBytes(bytesTotal)}\n`);
    },
  });
  process.stdout.write(`${folder}\n${summary.describe()}\n`);
  return 0;
}
