/**
 * What WebGPU (Dawn, in ONNX Runtime) needs on Linux: Vulkan's loader, and a driver for it to load. A loader alone
 * comes with many desktop packages; without a driver's manifest it finds no GPU.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { missingLibraries } from './sharedLibraries';

export const VULKAN_LOADER = 'libvulkan.so.1';

/** The folders the Vulkan loader reads driver manifests from (its XDG, /etc and /usr/local defaults). */
function manifestFolders(env: NodeJS.ProcessEnv): string[] {
  // An empty variable counts as unset, as the loader takes it.
  const home = env.HOME || os.homedir();
  const config = [env.XDG_CONFIG_HOME || path.join(home, '.config'), ...(env.XDG_CONFIG_DIRS || '/etc/xdg').split(':')];
  const data = [
    env.XDG_DATA_HOME || path.join(home, '.local', 'share'),
    ...(env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':'),
  ];
  return [...config, '/etc', '/usr/local/etc', ...data].filter(Boolean).map((dir) => path.join(dir, 'vulkan', 'icd.d'));
}

/**
 * What Vulkan lacks here, in words, or undefined when its loader and a driver's manifest are both found. Drivers named
 * by VK_DRIVER_FILES, VK_ICD_FILENAMES or VK_ADD_DRIVER_FILES are taken as there. `ldconfigOutput` is for tests.
 */
export function vulkanMissing(env: NodeJS.ProcessEnv = process.env, ldconfigOutput?: string): string | undefined {
  if (missingLibraries([VULKAN_LOADER], [], env, ldconfigOutput).length > 0) return `no ${VULKAN_LOADER} is installed`;
  if (env.VK_DRIVER_FILES || env.VK_ICD_FILENAMES || env.VK_ADD_DRIVER_FILES) return undefined;
  const folders = manifestFolders(env);
  const hasManifest = (folder: string) => {
    try {
      return fs.readdirSync(folder).some((file) => file.endsWith('.json'));
    } catch {
      return false;
    }
  };
  return folders.some(hasManifest)
    ? undefined
    : `no Vulkan driver is installed (no manifest in ${[...new Set(folders)].join(', ')})`;
}
