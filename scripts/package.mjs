// Builds one VSIX per platform into dist-vsix/, each with only that platform's ONNX Runtime binaries.
//   node scripts/package.mjs                      every target
//   node scripts/package.mjs --target linux-x64   one target (the e2e suite's)
// Before packaging, `vsce ls` with the target's ignore file must list exactly its own binaries, the
// built-in model and no other model weights; the sizes of the packages are printed at the end.
// The package's readme (the Marketplace page and VS Code's extension page) is MARKETPLACE.md, written for
// users, with CHANGELOG.md beside it; each VSIX is checked to hold both and the images the page shows.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import AdmZip from 'adm-zip';

const ORT_VERSION = JSON.parse(fs.readFileSync('node_modules/onnxruntime-node/package.json', 'utf8')).version;
/** VS Code target → the folder of its binaries in onnxruntime-node, and the files that are not needed there. */
const TARGETS = {
  'linux-x64': { binaries: 'linux/x64', unused: [] },
  'linux-arm64': { binaries: 'linux/arm64', unused: [] },
  'win32-x64': { binaries: 'win32/x64', unused: [] },
  'win32-arm64': { binaries: 'win32/arm64', unused: [] },
  // The binding loads @rpath/libonnxruntime.1.dylib; the versioned copy is the same library again.
  'darwin-arm64': { binaries: 'darwin/arm64', unused: [`libonnxruntime.${ORT_VERSION}.dylib`] },
};
const BINARIES = 'node_modules/onnxruntime-node/bin/napi-v6';
const BUILTIN_MODEL = 'models/tiny-llava-screens/';
const OUT = 'dist-vsix';
/** The user-facing page vsce packages as extension/readme.md (the repository's README.md is for developers). */
const PAGE = 'MARKETPLACE.md';
const CHANGELOG = 'CHANGELOG.md';

const targetArg = process.argv.indexOf('--target');
const wanted = targetArg >= 0 ? [process.argv[targetArg + 1]] : Object.keys(TARGETS);
for (const target of wanted)
  if (!(target in TARGETS))
    throw new Error(`unknown target ${target}; expected one of ${Object.keys(TARGETS).join(', ')}`);

const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8'));
const version = manifest.version;
const baseIgnore = fs.readFileSync('.vscodeignore', 'utf8');
const vsce = (args) =>
  execFileSync(process.execPath, [path.join('node_modules', '@vscode', 'vsce', 'vsce'), ...args], { encoding: 'utf8' });

// The page's images and links are relative to the repository root, where the page sits, so they work on GitHub
// and name the same files inside the VSIX (extension/readme.md sits beside extension/media/). The Marketplace
// and VS Code's extension page show only https images, though (nothing in a VSIX is served to them), so when
// package.json names the repository, vsce rewrites the relative links to its files there: to the release's tag
// when a tag is being built, else to HEAD. Without a repository they stay relative, and the Marketplace would
// show a broken screenshot: a tag build (the release workflow publishes it) refuses that.
const page = fs.readFileSync(PAGE, 'utf8');
const changelog = fs.readFileSync(CHANGELOG, 'utf8');
const pageImages = relativeImages(page);
for (const image of pageImages)
  if (!fs.existsSync(image)) throw new Error(`${PAGE} shows ${image}, which does not exist`);
const repository = typeof manifest.repository === 'string' ? manifest.repository : manifest.repository?.url;
const releaseTag = process.env.GITHUB_REF_TYPE === 'tag' ? process.env.GITHUB_REF_NAME : undefined;
if (!repository) {
  const why =
    `package.json has no "repository", so ${PAGE}'s images (${pageImages.join(', ')}) and links stay relative: ` +
    'the Marketplace and VS Code show such images broken. Add the public repository to package.json.';
  if (releaseTag) throw new Error(why);
  process.stderr.write(`warning: ${why}\n`);
}
const linkOptions = repository
  ? releaseTag
    ? ['--githubBranch', releaseTag]
    : []
  : ['--allow-missing-repository', '--no-rewrite-relative-links'];

fs.mkdirSync(OUT, { recursive: true });
const sizes = [];
for (const target of wanted) {
  const { binaries, unused } = TARGETS[target];
  const ignoreFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-package-')), '.vscodeignore');
  // vsce lets a negation win over every ignore, so the target's binaries are re-included one by one.
  const own = fs
    .readdirSync(path.join(BINARIES, binaries))
    .filter((file) => !unused.includes(file))
    .map((file) => `!${BINARIES}/${binaries}/${file}`);
  if (!baseIgnore.includes(`!${BINARIES}/PLATFORM/*`))
    throw new Error(`.vscodeignore must re-include !${BINARIES}/PLATFORM/* (rewritten per target)`);
  fs.writeFileSync(ignoreFile, baseIgnore.replace(`!${BINARIES}/PLATFORM/*`, own.join('\n')));

  const files = vsce(['ls', '--ignoreFile', ignoreFile, '--readme-path', PAGE]).split('\n').filter(Boolean);
  const foreign = files.filter(
    (file) =>
      file.startsWith(`${BINARIES}/`) &&
      (!file.startsWith(`${BINARIES}/${binaries}/`) || unused.some((u) => file.endsWith(u))),
  );
  const ownBinding = files.includes(`${BINARIES}/${binaries}/onnxruntime_binding.node`);
  const otherWeights = files.filter(
    (file) => /\.(safetensors|onnx|gguf|bin)$/.test(file) && !file.startsWith(BUILTIN_MODEL),
  );
  if (foreign.length > 0 || !ownBinding || otherWeights.length > 0) {
    throw new Error(
      `${target}: the package would hold ${[...foreign, ...otherWeights].join(', ') || 'no ONNX Runtime binding of its own'}`,
    );
  }
  // The developers' README.md would sit beside the page's readme.md, one file on a case-insensitive disk.
  const missing = [CHANGELOG, ...pageImages].filter((file) => !files.includes(file));
  if (missing.length > 0 || files.includes('README.md'))
    throw new Error(
      `${target}: .vscodeignore must keep ${missing.join(', ') || CHANGELOG} in the package and README.md out of it`,
    );

  const vsix = path.join(OUT, `ficoco-vision-${target}-${version}.vsix`);
  vsce([
    'package',
    '--target',
    target,
    '--ignoreFile',
    ignoreFile,
    '--out',
    vsix,
    '--readme-path',
    PAGE,
    '--changelog-path',
    CHANGELOG,
    ...linkOptions,
  ]);
  checkPages(target, new AdmZip(vsix));
  sizes.push([target, fs.statSync(vsix).size, files.length]);
  fs.rmSync(path.dirname(ignoreFile), { recursive: true, force: true });
}
process.stdout.write(
  [
    '| target | VSIX | files |',
    '|---|---:|---:|',
    ...sizes.map(([t, bytes, count]) => `| ${t} | ${(bytes / 1e6).toFixed(1)} MB | ${count} |`),
  ].join('\n') + '\n',
);

/** Images a markdown page shows from its own folder (`![…](media/x.png)`, `<img src="media/x.png">`). */
function relativeImages(markdown) {
  const sources = [
    ...[...markdown.matchAll(/!\[[^\]]*\]\(\s*<?([^)\s>]+)/g)].map((match) => match[1]),
    ...[...markdown.matchAll(/<img\b[^>]*\bsrc=["']([^"']+)["']/gi)].map((match) => match[1]),
  ];
  return [
    ...new Set(sources.filter((source) => !/^[a-z][a-z0-9+.-]*:/i.test(source)).map((s) => path.posix.normalize(s))),
  ];
}

/** The VSIX's readme is the user page, its changelog is CHANGELOG.md, and the page's images are inside. */
function checkPages(target, zip) {
  const text = (name) => zip.getEntry(name)?.getData().toString('utf8');
  // With a repository vsce has made the relative links absolute (and may link issue numbers); else it copies.
  const same = (packaged, source) =>
    repository ? packaged?.split('\n')[0] === source.split('\n')[0] : packaged === source;
  const readme = text('extension/readme.md');
  const readmes = zip.getEntries().filter((entry) => /^extension\/readme\.md$/i.test(entry.entryName)).length;
  const problems = [];
  if (readmes !== 1) problems.push(`${readmes} files named extension/readme.md in any case`);
  if (!same(readme, page)) problems.push(`extension/readme.md is not ${PAGE}`);
  if (repository && relativeImages(readme ?? '').length > 0) problems.push('relative images in extension/readme.md');
  if (!same(text('extension/changelog.md'), changelog)) problems.push(`extension/changelog.md is not ${CHANGELOG}`);
  for (const image of pageImages) if (!zip.getEntry(`extension/${image}`)) problems.push(`no extension/${image}`);
  if (problems.length > 0) throw new Error(`${target}: ${problems.join('; ')}`);
}
