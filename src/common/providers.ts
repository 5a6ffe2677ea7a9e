/** Execution provider names, free of any ONNX Runtime import so the extension can share them. */
export const PROVIDERS = ['cpu', 'cuda', 'dml', 'coreml', 'webgpu'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
export const PROVIDER_SETTINGS = ['auto', ...PROVIDERS] as const;
export type ProviderSetting = (typeof PROVIDER_SETTINGS)[number];
