/** A child process of quantizeWorkers.ts: encodes each layer it is sent and writes it into the cache file. */
import * as fs from 'node:fs';
import { FicocoError } from '../../common/errors';
import { encodeForms, refuseNonFinite, type LayerForms } from './quantizedCache';
import type { EncodeJob, WorkerReply } from './quantizeWorkers';
import { readFloat32 } from './safetensors';
import { writeWhole } from './safetensorsWriter';

process.on('message', (job: EncodeJob<LayerForms>) => process.send!(encodeAndWrite(job)));

function encodeAndWrite({ weight, forms, file, offsets }: EncodeJob<LayerForms>): WorkerReply {
  let encoded: ReturnType<typeof encodeForms>;
  try {
    const [rows, cols] = weight.shape;
    const values = readFloat32(weight);
    refuseNonFinite(values, weight);
    encoded = encodeForms(values, rows, cols, forms);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { error: { message, kind: error instanceof FicocoError ? error.kind : undefined } };
  }
  try {
    const fd = fs.openSync(file, 'r+');
    try {
      for (const [suffix, offset] of Object.entries(offsets)) {
        const tensor = encoded[suffix];
        writeWhole(fd, new Uint8Array(tensor.buffer, tensor.byteOffset, tensor.byteLength), offset);
      }
    } finally {
      fs.closeSync(fd);
    }
  } catch (error) {
    // Told apart from a layer that cannot be read: a full disk or a file-size limit has the cache's own remedy.
    const { message, code } = error as NodeJS.ErrnoException;
    return { writeFailed: { message, code } };
  }
  return { done: true };
}
