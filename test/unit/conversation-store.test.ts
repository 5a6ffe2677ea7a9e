/**
 * The chat saved on disk for after a window reload (src/extension/conversationStore.ts), in real temporary folders:
 * what comes back, the caps, New Chat, and a store edited or cut short by someone else.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, mock, test } from 'node:test';
import { Conversation, type ImageInput } from '../../src/extension/conversation';
import {
  ConversationStore,
  INDEX_FILE,
  STORE_LIMITS,
  type StoreLimits,
  confined,
} from '../../src/extension/conversationStore';
import type { Turn } from '../../src/protocol/webview';
import { REDUCED_ANSWER_STATS } from '../helpers/answerStats';
import { temporaryFolders } from '../helpers/tempFolders';

const temporary = temporaryFolders();
const IMAGES = path.join(__dirname, '..', 'fixtures', 'images');
const SAVE_CHILD = path.join(__dirname, '..', 'helpers', 'chatSaveChild.ts');

const png = (file: string): ImageInput => ({
  name: file,
  dataBase64: fs.readFileSync(path.join(IMAGES, file)).toString('base64'),
  format: 'png',
});
/** A PNG no other call gives: shapes.png with `tag` after its end, which decoders ignore. */
const uniquePng = (tag: string): ImageInput => ({
  name: `${tag}.png`,
  dataBase64: Buffer.concat([fs.readFileSync(path.join(IMAGES, 'shapes.png')), Buffer.from(tag)]).toString('base64'),
  format: 'png',
});
const bytesOf = (file: string) => fs.statSync(path.join(IMAGES, file)).size;

const STATS = REDUCED_ANSWER_STATS;

/** A store in a fresh folder over `conversation`, and the lines it logs. */
function storeOf(conversation: Conversation, limits: Partial<StoreLimits> = {}, folder = storeFolder()) {
  const warnings: string[] = [];
  const store = new ConversationStore(
    folder,
    () => conversation.records(),
    { warn: (line) => warnings.push(line) },
    {
      ...STORE_LIMITS,
      ...limits,
    },
  );
  return { store, warnings, folder };
}

function storeFolder(): string {
  return path.join(temporary('ficoco-chat-store-'), 'chat');
}

/** Asks `question` about `images` (none: a follow-up about the last ones) and finishes the answer. */
function answered(conversation: Conversation, question: string, images: ImageInput[], answer = `${question}!`): string {
  if (images.length > 0) conversation.addPending(images);
  const id = conversation.startTurn(question)!.turn.id;
  conversation.appendText(id, 'answer', answer);
  conversation.finish(id, 'answer', 'stop-token', structuredClone(STATS));
  return id;
}

/** What a reloaded window's conversation holds, read back from `folder`. */
async function reloaded(folder: string, limits: Partial<StoreLimits> = {}) {
  const conversation = new Conversation();
  const { store, warnings } = storeOf(conversation, limits, folder);
  conversation.restore(await store.load());
  const state = conversation.state();
  assert.ok(state.type === 'state');
  return { conversation, store, turns: state.turns, warnings };
}

/** Asks `question` about `images` (none: the last ones) in a window of the chat, and saves it there. */
async function askedIn(
  window: { conversation: Conversation; store: ConversationStore },
  question: string,
  images: ImageInput[] = [],
) {
  answered(window.conversation, question, images);
  window.store.changed(true);
  await window.store.flush();
}

/** Resolves once conversation.json in `folder` is written again (renamed into place, so whole). */
function indexWritten(folder: string): Promise<void> {
  const watcher = fs.watch(folder);
  return new Promise((resolve) => {
    watcher.on('change', (_, file) => {
      if (file !== INDEX_FILE) return;
      watcher.close();
      resolve();
    });
  });
}

const withoutIds = (turns: Turn[]) => turns.map(({ id: _, ...turn }) => turn);
const files = (folder: string) => fs.readdirSync(folder).sort();

describe('the chat saved for after a reload', () => {
  test('questions, answers, stop reasons, stats, speedups and images come back; a follow-up asks about the same image with the history', async () => {
    const conversation = new Conversation();
    const first = answered(conversation, 'which box?', [png('shapes.png')], 'the red one');
    conversation.startFull(first);
    conversation.appendText(first, 'full', 'the red box');
    conversation.finish(first, 'full', 'stop-token');
    const second = conversation.startTurn('and its colour?')!.turn.id;
    conversation.appendText(second, 'answer', 'red');
    conversation.finish(second, 'answer', 'max-tokens');
    const { store, folder, warnings } = storeOf(conversation);
    await store.save(conversation.records());
    // The follow-up's image is the first's: stored once.
    assert.equal(files(folder).length, 2);
    assert.ok(files(folder).includes(INDEX_FILE));

    const before = conversation.state();
    assert.ok(before.type === 'state');
    const after = await reloaded(folder);
    assert.deepEqual(withoutIds(after.turns), withoutIds(before.turns));
    assert.match(after.turns[0].images[0].src!, /^data:image\/png;base64,/);
    assert.deepEqual(warnings, []);
    assert.deepEqual(after.warnings, []);

    const next = after.conversation.startTurn('where is it?')!;
    assert.deepEqual(next.inputs, [png('shapes.png')]);
    assert.deepEqual(after.conversation.history(next.turn.id), [
      { role: 'user', text: 'which box?' },
      { role: 'assistant', text: 'the red one' },
      { role: 'user', text: 'and its colour?' },
      { role: 'assistant', text: 'red' },
    ]);
    // Compare works on a restored turn, which has its image.
    assert.ok(after.conversation.turnInputs(after.turns[1].id));
  });

  test('answers streaming or waiting at the reload are kept as far as they got, as stopped; a speedup being measured is dropped', async () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      const conversation = new Conversation();
      answered(conversation, 'which box?', [png('shapes.png')]);
      const measuring = conversation.records()[0].turn.answer.stats!;
      measuring.measuringSpeedup = true;
      const streaming = conversation.startTurn('and then?')!.turn.id;
      conversation.appendText(streaming, 'answer', 'the blue');
      // Asked after it, waiting, then stopped: what it says meanwhile and its stop under way do not come back.
      const waiting = conversation.startTurn('and now?')!.turn.id;
      conversation.progress(waiting, 'answer', 'Reading the image');
      conversation.stopping(waiting, 'answer');
      const { store, folder } = storeOf(conversation);
      store.changed(true);
      await store.flush();
      // Named, as the chat names it: that turn's text is written again, the others' reused.
      conversation.appendText(streaming, 'answer', ' one');
      store.changed(false, streaming);
      const { turns: early } = await reloaded(folder);
      assert.equal(early[1].answer.text, 'the blue', 'streamed text waits for the timer');
      const saved = indexWritten(folder);
      mock.timers.tick(1000);
      await saved;
      const { turns } = await reloaded(folder);
      assert.deepEqual(turns[1].answer, { text: 'the blue one', status: 'done', stopReason: 'cancelled' });
      assert.deepEqual(turns[2].answer, { text: '', status: 'done', stopReason: 'cancelled' });
      assert.equal(turns[0].answer.stats?.measuringSpeedup, undefined);
      assert.deepEqual(turns[0].answer.stats?.speedup, STATS.speedup);
    } finally {
      mock.timers.reset();
    }
  });

  test('images beyond the byte cap, the oldest first, are not kept: named in their turn, which then cannot be asked again', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    answered(conversation, 'two', [png('diagram.png')]);
    answered(conversation, 'three', [png('banner.png'), png('tall.png')]);
    const imageBytes = bytesOf('banner.png') + bytesOf('tall.png') + bytesOf('diagram.png');
    const { store, folder } = storeOf(conversation, { imageBytes });
    await store.save(conversation.records());
    assert.equal(files(folder).length, 4, 'three images and the index');

    const { conversation: restored, turns } = await reloaded(folder, { imageBytes });
    assert.deepEqual(turns[0].images, [{ name: 'shapes.png', notKept: true }]);
    assert.match(turns[1].images[0].src!, /^data:image\/png/);
    assert.equal(restored.turnInputs(turns[0].id), undefined, 'not asked again without its image');
    assert.ok(restored.turnInputs(turns[1].id));
    assert.deepEqual(restored.startTurn('four')!.inputs, [png('banner.png'), png('tall.png')]);

    // Within one turn too: the second image of the newest turn does not fit, so that turn keeps none for a follow-up.
    const { store: tight, folder: tightFolder } = storeOf(conversation, { imageBytes: bytesOf('banner.png') });
    await tight.save(conversation.records());
    const { conversation: partial, turns: partialTurns } = await reloaded(tightFolder);
    assert.deepEqual(partialTurns[2].images[1], { name: 'tall.png', notKept: true });
    assert.ok(partialTurns[2].images[0].src);
    assert.equal(partial.startTurn('five'), undefined, 'a follow-up needs a new image');
  });

  test('an image read back keeps its file through later saves, where its turn lost another image to the cap', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('banner.png'), png('tall.png')]);
    const { store, folder } = storeOf(conversation);
    await store.save(conversation.records());
    // A reload where only banner.png fits: tall.png is not kept, so the turn cannot be asked again...
    const tight = { imageBytes: bytesOf('banner.png') };
    const restored = new Conversation();
    const { store: again } = storeOf(restored, tight, folder);
    restored.restore(await again.load());
    await again.save(restored.records());
    // ...yet the banner it showed is still saved for the next reload.
    const { turns } = await reloaded(folder);
    assert.match(turns[0].images[0].src!, /^data:image\/png/);
    assert.deepEqual(turns[0].images[1], { name: 'tall.png', notKept: true });
  });

  test('follow-ups read back share one image and one preview, as in the chat they were asked in', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    for (const question of ['two', 'three']) answered(conversation, question, []);
    const { store, folder } = storeOf(conversation);
    await store.save(conversation.records());
    const records = await storeOf(new Conversation(), {}, folder).store.load();
    assert.equal(records.length, 3);
    assert.ok(
      records.every(({ inputs }) => inputs[0] === records[0].inputs[0]),
      'one input object',
    );
    assert.ok(
      records.every(({ turn }) => turn.images[0] === records[0].turn.images[0]),
      'one preview',
    );
  });

  test('a window that changed nothing saves nothing when it closes: not over a newer chat, nor one it could not read', async () => {
    const conversation = new Conversation();
    answered(conversation, 'which box?', [png('shapes.png')]);
    const { store, folder } = storeOf(conversation);
    store.changed(true);
    await store.flush();
    // A second window on the same storage, opened before the first asked: empty, and closing.
    const other = storeOf(new Conversation(), {}, folder);
    await other.store.flush();
    assert.equal((await reloaded(folder)).turns.length, 1);
    // A store this version cannot read is left as it is by a window that changed nothing.
    const index = path.join(folder, INDEX_FILE);
    fs.writeFileSync(index, JSON.stringify({ version: 99, turns: [] }));
    const unread = storeOf(new Conversation(), {}, folder);
    assert.deepEqual(await unread.store.load(), []);
    await unread.store.flush();
    assert.equal(JSON.parse(fs.readFileSync(index, 'utf8')).version, 99);
  });

  test("two windows on one saved chat keep each other's turns, in the order they were saved", async () => {
    const conversation = new Conversation();
    answered(conversation, 'zero', [png('shapes.png')]);
    const { store, folder } = storeOf(conversation);
    store.changed(true);
    await store.flush();
    // Two windows without a folder share the global storage: both open the chat saved so far.
    const first = await reloaded(folder);
    const second = await reloaded(folder);
    await askedIn(first, 'one');
    await askedIn(second, 'two', [png('diagram.png')]);
    await askedIn(first, 'three');
    await askedIn(second, 'four');
    const { conversation: after, turns } = await reloaded(folder);
    assert.deepEqual(
      turns.map(({ question }) => question),
      ['zero', 'one', 'two', 'three', 'four'],
    );
    // The other window's screenshot is kept by this window's saves too.
    assert.match(turns[2].images[0].src!, /^data:image\/png/);
    assert.deepEqual(after.startTurn('five')!.inputs, [png('diagram.png')]);
    // New Chat in one window drops the turns it showed; the other window's, which it never showed, stay.
    await askedIn(second, 'six');
    first.conversation.clear();
    first.store.changed(true);
    await first.store.flush();
    assert.deepEqual(
      (await reloaded(folder)).turns.map(({ question }) => question),
      ['two', 'four', 'six'],
    );
  });

  test('two windows saving at the same instant, again and again, lose neither turns nor images', async () => {
    const { folder } = storeOf(new Conversation());
    const windows = [await reloaded(folder), await reloaded(folder)];
    const asked: string[] = [];
    for (let round = 0; round < 10; round++) {
      // Each question with a screenshot of its own: the same image with bytes of its own after its end.
      const saves = windows.map((window, i) => {
        const question = `window ${i}, round ${round}`;
        asked.push(question);
        return askedIn(window, question, [uniquePng(question)]);
      });
      await Promise.all(saves);
      const { turns } = await reloaded(folder);
      assert.deepEqual(new Set(turns.map(({ question }) => question)), new Set(asked), `round ${round}`);
      assert.ok(
        turns.every(({ images }) => images.every((image) => !image.notKept)),
        `round ${round}: every screenshot kept`,
      );
    }
  });

  test("a save waits a bounded time for another window's lock, then saves with one log line; a dead window's lock is taken over", async () => {
    const conversation = new Conversation();
    const { store, folder, warnings } = storeOf(conversation);
    fs.mkdirSync(path.dirname(folder), { recursive: true });
    // A window that died mid-save (its pid is gone) left its lock: taken over at once, without a word.
    const lockOf = (pid: number | undefined, token: string) =>
      fs.writeFileSync(`${folder}.lock`, JSON.stringify({ pid, host: os.hostname(), since: '', token }));
    lockOf(spawnSync(process.execPath, ['-e', '']).pid, 'dead');
    await askedIn({ conversation, store }, 'one', [png('shapes.png')]);
    assert.deepEqual(warnings, []);
    // A live window (this process) that never lets go, as on a hung disk, holds the save up SAVE_LOCK_WAIT_MS only.
    lockOf(process.pid, 'live');
    try {
      await askedIn({ conversation, store }, 'two');
    } finally {
      fs.rmSync(`${folder}.lock`);
    }
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /another window held .*chat\.lock for 2 s; the chat was saved without it/);
    assert.deepEqual(
      (await reloaded(folder)).turns.map(({ question }) => question),
      ['one', 'two'],
    );
  });

  /** What a process of its own logs loading and saving the chat in `folder` (see chatSaveChild.ts). */
  function savedInChild(folder: string, image: string | undefined, options: { fileSizeKiB?: number; uid?: number }) {
    const child = [process.execPath, '--import', 'tsx', SAVE_CHILD, folder, ...(image ? [image] : [])];
    const command =
      options.fileSizeKiB === undefined
        ? child
        : ['bash', '-c', 'ulimit -f "$0" && exec "$@"', String(options.fileSizeKiB), ...child];
    const stdout = execFileSync(command[0], command.slice(1), {
      encoding: 'utf8',
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    });
    return JSON.parse(stdout) as { warnings: string[]; questions: string[] };
  }

  for (const { what, fileSizeKiB, image, refused } of [
    { what: "the save's lock", fileSizeKiB: 0, image: undefined, refused: /chat\.lock cannot be written: / },
    // The lock fits in 1 KiB, the screenshot does not.
    {
      what: 'an image',
      fileSizeKiB: 1,
      image: path.join(IMAGES, 'screenshot.png'),
      refused: /chat cannot be written: /,
    },
  ])
    test(
      `a disk that refuses ${what} is one log line in the chat's words; the chat stays, and no lock is left`,
      { skip: process.platform === 'win32' ? 'needs bash and ulimit' : false },
      () => {
        const folder = storeFolder();
        // No file may grow past fileSizeKiB (ulimit -f): the write fails with EFBIG, as on a disk that refuses it.
        const { warnings, questions } = savedInChild(folder, image, { fileSizeKiB });
        assert.equal(warnings.length, 1, 'two saves, one line');
        assert.match(warnings[0], /^could not save the chat in \S+: /);
        assert.match(warnings[0], refused);
        assert.match(warnings[0], /\(EFBIG\); raise the limit, and the next change saves the chat$/);
        assert.doesNotMatch(warnings[0], /file too large|download/i, "Node's words, or a download's");
        assert.deepEqual(questions, image ? ['what is this?'] : [], 'the conversation is kept');
        assert.equal(fs.existsSync(`${folder}.lock`), false, 'no lock left to hold off the next save');
      },
    );

  test(
    'a saved chat this user may not read nor write is one log line each for its load, save and deletion',
    { skip: process.platform === 'win32' ? 'needs POSIX permissions' : false },
    async (t) => {
      const conversation = new Conversation();
      answered(conversation, 'one', [png('shapes.png')]);
      const { store, folder } = storeOf(conversation);
      await store.save(conversation.records());
      const before = files(folder);
      // Root reads and writes whatever the modes say: as root, the child runs as the unprivileged user nobody.
      const uid = process.getuid?.() === 0 ? 65534 : undefined;
      // Others may reach the folder and write the lock beside it, but neither write into it nor read its index.
      fs.chmodSync(path.dirname(folder), 0o777);
      fs.chmodSync(path.join(folder, INDEX_FILE), 0o000);
      fs.chmodSync(folder, 0o555);
      t.after(() => fs.chmodSync(folder, 0o755));
      const unreadable = `the chat saved in ${folder} could not be read, so it starts empty: ${folder} cannot be read (EACCES); check the folder's permissions`;
      const unwritable = `could not save the chat in ${folder}: ${folder} cannot be written (EACCES); check the folder's permissions, and the next change saves the chat`;
      // A question asked, saved twice; then New Chat, whose save deletes the folder.
      assert.deepEqual(savedInChild(folder, path.join(IMAGES, 'screenshot.png'), { uid }), {
        warnings: [unreadable, unwritable],
        questions: ['what is this?'],
      });
      assert.deepEqual(savedInChild(folder, undefined, { uid }), { warnings: [unreadable, unwritable], questions: [] });
      assert.deepEqual(files(folder), before, 'the saved chat is as it was');
    },
  );

  test('a file where a folder belongs, or a folder where a file belongs, is one log line naming it and what to do', async () => {
    /** What loading, then saving, a chat with a screenshot in `folder` logs, where `inTheWay` was made first. */
    const logged = async (folder: string, inTheWay: { file: string } | { folder: string }) => {
      if ('file' in inTheWay) fs.writeFileSync(inTheWay.file, '');
      else fs.mkdirSync(inTheWay.folder, { recursive: true });
      const conversation = new Conversation();
      answered(conversation, 'one', [png('shapes.png')]);
      const { store, warnings } = storeOf(conversation, {}, folder);
      await store.load();
      store.changed(true);
      await store.flush();
      return warnings;
    };
    const unreadable = (folder: string, why: string) =>
      `the chat saved in ${folder} could not be read, so it starts empty: ${why}`;
    const unsaved = (folder: string, why: string) =>
      `could not save the chat in ${folder}: ${why}, and the next change saves the chat`;

    // The storage folder is a file: the load runs into it (ENOTDIR), the save's mkdir finds it (EEXIST).
    const storage = path.join(temporary('ficoco-chat-store-'), 'storage');
    const isFile = `${storage} is a file, not a folder: move it away`;
    assert.deepEqual(await logged(path.join(storage, 'chat'), { file: storage }), [
      unreadable(path.join(storage, 'chat'), isFile),
      unsaved(path.join(storage, 'chat'), isFile),
    ]);
    // The chat's folder itself is a file.
    const chat = storeFolder();
    const chatIsFile = `${chat} is a file, not a folder: move it away`;
    assert.deepEqual(await logged(chat, { file: chat }), [unreadable(chat, chatIsFile), unsaved(chat, chatIsFile)]);
    // A file further up is named, not the folder below it that the load or the save looked for (ENOTDIR).
    const deeper = path.join(storage, 'workspace', 'chat');
    assert.deepEqual(await logged(deeper, { file: storage }), [unreadable(deeper, isFile), unsaved(deeper, isFile)]);

    // conversation.json, the screenshot's file and the save's lock are folders: no file can be put there (EISDIR).
    const shapes = `${createHash('sha256')
      .update(fs.readFileSync(path.join(IMAGES, 'shapes.png')))
      .digest('hex')}.png`;
    for (const blocked of [
      (folder: string) => path.join(folder, INDEX_FILE),
      (folder: string) => path.join(folder, shapes),
      (folder: string) => `${folder}.lock`,
    ]) {
      const folder = storeFolder();
      const warnings = await logged(folder, { folder: blocked(folder) });
      assert.equal(warnings.at(-1), unsaved(folder, `${blocked(folder)} is a folder, not a file: move it away`));
    }
  });

  test('a store folder that is a link is neither read nor written through', async () => {
    const conversation = new Conversation();
    answered(conversation, 'which box?', [png('shapes.png')]);
    const elsewhere = temporary('ficoco-chat-elsewhere-');
    await storeOf(conversation, {}, elsewhere).store.save(conversation.records());
    const folder = storeFolder();
    fs.mkdirSync(path.dirname(folder), { recursive: true });
    fs.symlinkSync(elsewhere, folder);
    const { turns, warnings } = await reloaded(folder);
    assert.deepEqual(turns, []);
    const isLink = `${folder} is a link, not a folder: move it away`;
    assert.deepEqual(warnings, [`the chat saved in ${folder} could not be read, so it starts empty: ${isLink}`]);
    const before = files(elsewhere);
    const { store, warnings: saving } = storeOf(conversation, {}, folder);
    store.changed(true);
    await store.flush();
    assert.deepEqual(saving, [`could not save the chat in ${folder}: ${isLink}, and the next change saves the chat`]);
    assert.deepEqual(files(elsewhere), before);
  });

  test('the newest turns are kept, by count and by the size of their text', async () => {
    const conversation = new Conversation();
    for (const question of ['one', 'two', 'three']) answered(conversation, question, [png('shapes.png')]);
    const { store, folder } = storeOf(conversation, { turns: 2 });
    await store.save(conversation.records());
    assert.deepEqual(
      (await reloaded(folder)).turns.map(({ question }) => question),
      ['two', 'three'],
    );
    const written = JSON.parse(fs.readFileSync(path.join(folder, INDEX_FILE), 'utf8')) as { turns: unknown[] };
    const oneTurn = Buffer.byteLength(JSON.stringify(written.turns[1])) + 64 + 8;
    const { store: small, folder: smallFolder } = storeOf(conversation, { textBytes: oneTurn });
    await small.save(conversation.records());
    assert.deepEqual(
      (await reloaded(smallFolder)).turns.map(({ question }) => question),
      ['three'],
    );
    assert.ok(fs.statSync(path.join(smallFolder, INDEX_FILE)).size <= oneTurn);
  });

  test("saves run beside the extension host's other work, one after another: the last change ends on disk", async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    const { store, folder } = storeOf(conversation);
    store.changed(true);
    // Nothing is written while the caller waits: the extension host's thread goes on at once.
    assert.equal(fs.existsSync(folder), false);
    // New Chat right behind it is written after that save, never overtaken by it.
    conversation.clear();
    store.changed(true);
    await store.flush();
    assert.equal(fs.existsSync(folder), false);
    // flush waits for a save in flight (deactivate waits for it so).
    answered(conversation, 'two', [png('diagram.png')]);
    store.changed(true);
    await store.flush();
    assert.deepEqual(
      (await reloaded(folder)).turns.map(({ question }) => question),
      ['two'],
    );
  });

  test('New Chat deletes the saved chat and its images; the next reload is empty', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    const { store, folder, warnings } = storeOf(conversation);
    store.changed(true);
    await store.flush();
    assert.equal(files(folder).length, 2);
    conversation.clear();
    store.changed(true);
    await store.flush();
    assert.equal(fs.existsSync(folder), false);
    assert.deepEqual((await reloaded(folder)).turns, []);
    assert.deepEqual(warnings, []);
  });

  test('saves leave no temporary files and remove the images no turn uses', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    const { store, folder } = storeOf(conversation);
    await store.save(conversation.records());
    const stray = path.join(folder, `${'0'.repeat(64)}.png`);
    fs.writeFileSync(stray, 'left over');
    const foreign = path.join(folder, 'notes.txt');
    fs.writeFileSync(foreign, 'not ours');
    answered(conversation, 'two', [png('diagram.png')]);
    await store.save(conversation.records());
    assert.equal(fs.existsSync(stray), false);
    assert.equal(fs.existsSync(foreign), true, 'only files named as images are deleted');
    assert.deepEqual(
      files(folder).filter((name) => name.endsWith('.tmp')),
      [],
    );
    assert.equal(files(folder).filter((name) => name.endsWith('.png')).length, 2);
  });

  test('a save that fails is logged once, never thrown', async () => {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    const parent = temporary('ficoco-chat-store-');
    fs.writeFileSync(path.join(parent, 'file'), '');
    const { store, warnings } = storeOf(conversation, {}, path.join(parent, 'file', 'chat'));
    store.changed(true);
    await store.flush();
    store.changed(true);
    await store.flush();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /could not save the chat/);
  });
});

describe('a saved chat edited or cut short', () => {
  /** A store saved with one answered turn about shapes.png, and the path of that image's file. */
  async function saved() {
    const conversation = new Conversation();
    answered(conversation, 'one', [png('shapes.png')]);
    const { store, folder } = storeOf(conversation);
    await store.save(conversation.records());
    const image = files(folder).find((name) => name.endsWith('.png'))!;
    return { folder, image: path.join(folder, image), index: path.join(folder, INDEX_FILE) };
  }
  const rewrite = (index: string, change: (store: { turns: { turn: Turn; files: unknown[] }[] }) => unknown) => {
    const store = JSON.parse(fs.readFileSync(index, 'utf8')) as { turns: { turn: Turn; files: unknown[] }[] };
    fs.writeFileSync(index, JSON.stringify(change(store) ?? store));
  };

  test('an index that does not parse, or does not say what a saved chat says, gives an empty chat and one log line', async () => {
    const cases: [string, (index: string) => void, RegExp][] = [
      ['cut short', (index) => fs.writeFileSync(index, fs.readFileSync(index, 'utf8').slice(0, 40)), /JSON/],
      ['another version', (index) => rewrite(index, (store) => ({ ...store, version: 2 })), /version is 2/],
      [
        'a reply status it does not know',
        (index) => rewrite(index, (store) => void (store.turns[0].turn.answer.status = 'finished' as 'done')),
        /turns\[0\]\.turn\.answer\.status/,
      ],
      [
        'a script URL as an image',
        (index) => rewrite(index, (store) => void (store.turns[0].turn.images[0].src = 'javascript:alert(1)')),
        /not a data:image URL/,
      ],
      [
        'more files than images',
        (index) => rewrite(index, (store) => void store.turns[0].files.push(null)),
        /1 images and 2 files/,
      ],
      [
        'more images than a question carries',
        (index) =>
          rewrite(index, (store) => {
            const [turn] = store.turns;
            turn.turn.images = Array.from({ length: 9 }, (_, i) => ({ name: `${i}.png` }));
            turn.files = turn.turn.images.map(() => null);
          }),
        /turns\[0\] has 9 images; a question carries 8/,
      ],
      [
        'two turns with one id',
        (index) => rewrite(index, (store) => void store.turns.push(store.turns[0])),
        /turns\[1\] has the id of an earlier turn/,
      ],
      ['not JSON at all', (index) => fs.writeFileSync(index, '\u0000\u0001'), /JSON/],
      ['a folder', (index) => (fs.rmSync(index), fs.mkdirSync(index)), /not a plain file/],
    ];
    for (const [what, spoil, reason] of cases) {
      const { folder, index } = await saved();
      spoil(index);
      const { turns, warnings } = await reloaded(folder);
      assert.deepEqual(turns, [], what);
      assert.equal(warnings.length, 1, what);
      assert.match(warnings[0], /could not be read, so it starts empty/, what);
      assert.match(warnings[0], reason, what);
    }
  });

  test('file names that leave the folder, or are not saved images, are refused whole', async () => {
    for (const file of ['../../../etc/passwd', '/etc/passwd', `../${'a'.repeat(64)}.png`, 'conversation.json', 7]) {
      const { folder, index } = await saved();
      rewrite(index, (store) => void (store.turns[0].files[0] = file));
      const { turns, warnings } = await reloaded(folder);
      assert.deepEqual(turns, [], String(file));
      assert.match(warnings[0], /turns\[0\]\.files\[0\] is not the name of a saved image/);
    }
    assert.throws(() => confined('/storage/chat', '../x.png'), /not inside/);
    assert.throws(() => confined('/storage/chat', '/etc/passwd'), /not inside/);
    assert.throws(() => confined('/storage/chat', '.'), /not inside/);
    assert.equal(confined('/storage/chat', 'a.png'), path.resolve('/storage/chat/a.png'));
  });

  test('an index larger than the cap is not read', async () => {
    const { folder, index } = await saved();
    const { turns, warnings } = await reloaded(folder, { textBytes: fs.statSync(index).size - 1 });
    assert.deepEqual(turns, []);
    assert.match(warnings[0], /conversation\.json has \d+ bytes, more than \d+/);
  });

  test('an image file changed, swapped for a link, a pipe, a folder or a huge file comes back as "not kept"; the text stays', async () => {
    const outside = path.join(temporary('ficoco-chat-outside-'), 'secret.png');
    fs.copyFileSync(path.join(IMAGES, 'shapes.png'), outside);
    const spoilers: [string, (image: string, index: string) => void, RegExp][] = [
      ['changed', (image) => fs.writeFileSync(image, fs.readFileSync(path.join(IMAGES, 'diagram.png'))), /was changed/],
      ['a link', (image) => (fs.rmSync(image), fs.symlinkSync(outside, image)), /is a link/],
      ['a pipe', (image) => (fs.rmSync(image), execFileSync('mkfifo', [image])), /not a plain file/],
      ['a folder', (image) => (fs.rmSync(image), fs.mkdirSync(image)), /not a plain file/],
      ['huge', (image) => fs.truncateSync(image, 40 * 1024 * 1024), /has 41943040 bytes, more than/],
      ['gone', (image) => fs.rmSync(image), /is gone/],
      [
        'not a PNG, though named for its own hash',
        (image, index) => {
          const bytes = Buffer.from('not an image at all');
          const name = `${createHash('sha256').update(bytes).digest('hex')}.png`;
          fs.writeFileSync(path.join(path.dirname(image), name), bytes);
          rewrite(index, (store) => void (store.turns[0].files[0] = name));
        },
        /not an image/,
      ],
    ];
    for (const [what, spoil, reason] of spoilers) {
      const { folder, image, index } = await saved();
      spoil(image, index);
      const { conversation, turns, warnings } = await reloaded(folder);
      assert.equal(turns.length, 1, what);
      assert.equal(turns[0].answer.text, 'one!', what);
      assert.deepEqual(turns[0].images, [{ name: 'shapes.png', notKept: true }], what);
      assert.equal(conversation.startTurn('again?'), undefined, what);
      assert.equal(warnings.length, 1, what);
      assert.match(warnings[0], reason, what);
    }
  });

  test('no saved chat is an empty one, and says nothing', async () => {
    const { turns, warnings } = await reloaded(storeFolder());
    assert.deepEqual(turns, []);
    assert.deepEqual(warnings, []);
  });
});
