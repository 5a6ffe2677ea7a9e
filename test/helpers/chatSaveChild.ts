/**
 * Saves an empty chat in a process of its own, for the tests of a disk that refuses the save:
 * `node --import tsx chatSaveChild.ts FOLDER`, run where no file may grow (ulimit -f 0). Prints the lines the store
 * logged, as one JSON array.
 */
import { ConversationStore } from '../../src/extension/conversationStore';

const [folder] = process.argv.slice(2);
const warnings: string[] = [];
const store = new ConversationStore(folder, () => [], { warn: (line) => warnings.push(line) });
store.changed(true);
void store.flush().then(() => process.stdout.write(`${JSON.stringify(warnings)}\n`));
