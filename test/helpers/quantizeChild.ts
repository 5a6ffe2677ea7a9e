/**
 * One int4 load's cache in a process of its own, for the tests of a model folder the process cannot write (as root,
 * the test runs it as another user) and of a file size limit: `node --import tsx quantizeChild.ts MODEL_DIR CACHE_DIR`.
 * Requests every 2-D tensor; prints {"file":…,"layers":…} or {"error":…}.
 */
import { WeightQuantizer } from '../../src/engine/weights/quantizedCache';
import { WeightIndex } from '../../src/engine/weights/safetensors';

const [modelDir, cacheDir] = process.argv.slice(2);
const index = WeightIndex.open(modelDir);
const quantizer = new WeightQuantizer(index, 'int4', { onCpu: true, cacheDir });
let layers = 0;
for (const name of index.names()) if (index.get(name).shape.length === 2) quantizer.request(index.get(name), 'any');
quantizer
  .materialize((done) => (layers = done))
  .then(
    (file) => process.stdout.write(`${JSON.stringify({ file, layers })}\n`),
    (error: unknown) => process.stdout.write(`${JSON.stringify({ error: String(error) })}\n`),
  );
