/**
 * The question box and the images waiting to go with it. Enter sends, Shift+Enter breaks the line; images
 * come in by paste, by Shift+drop (files from the OS, or Explorer items, which the extension reads), or
 * through the Attach button. The extension holds the waiting images; this only draws them.
 */
import {
  IMAGE_MIME_TYPES,
  MAX_DROPPED_URIS,
  MAX_IMAGES_PER_QUESTION,
  MAX_IMAGE_BYTES,
  MAX_QUESTION_CHARS,
  imageFileTooLarge,
  imageFormatOfFileName,
  type ImageFile,
  type PendingImage,
  type WebviewMessage,
} from '../src/protocol/webview';
import { button } from './controls';

/**
 * Screenshots of more pixels than this (2048 × 2048) are downscaled before they cross to the extension: by area, so a
 * tall page capture keeps a readable width (1280 × 20000 → 519 × 8095, where a 2048-pixel long side gave 131 × 2048).
 */
export const MAX_IMAGE_PIXELS = 2048 * 2048;

/** The size an image is sent at: its own, or scaled down to MAX_IMAGE_PIXELS keeping its aspect ratio. */
export function sentSize(width: number, height: number): { width: number; height: number } {
  const scale = Math.sqrt(MAX_IMAGE_PIXELS / (width * height));
  if (scale >= 1) return { width, height };
  // The long side rounded down, the short one up: the aspect ratio never grows past what the engine takes (32:1).
  const [long, short] = width >= height ? [width, height] : [height, width];
  const sides = [Math.floor(long * scale), Math.max(1, Math.ceil(short * scale))];
  return width >= height ? { width: sides[0], height: sides[1] } : { width: sides[1], height: sides[0] };
}
const URI_TYPES = ['application/vnd.code.uri-list', 'resourceurls', 'text/uri-list'];

/** Reads an image File as the extension wants it; throws a message for the user when it is not acceptable. */
export type ImageReader = (file: File) => Promise<ImageFile>;

/** The question being typed, kept while the page is hidden: what was saved, and where to save it as it changes. */
export interface Draft {
  text: string;
  save(text: string): void;
}

export class Composer {
  private readonly question: HTMLTextAreaElement;
  private readonly pending: HTMLElement;
  /**
   * pastes and drops being read here; a question sent meanwhile waits, then goes after them (the extension takes
   * messages in order, and holds a question back when one of its images was refused)
   */
  private readonly arriving = new Set<Promise<void>>();

  constructor(
    private readonly doc: Document,
    private readonly post: (message: WebviewMessage) => void,
    private readonly notify: (message: string) => void,
    private readonly readImage: ImageReader = readImageFile,
    private readonly draft: Draft = { text: '', save: () => undefined },
  ) {
    this.question = doc.getElementById('question') as HTMLTextAreaElement;
    this.pending = doc.getElementById('pending')!;
    this.question.value = draft.text;
    this.question.addEventListener('input', () => this.saveDraft());
    this.question.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    doc.getElementById('send')!.addEventListener('click', () => this.send());
    doc.getElementById('attach')!.addEventListener('click', () => post({ type: 'attach' }));
    doc.getElementById('new-chat')!.addEventListener('click', () => {
      // A notice about the chat just left (a refused image, a held question) would read as this one's.
      this.notify('');
      post({ type: 'newChat' });
      // The next thing to do in a new chat is to ask: the keyboard goes to the box, not stays on the button.
      this.question.focus();
    });
    doc.addEventListener('paste', (event) => void this.paste(event));
    doc.addEventListener('dragover', (event) => this.dragOver(event));
    doc.addEventListener('dragleave', () => doc.body.classList.remove('dropping'));
    doc.addEventListener('drop', (event) => void this.drop(event));
  }

  /**
   * Draws the images the extension holds for the next question. When one was removed from the keyboard, focus goes to
   * the next image's Remove button, or back to the question.
   */
  showPending(images: PendingImage[]): void {
    const focused = [...this.pending.querySelectorAll('.remove-image')].indexOf(this.doc.activeElement!);
    this.pending.replaceChildren(...images.map((image) => this.thumbnail(image)));
    this.pending.hidden = images.length === 0;
    if (focused < 0) return;
    const removes = this.pending.querySelectorAll<HTMLElement>('.remove-image');
    (removes[Math.min(focused, removes.length - 1)] ?? this.question).focus();
  }

  send(): void {
    const question = this.question.value.trim();
    if (question === '') {
      this.notify('Type a question about the image first.');
      this.question.focus();
      return;
    }
    // The extension reads no longer question (a page is bounded like any sender): it stays here to be shortened.
    if (question.length > MAX_QUESTION_CHARS) {
      this.notify(
        `The question has ${question.length} characters; FiCoCo takes at most ${MAX_QUESTION_CHARS} characters. ` +
          'Shorten it, then send it.',
      );
      this.question.focus();
      return;
    }
    this.question.value = '';
    this.saveDraft();
    // Sent with the Send button, the keyboard comes back to the box for the next question.
    this.question.focus();
    this.notify('');
    const ask = () => this.post({ type: 'ask', question });
    // A large screenshot takes a moment to decode; Enter right after pasting it must not ask without it.
    if (this.arriving.size === 0) ask();
    else void Promise.all(this.arriving).then(ask);
  }

  /** A question the extension handed back (an image was refused since the last one): into the box, with why. */
  holdQuestion(question: string, message: string): void {
    this.notify(message);
    this.question.value = this.question.value === '' ? question : `${question}\n${this.question.value}`;
    this.saveDraft();
    this.question.focus();
  }

  private saveDraft(): void {
    this.draft.save(this.question.value);
  }

  private thumbnail(image: PendingImage): HTMLElement {
    const doc = this.doc;
    const item = doc.createElement('div');
    item.className = 'pending-image';
    item.setAttribute('role', 'listitem');
    item.dataset.imageId = image.id;
    if (image.src) {
      const picture = doc.createElement('img');
      picture.src = image.src;
      picture.alt = image.name;
      item.append(picture);
    } else {
      const name = doc.createElement('span');
      name.className = 'image-name';
      name.textContent = image.name;
      item.append(name);
    }
    const remove = () => this.post({ type: 'removeImage', id: image.id });
    item.addEventListener('keydown', (event) => {
      if (event.key === 'Delete' || event.key === 'Backspace') {
        event.preventDefault();
        remove();
      }
    });
    const removeButton = button(doc, {
      label: '×',
      className: 'remove-image',
      title: `Remove ${image.name} (Delete)`,
      ariaLabel: `Remove ${image.name}`,
      onClick: remove,
    });
    // The button's compact size, for the one-character label over the thumbnail's corner.
    removeButton.setAttribute('icon-only', '');
    item.append(removeButton);
    return item;
  }

  private async paste(event: ClipboardEvent): Promise<void> {
    const files = [...(event.clipboardData?.items ?? [])]
      .filter((item) => item.kind === 'file')
      .map((item) => item.getAsFile())
      .filter((file): file is File => file !== null);
    if (files.length === 0) return;
    event.preventDefault();
    await this.addFiles(files);
  }

  private dragOver(event: DragEvent): void {
    const types = [...(event.dataTransfer?.types ?? [])].map((type) => type.toLowerCase());
    if (!types.includes('files') && !URI_TYPES.some((type) => types.includes(type))) return;
    // Only the types can be read while dragging; accepting here makes the drop reach us.
    event.preventDefault();
    this.doc.body.classList.add('dropping');
  }

  private async drop(event: DragEvent): Promise<void> {
    this.doc.body.classList.remove('dropping');
    const data = event.dataTransfer;
    if (!data) return;
    event.preventDefault();
    const uris = droppedUris(data);
    if (uris.length > 0) {
      // The extension reads as many as a question has room for, and refuses the rest by name.
      this.post({ type: 'addUris', uris: uris.slice(0, MAX_DROPPED_URIS) });
      return;
    }
    await this.addFiles([...data.files]);
  }

  /**
   * Reads each file (as many as a question takes) and hands the extension those read and why each other one was not;
   * questions wait meanwhile.
   */
  private addFiles(files: File[]): Promise<void> {
    const arrival = (async () => {
      const images: ImageFile[] = [];
      const refused: string[] = [];
      const past = files.length - MAX_IMAGES_PER_QUESTION;
      if (past > 0)
        refused.push(
          `${past} more ${past === 1 ? 'file was' : 'files were'} not added: a question can carry ` +
            `${MAX_IMAGES_PER_QUESTION} images; ask about these, then add more.`,
        );
      for (const file of files.slice(0, MAX_IMAGES_PER_QUESTION)) {
        try {
          images.push(await this.readImage(file));
        } catch (error) {
          refused.push(error instanceof Error ? error.message : String(error));
        }
      }
      this.post({ type: 'addImages', images, refused });
    })();
    this.arriving.add(arrival);
    return arrival.finally(() => this.arriving.delete(arrival));
  }
}

/** Explorer items dragged in: VS Code's full list first, then the plain (single-item) uri-list. */
export function droppedUris(data: DataTransfer): string[] {
  const resources = data.getData('resourceurls');
  if (resources) {
    try {
      const parsed: unknown = JSON.parse(resources);
      if (Array.isArray(parsed)) return parsed.filter((uri): uri is string => typeof uri === 'string');
    } catch {
      // not JSON: fall through to the uri lists
    }
  }
  const list = data.getData('application/vnd.code.uri-list') || data.getData('text/uri-list');
  return list
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

/** PNG, JPEG, WebP or GIF; downscaled past MAX_IMAGE_PIXELS (where the browser can decode it). */
export async function readImageFile(file: File): Promise<ImageFile> {
  const format =
    Object.entries(IMAGE_MIME_TYPES).find(([, mime]) => mime === file.type)?.[0] ?? imageFormatOfFileName(file.name);
  const name = file.name || `pasted-image.${format ?? 'png'}`;
  if (!format) throw new Error(`${name} is not an image FiCoCo can read: use PNG, JPEG, WebP or GIF.`);
  const smaller = await downscaled(file);
  const bytes = smaller ?? new Uint8Array(await file.arrayBuffer());
  if (bytes.byteLength > MAX_IMAGE_BYTES) throw new Error(imageFileTooLarge(name, bytes.byteLength));
  return { name: smaller ? `${name.replace(/\.[^.]*$/, '')}.png` : name, dataBase64: base64(bytes) };
}

/** A PNG of at most MAX_IMAGE_PIXELS, or undefined when the image is small enough (or undecodable here: the engine says so). */
async function downscaled(file: File): Promise<Uint8Array | undefined> {
  if (typeof createImageBitmap !== 'function') return undefined;
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return undefined;
  }
  const size = sentSize(bitmap.width, bitmap.height);
  if (size.width === bitmap.width && size.height === bitmap.height) return undefined;
  const canvas = new OffscreenCanvas(size.width, size.height);
  canvas.getContext('2d')!.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
}

function base64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
