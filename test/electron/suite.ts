/**
 * Runs inside desktop VS Code's extension host (see run.ts): activates the extension, asks the built-in model
 * one evaluation question through the extension's API (the same path the chat takes: fork, load, answer,
 * measure the baseline) and reads the status bar.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FicocoApi } from '../../src/extension/extension';

export async function run(): Promise<void> {
  const evalSet = process.env.FICOCO_EVAL_SET!;
  const extension = vscode.extensions.getExtension<FicocoApi>('ficoco.ficoco-vision');
  assert.ok(extension, 'the extension is installed');
  const activationStarted = performance.now();
  const api = await extension.activate();
  console.log(`activation ${(performance.now() - activationStarted).toFixed(0)} ms`);

  const item = fs
    .readFileSync(path.join(evalSet, 'data.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { image: string; question: string; answer: string; type: string })
    .find((candidate) => candidate.type === 'title')!;
  await vscode.workspace.getConfiguration('ficoco').update('reduction.method', 'ficoco-v', vscode.ConfigurationTarget.Global);
  const asked = performance.now();
  const turn = await api.ask(item.question, [vscode.Uri.file(path.join(evalSet, item.image))]);
  console.log(`first answer (fork, load, answer, baseline) ${(performance.now() - asked).toFixed(0)} ms`);
  assert.ok(turn, 'the question became a turn');
  assert.equal(turn.answer.status, 'done', turn.answer.error);
  assert.equal(turn.answer.text.trim(), item.answer);
  assert.match(api.statusText, /^\$\(zap\) \d+\.\d×$/);
  console.log(`status bar: ${api.statusText}`);
}
