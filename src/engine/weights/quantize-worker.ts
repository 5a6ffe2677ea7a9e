/** A child process of quantizeWorkers.ts: encodes each layer it is sent and writes it into the cache file. */
import * as fs from 'node:fs';
import { FicocoError } from '../../common/errors';
import { encodeForms, refuseNonFinite, type LayerForms } from './quantizedCache';
import type { EncodeJob, WorkerReply } from './quantizeWorkers';
import { readFloat32 } from './safetensors';
import { writeWhole } from './safetensorsWriter';

process.on('message', ({ weight, forms, file, offsets }: EncodeJob<LayerForms>) => {
  let reply: WorkerReply;
  try {
    const [rows, cols] = weight.shape;
    const values = readFloat32(weight);
    refuseNonFinite(values, weight);
    const encoded = encodeForms(values, rows, cols, forms);
    const fd = fs.openSync(file, 'r+');
    try {
      for (const [suffix, offset] of Object.entries(offsets)) {
        const tensor = encoded[suffix];
        writeWhole(fd, new Uint8Array(tensor.buffer, tensor.byteOffset, tensor.byteLength), offset);
      }
    } finally {
      fs.closeSync(fd);
    }
    reply = { done: true };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    reply = { error: { message, kind: error instanceof FicocoError ? error.kind : undefined } };
  }
  process.send!(reply);
});
