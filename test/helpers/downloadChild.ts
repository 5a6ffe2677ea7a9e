/**
 * One model download in a process of its own, for the tests of two processes downloading the same model:
 * `node --import tsx downloadChild.ts ENDPOINT ROOT wait|fail`. Prints one JSON line per event:
 * {"waiting":true} when it finds another download running, then {"folder":…} or {"error":…,"kind":…}.
 */
import { FicocoError } from '../../src/common/errors';
import { downloadModel } from '../../src/hub/download';
import { planDownload } from '../../src/hub/downloadPlan';

const [endpoint, root, whenBusy] = process.argv.slice(2);
const say = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);

planDownload({ repo: 'ficoco/tiny-llava-screens', revision: 'main', endpoint, root })
  .then((plan) =>
    downloadModel(plan, {
      whenBusy: whenBusy === 'wait' ? 'wait' : 'fail',
      retryDelayMs: 10,
      onWait: () => say({ waiting: true }),
    }),
  )
  .then(
    (folder) => say({ folder }),
    (error: unknown) =>
      say({
        error: error instanceof Error ? error.message : String(error),
        kind: error instanceof FicocoError ? error.kind : 'internal',
      }),
  );
