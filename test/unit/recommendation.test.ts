/**
 * What `auto` stands for: a model folder's measured recommendation, else the published setting for its
 * architecture, else the default — and a recommendation file that cannot be used is named, not obeyed.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { chooseSetting } from '../../src/cli/tune';
import {
  RECOMMENDATION_FILE,
  Recommendation,
  TunedSetting,
  chooseReduction,
  writeRecommendation,
} from '../../src/engine/recommendation';
import { parseModelConfig } from '../../src/engine/models/registry';
import type { ModelShape } from '../../src/reduction/method';
import { temporaryFolders } from '../helpers/tempFolders';

const temporaryFolder = temporaryFolders();

const SHAPE: ModelShape = {
  visionLayers: 6,
  textLayers: 4,
  visualTokens: 144,
  grid: { rows: 12, cols: 12 },
  hasClassToken: true,
};
const PUBLISHED = { method: 'tome', budget: { tokens: 64 }, source: 'a paper on this model' };

const row = (method: string, budget: string, accuracy: number, speedup: number): TunedSetting => ({
  method,
  budget,
  keptTokens: Number(budget) || 144,
  accuracy,
  speedup,
});

const RECOMMENDATION: Omit<Recommendation, 'format'> = {
  method: 'divprune',
  budget: '96',
  params: {},
  bar: 0.95,
  fullAccuracy: 0.9,
  accuracy: 0.87,
  speedup: 1.2,
  data: { file: 'bench/eval-set/data.jsonl', items: 886 },
  provider: 'cpu',
  machine: 'a test',
  measuredAt: '2026-12-02T00:00:00.000Z',
  command: ['ficoco', 'tune'],
  table: [row('none', 'all', 0.9, 1), row('divprune', '96', 0.87, 1.2)],
};

function folderWith(content: string | undefined): string {
  const dir = temporaryFolder('ficoco-recommendation-');
  if (content !== undefined) fs.writeFileSync(path.join(dir, RECOMMENDATION_FILE), content);
  return dir;
}

describe('choosing the setting ficoco tune recommends', () => {
  const full = row('none', 'all', 0.9, 1);

  test('the fastest setting that keeps the bar', () => {
    const rows = [full, row('a', '96', 0.88, 1.3), row('b', '64', 0.86, 1.6), row('c', '32', 0.7, 2.5)];
    assert.equal(chooseSetting(rows, 0.95).method, 'b', '0.86 ≥ 0.95 × 0.9 = 0.855');
    assert.equal(chooseSetting(rows, 0.97).method, 'a', 'a higher bar');
    assert.equal(chooseSetting(rows, 0.5).method, 'c');
  });

  test('every token when no reduction keeps the bar, or none is measurably faster', () => {
    assert.equal(chooseSetting([full, row('a', '96', 0.8, 1.5)], 0.95).method, 'none');
    assert.equal(chooseSetting([full, row('a', '96', 0.9, 1.03)], 0.95).method, 'none', 'within the noise');
    assert.equal(chooseSetting([full, row('a', '96', 0.9, 0.7)], 0.95).method, 'none', 'slower');
  });
});

describe('what auto stands for on a model', () => {
  test('the recommendation file, with its evidence', () => {
    const dir = folderWith(undefined);
    writeRecommendation(path.join(dir, RECOMMENDATION_FILE), RECOMMENDATION);
    const choice = chooseReduction(dir, SHAPE, PUBLISHED);
    assert.deepEqual(
      { method: choice.method, budget: choice.budget, rule: choice.rule },
      { method: 'divprune', budget: { tokens: 96 }, rule: 'model' },
    );
    assert.match(choice.why, /ficoco tune.*87\.0 % accuracy against 90\.0 %.*886 items of data\.jsonl, 1\.20×/);
  });

  test('a recommendation of every token is followed and explained', () => {
    const dir = folderWith(JSON.stringify({ format: 1, ...RECOMMENDATION, method: 'none', budget: 'all' }));
    const choice = chooseReduction(dir, SHAPE, PUBLISHED);
    assert.equal(choice.method, 'none');
    assert.equal(choice.rule, 'model');
    assert.match(choice.why, /no method and budget kept 95 % of full-token accuracy while being measurably faster/);
  });

  test('without a file: the published setting, else the default', () => {
    const dir = folderWith(undefined);
    assert.equal(chooseReduction(dir, SHAPE, PUBLISHED).rule, 'published');
    assert.match(chooseReduction(dir, SHAPE, PUBLISHED).why, /a paper on this model/);
    const fallback = chooseReduction(dir, SHAPE, undefined);
    assert.deepEqual(
      { method: fallback.method, budget: fallback.budget, rule: fallback.rule },
      { method: 'ficoco-v', budget: { ratio: 0.11 }, rule: 'default' },
    );
  });

  test('a file that cannot be used is ignored with its reason, and the next rule applies', () => {
    const cases: [string, RegExp][] = [
      ['{"format": 1, "method": ', /not valid JSON/],
      ['[1, 2]', /not a JSON object/],
      [JSON.stringify({ ...RECOMMENDATION, format: 2 }), /format is 2; this version reads format 1/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, method: 'magic' }), /Unknown reduction method "magic"/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, budget: '200' }), /more than the 144 this model gives/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, budget: 'lots' }), /budget "lots" is not a budget/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, params: { k: 1 } }), /divprune has no parameter "k"/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, accuracy: 7 }), /accuracy is not a share/],
      [JSON.stringify({ format: 1, ...RECOMMENDATION, data: {} }), /data\.items is not a count/],
      [' '.repeat((1 << 20) + 1), /more than a recommendation is/],
    ];
    for (const [content, reason] of cases) {
      const choice = chooseReduction(folderWith(content), SHAPE, PUBLISHED);
      assert.equal(choice.rule, 'published', content.slice(0, 40));
      assert.match(
        choice.why,
        new RegExp(`^${RECOMMENDATION_FILE} in the model folder was ignored: .*${reason.source}`),
      );
      assert.match(choice.why, /Published for this model: a paper on this model\.$/);
    }
  });

  test('a folder or a link in its place is not read', () => {
    const folder = folderWith(undefined);
    fs.mkdirSync(path.join(folder, RECOMMENDATION_FILE));
    assert.match(chooseReduction(folder, SHAPE, undefined).why, /ignored: it is not a plain file/);
    const linked = folderWith(undefined);
    const elsewhere = path.join(temporaryFolder('ficoco-elsewhere-'), 'r.json');
    writeRecommendation(elsewhere, RECOMMENDATION);
    fs.symlinkSync(elsewhere, path.join(linked, RECOMMENDATION_FILE));
    assert.equal(chooseReduction(linked, SHAPE, undefined).rule, 'default');
  });
});

describe('the published setting', () => {
  const llava15 = (hiddenSize: number) => ({
    model_type: 'llava',
    text_config: { model_type: 'llama', hidden_size: hiddenSize, num_hidden_layers: 32, num_attention_heads: 32 },
  });

  test("LLaVA-1.5 7B and 13B get the FiCoCo paper's FiCoCo-V at 64 of 576", () => {
    for (const hidden of [4096, 5120]) {
      const published = parseModelConfig(llava15(hidden), 'config.json').publishedReduction;
      assert.deepEqual(published && { method: published.method, budget: published.budget }, {
        method: 'ficoco-v',
        budget: { tokens: 64 },
      });
      assert.match(published!.source, /arXiv 2411\.17686/);
    }
  });

  test('other LLaVA models have none', () => {
    assert.equal(parseModelConfig(llava15(2048), 'config.json').publishedReduction, undefined, 'TinyLLaVA');
    const builtin = JSON.parse(
      fs.readFileSync(path.join(__dirname, '..', '..', 'models', 'tiny-llava-screens', 'config.json'), 'utf8'),
    );
    assert.equal(parseModelConfig(builtin, 'config.json').publishedReduction, undefined);
  });
});
