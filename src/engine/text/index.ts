export { ChatTemplate, type ChatContent, type ChatMessage } from './chat-template';
export { StreamingDecoder } from './streaming-decoder';
export { TextProcessor, type ImageTokenRef } from './text-processor';
