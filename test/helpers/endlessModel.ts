import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.join(__dirname, '..', '..');

/**
 * A copy of the small random fixture model that never stops by itself: room for 8192 positions and an
 * end-of-sequence logit pinned at 0 (its lm_head row zeroed) while some of the other 127 random logits are
 * positive, so greedy decoding runs to ficoco.maxNewTokens — long enough to press Stop.
 */
export function writeEndlessModel(): string {
  const source = path.join(ROOT, 'test', 'fixtures', 'tiny-llava-llama');
  const target = fs.mkdtempSync(path.join(os.tmpdir(), 'ficoco-endless-model-'));
  const modelFiles = fs.readdirSync(source).filter((file) => !file.startsWith('reference'));
  for (const file of modelFiles) fs.copyFileSync(path.join(source, file), path.join(target, file));
  const configFile = path.join(target, 'config.json');
  const config = JSON.parse(fs.readFileSync(configFile, 'utf8')) as {
    text_config: { max_position_embeddings: number; eos_token_id: number };
  };
  config.text_config.max_position_embeddings = 8192;
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  const weightsFile = path.join(target, 'model.safetensors');
  const weights = fs.readFileSync(weightsFile);
  const headerLength = Number(weights.readBigUInt64LE(0));
  const header = JSON.parse(weights.subarray(8, 8 + headerLength).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const lmHead = header['language_model.lm_head.weight'];
  assert.equal(lmHead.dtype, 'F32');
  const rowBytes = lmHead.shape[1] * 4;
  const rowStart = 8 + headerLength + lmHead.data_offsets[0] + config.text_config.eos_token_id * rowBytes;
  weights.fill(0, rowStart, rowStart + rowBytes);
  fs.writeFileSync(weightsFile, weights);
  return target;
}
