/**
 * Runs inside desktop VS Code's extension host (see run.ts): activates the extension, asks the built-in model
 * one evaluation question through the extension's API (the same path the chat takes: fork, load, answer,
 * measure the baseline) and reads the status bar.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { readEvalSet } from '../../src/cli/evalSet';
import type { FicocoApi } from '../../src/extension/extension';

export async function run(): Promise<void> {
  const evalSet = process.env.FICOCO_EVAL_SET!;
  const extension = vscode.extensions.getExtension<FicocoApi>('ficoco.ficoco-vision');
  assert.ok(extension, 'the extension is installed');
  const activationStarted = performance.now();
  const api = await extension.activate();
  console.log(`activation ${(performance.now() - activationStarted).toFixed(0)} ms`);

  // The arrow question the e2e suite asks too: answered right with FiCoCo-V at 16 of 144 tokens.
  const item = readEvalSet(path.join(evalSet, 'data.jsonl')).find(
    (candidate) => path.basename(candidate.image) === '1000000025.png' && candidate.type === 'arrow',
  )!;
  const settings = vscode.workspace.getConfiguration('ficoco');
  await settings.update('reduction.method', 'ficoco-v', vscode.ConfigurationTarget.Global);
  await settings.update('reduction.budget', '16', vscode.ConfigurationTarget.Global);
  const asked = performance.now();
  const turn = await api.ask(item.question, [vscode.Uri.file(item.image)]);
  console.log(`first answer (fork, load, answer, baseline) ${(performance.now() - asked).toFixed(0)} ms`);
  assert.ok(turn, 'the question became a turn');
  assert.equal(turn.answer.status, 'done', turn.answer.error);
  assert.equal(turn.answer.text.trim(), item.answer);
  assert.match(api.statusText, /^\$\(zap\) \d+\.\d×$/);
  console.log(`status bar: ${api.statusText}`);
}
