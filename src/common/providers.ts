/** Execution provider names, free of any ONNX Runtime import so the extension can share them. */
export const PROVIDERS = ['cpu', 'cuda', 'dml', 'coreml', 'webgpu'] as const;
export type ProviderName = (typeof PROVIDERS)[number];
export const PROVIDER_SETTINGS = ['auto', ...PROVIDERS] as const;
export type ProviderSetting = (typeof PROVIDER_SETTINGS)[number];
/** Compute precision: 'auto' keeps half precision on GPU providers and float32 on the CPU. */
export type Precision = 'auto' | 'float32' | 'float16';
