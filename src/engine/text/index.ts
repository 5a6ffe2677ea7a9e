export { ChatTemplate, PromptTooLongError, type ChatContent, type ChatMessage } from './chat-template';
export { StreamingDecoder } from './streaming-decoder';
export { DEFAULT_RENDER_LIMITS, type RenderLimits } from './template-process';
export { TextProcessor, type ImageTokenRef } from './text-processor';
