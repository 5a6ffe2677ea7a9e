/**
 * Loads and saves the chat in a process of its own, for the tests of a disk that refuses the store:
 * `node --import tsx chatSaveChild.ts FOLDER [IMAGE]`, run where no file may grow (ulimit -f) or as a user who may not
 * write FOLDER. With IMAGE (a PNG), a question about it is asked and saved twice; without, the chat is saved empty, as
 * New Chat does. Prints the lines the store logged and the questions the conversation still holds, as one JSON object.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Conversation } from '../../src/extension/conversation';
import { ConversationStore } from '../../src/extension/conversationStore';

const [folder, image] = process.argv.slice(2);
const conversation = new Conversation();
const warnings: string[] = [];
const store = new ConversationStore(folder, () => conversation.records(), { warn: (line) => warnings.push(line) });

async function main(): Promise<void> {
  conversation.restore(await store.load());
  if (image) {
    conversation.addPending([
      { name: path.basename(image), dataBase64: fs.readFileSync(image).toString('base64'), format: 'png' },
    ]);
    const { id } = conversation.startTurn('what is this?')!.turn;
    conversation.appendText(id, 'answer', 'a screenshot');
    store.changed(true);
    await store.flush();
  }
  store.changed(true);
  await store.flush();
  const questions = conversation.records().map(({ turn }) => turn.question);
  process.stdout.write(`${JSON.stringify({ warnings, questions })}\n`);
}

void main();
