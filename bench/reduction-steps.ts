/**
 * Cost of each method's heaviest step on synthetic full-size site views (no model needed): CLIP-L/336
 * vision sites (577 tokens × 1024, head_dim 64) and a TinyLlama-1.1B decoder (576 visual + 60 text tokens
 * × 2048). Steady state: 5 warm-up runs, then the median of 15. Compare with the layer times in
 * bench/results/segments.md (one CLIP-L layer ≈ 83 ms, one TinyLlama layer at 636 tokens ≈ 300 ms here).
 *
 *   node --import tsx bench/reduction-steps.ts [--methods a,b] [--budget 64]
 */
import { parseArgs } from 'node:util';
import { median } from '../src/cli/benchTiming';
import { seededRandom } from '../src/common/random';
import { cosineMatrix } from '../src/reduction/arrays';
import { runStep } from '../src/reduction/paradigm';
import { METHODS, planReduction } from '../src/reduction/registry';
import { SiteView } from '../src/reduction/tokenState';

const { values } = parseArgs({ options: { methods: { type: 'string' }, budget: { type: 'string', default: '64' } } });
const GRID = { rows: 24, cols: 24 };
const PATCHES = 576;
const TEXT_BEFORE = 5;
const TEXT_AFTER = 55;
const MODEL = { visionLayers: 23, textLayers: 22, visualTokens: PATCHES, grid: GRID, hasClassToken: true };

/** A site view with random states, attention rows that are real softmax-like distributions, and keys. */
function syntheticView(site: SiteView['site']): SiteView {
  const random = seededRandom(7);
  const vision = site.startsWith('vision') || site === 'features';
  const llm = site.startsWith('llm');
  const width = vision ? 1024 : 2048;
  const start = vision ? 1 : llm ? TEXT_BEFORE : 0;
  const count = start + PATCHES + (llm ? TEXT_AFTER : 0);
  const logits = Float32Array.from({ length: count * count }, () => random() * 4 - 2);
  return {
    site,
    hidden: Float32Array.from({ length: count * width }, () => random() * 2 - 1),
    count,
    width,
    sizes: new Float32Array(count).fill(1),
    positions: Int32Array.from({ length: count }, (_, i) => i),
    spans: [
      {
        start,
        count: PATCHES,
        grid: GRID,
        patchOwner: Int32Array.from({ length: PATCHES }, (_, p) => start + p),
        tokenPatch: Int32Array.from({ length: PATCHES }, (_, p) => p),
      },
    ],
    attention: logits,
    meanKeys: Float32Array.from({ length: count * 64 }, () => random() * 2 - 1),
    keyCount: count,
    hasClassToken: vision,
  };
}

const names = values.methods ? values.methods.split(',') : METHODS.map((m) => m.name);
console.log(`| method | first step | removes | ms (median of 15) |`);
console.log('|---|---|---:|---:|');
for (const name of names) {
  const plan = planReduction(name, { tokens: Number(values.budget) }, MODEL);
  const step = plan.steps[0];
  const view = syntheticView(step.site);
  if (step.needs.attention === 'probs') {
    // Softmax rows so probability-reading methods see real distributions.
    const n = view.keyCount;
    for (let i = 0; i < view.count; i++) {
      const row = view.attention!.subarray(i * n, (i + 1) * n);
      let total = 0;
      for (let j = 0; j < n; j++) total += row[j] = Math.exp(row[j]);
      for (let j = 0; j < n; j++) row[j] /= total;
    }
  }
  if (step.needs.hiddenCosine) view.hiddenCosine = cosineMatrix(view.hidden, view.count, view.width);
  if (step.needs.keyCosine) view.keyCosine = cosineMatrix(view.meanKeys!, view.keyCount, 64);
  const times: number[] = [];
  for (let run = 0; run < 20; run++) {
    const started = performance.now();
    runStep(step, view);
    if (run >= 5) times.push(performance.now() - started);
  }
  console.log(`| ${name} | ${step.site} | ${step.remove} | ${median(times).toFixed(2)} |`);
}
