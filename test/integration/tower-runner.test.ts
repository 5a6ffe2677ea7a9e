/**
 * How TowerRunner asks for its sessions: a decoder in one piece runs back to back (its threads spin between steps), a
 * decoder cut at a hook or a vision tower does not; a vision segment after a hook plans no memory pattern; which plans'
 * sessions it keeps.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { parseModelConfig } from '../../src/engine/models/registry';
import { SessionFactory, type SessionWorkingSet } from '../../src/engine/runtime/provider';
import { TowerRunner } from '../../src/engine/runtime/towerRunner';
import { WeightIndex } from '../../src/engine/weights/safetensors';
import type { ElemType } from '../../src/engine/graph/builder';

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'tiny-llava-llama');

/** A real factory that notes how each session was asked for. */
class RecordingFactory extends SessionFactory {
  readonly asked: SessionWorkingSet[] = [];
  override create(graphFor: (computeType: ElemType) => Uint8Array, workingSet: SessionWorkingSet = {}) {
    this.asked.push(workingSet);
    return super.create(graphFor, workingSet);
  }
}

function fixtureTowers() {
  const weights = WeightIndex.open(FIXTURE);
  const config = parseModelConfig(
    JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8')),
    'config.json',
  );
  return { weights, towers: config.build(weights) };
}

test('only a whole decoder runs back to back; only vision segments after a hook take shapes that vary', async () => {
  const { weights, towers } = fixtureTowers();
  const plan = async (takesPrompt: boolean, tower: typeof towers.decoder, sites: Map<string, object>) => {
    const factory = new RecordingFactory({ weightsFolder: path.dirname(weights.files[0]), candidates: ['cpu'] });
    const runner = new TowerRunner(tower, factory, takesPrompt);
    await runner.segments(sites);
    await runner.release();
    return factory.asked;
  };
  assert.deepEqual(await plan(true, towers.decoder, new Map()), [{ backToBack: true, shapesVary: false }]);
  assert.deepEqual(await plan(true, towers.decoder, new Map([['llm:1', { attention: 'probs' }]])), [
    { backToBack: false, shapesVary: false },
    { backToBack: false, shapesVary: false },
  ]);
  assert.deepEqual(await plan(false, towers.vision, new Map()), [{ backToBack: false, shapesVary: false }]);
  // The first segment takes the image's pixels, of one shape; the next ones as many tokens as the hook before left.
  assert.deepEqual(await plan(false, towers.vision, new Map([['vision:0', { attention: 'logits' }]])), [
    { backToBack: false, shapesVary: false },
    { backToBack: false, shapesVary: true },
  ]);
});

test('the whole tower and the latest plan with hooks stay loaded; a plan before that is released', async () => {
  const { weights, towers } = fixtureTowers();
  const factory = new RecordingFactory({ weightsFolder: path.dirname(weights.files[0]), candidates: ['cpu'] });
  const runner = new TowerRunner(towers.decoder, factory, true);
  const created = async (sites: Map<string, object>) => {
    const before = factory.asked.length;
    await runner.segments(sites);
    return factory.asked.length - before;
  };
  const cutAt = (site: string) => new Map([[site, { attention: 'probs' }]]);
  try {
    assert.equal(await created(new Map()), 1);
    assert.equal(await created(cutAt('llm:1')), 2);
    assert.equal(await created(cutAt('llm:0')), 2, 'another cut: its own segments');
    assert.equal(await created(new Map()), 0, 'the whole decoder was kept');
    assert.equal(await created(cutAt('llm:0')), 0, 'the latest cut was kept');
    assert.equal(await created(cutAt('llm:1')), 2, 'the older plan was released');
  } finally {
    await runner.release();
  }
});
