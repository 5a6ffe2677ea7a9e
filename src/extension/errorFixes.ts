/**
 * The one action that helps with a failure, chosen by its kind (never by its message): the setting to open, or the
 * engine log; and what helps with a provider fallback. Free of 'vscode'; the controller turns a fix into a
 * notification button.
 */
import { EngineError } from '../client/engineClient';
import { ServerSetupError, UnreachableServerError } from '../client/remoteEngine';
import { SettingsError } from './settings';

export type ErrorFix =
  | { title: 'Open Settings'; setting: string }
  | { title: 'Show Engine Log' }
  | { title: 'Set Engine API Key' }
  | { title: 'Install CUDA Provider…' };

/** The settings that fix each kind of engine failure (a memory failure's: the quantization setting fixFor is given). */
const SETTING_FOR_KIND: Partial<Record<EngineError['kind'], string>> = {
  'model-folder': 'ficoco.modelPath',
  config: 'ficoco.modelPath',
  weights: 'ficoco.modelPath',
  provider: 'ficoco.provider',
  reduction: 'ficoco.reduction',
};

/**
 * `quantizationSetting`: the setting that decides the model's quantization (settings.ts, quantizationSettingFor),
 * which a memory failure opens, since a model's own entry in ficoco.quantizationByModel overrides ficoco.quantization.
 */
export function fixFor(error: unknown, quantizationSetting = 'ficoco.quantization'): ErrorFix | undefined {
  if (error instanceof SettingsError) return { title: 'Open Settings', setting: error.setting };
  // The engine log says nothing about a server that never answered; its address is the setting.
  if (error instanceof UnreachableServerError) return { title: 'Open Settings', setting: 'ficoco.engine' };
  // A server that refused the key, lists no models at the address, or not the model to ask: what the user set up.
  if (error instanceof ServerSetupError)
    return error.fix === 'key'
      ? { title: 'Set Engine API Key' }
      : { title: 'Open Settings', setting: error.fix === 'model' ? 'ficoco.engineModel' : 'ficoco.engine' };
  if (!(error instanceof EngineError)) return undefined;
  const setting = error.kind === 'memory' ? quantizationSetting : SETTING_FOR_KIND[error.kind];
  if (setting) return { title: 'Open Settings', setting };
  return error.kind === 'crashed' || error.kind === 'internal' ? { title: 'Show Engine Log' } : undefined;
}

/**
 * What the notice of a provider fallback offers: installing the CUDA provider where an NVIDIA driver is loaded without
 * it (the reason then says to), and the provider setting.
 */
export function fallbackFixes({ cudaProviderMissing }: { cudaProviderMissing: boolean }): ErrorFix[] {
  const setting: ErrorFix = { title: 'Open Settings', setting: 'ficoco.provider' };
  return cudaProviderMissing ? [{ title: 'Install CUDA Provider…' }, setting] : [setting];
}
