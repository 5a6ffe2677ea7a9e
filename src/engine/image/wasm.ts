import * as fs from 'node:fs';
import * as path from 'node:path';

// The slice of the WebAssembly JS API used here, typed locally: TypeScript declares it only in the DOM lib, which the
// engine does not load.
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
type WasmModule = object;
type WasmImports = Record<string, Record<string, (...args: number[]) => number>>;
interface WasmJsApi {
  compile(code: Uint8Array): Promise<WasmModule>;
  instantiate(module: WasmModule, imports: WasmImports): Promise<{ exports: object }>;
}
const { WebAssembly: wasmApi } = globalThis as unknown as { WebAssembly: WasmJsApi };

/** What every C decoder built for wasm exports: its heap and an allocator. */
export interface WasmHeapExports {
  memory: WasmMemory;
  malloc(size: number): number;
}

// Sizes are passed to malloc as a 32-bit int: anything larger would wrap to a small buffer.
const MAX_ALLOCATION = 2 ** 31 - 1;

/**
 * A C decoder (@cwasm's builds of libjpeg-turbo and libwebp) compiled once, instantiated afresh for every decode:
 * a failure mid-call (a trap, the thrown stand-in for longjmp) leaves its heap half-updated, so no instance is reused.
 */
export class WasmDecoderModule<Exports extends WasmHeapExports> {
  private compiled: Promise<WasmModule> | undefined;

  constructor(
    private readonly packageName: string,
    private readonly fileName: string,
  ) {}

  async instantiate(): Promise<WasmDecoderInstance<Exports>> {
    this.compiled ??= fs.promises
      .readFile(wasmFile(this.packageName, this.fileName))
      .then((code) => wasmApi.compile(code));
    let memory: WasmMemory | undefined;
    const instance = await wasmApi.instantiate(
      await this.compiled,
      decoderImports(() => memory),
    );
    const exports = instance.exports as unknown as Exports;
    memory = exports.memory;
    return new WasmDecoderInstance(exports);
  }
}

/** One instance's exports and heap, used for a single decode and then dropped whole, so nothing in it is freed. */
export class WasmDecoderInstance<Exports extends WasmHeapExports> {
  constructor(readonly exports: Exports) {}

  allocate(size: number): number {
    if (size > MAX_ALLOCATION) throw new Error(`${size} bytes do not fit a 32-bit heap`);
    const pointer = this.exports.malloc(size);
    if (pointer === 0) throw new Error(`out of memory allocating ${size} bytes`);
    return pointer;
  }

  copyIn(bytes: Uint8Array): number {
    const pointer = this.allocate(bytes.length);
    this.bytesAt(pointer, bytes.length).set(bytes);
    return pointer;
  }

  /** A view of the heap: valid until the next call into the instance, which may grow (and so replace) its memory. */
  bytesAt(pointer: number, length: number): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer, pointer, length);
  }

  uint32At(pointer: number): number {
    return new DataView(this.exports.memory.buffer).getUint32(pointer, true);
  }
}

/**
 * The decoder's .wasm file: beside the running code in the bundle (scripts/build.mjs copies it into dist/),
 * else in its npm package when running from source.
 */
function wasmFile(packageName: string, fileName: string): string {
  const besideCode = path.join(__dirname, fileName);
  return fs.existsSync(besideCode) ? besideCode : require.resolve(`${packageName}/${fileName}`);
}

/** The C runtime's few imports, for a process with no environment, files or exit. */
function decoderImports(memory: () => WasmMemory | undefined): WasmImports {
  const unavailable = (call: string) => () => {
    throw new Error(`the decoder called ${call}, which is not available`);
  };
  return {
    // setjmp returns 0 once; longjmp, libjpeg's error exit, throws instead of jumping back (hence fresh instances).
    env: {
      setjmp: () => 0,
      longjmp: () => {
        throw new Error('the decoder stopped on an error');
      },
    },
    wasi_snapshot_preview1: {
      // getenv (libjpeg reads JPEGMEM) asks for the environment's size: no variables, no bytes.
      environ_sizes_get: (countPointer: number, bytesPointer: number) => {
        const view = new DataView(memory()!.buffer);
        view.setUint32(countPointer, 0, true);
        view.setUint32(bytesPointer, 0, true);
        return 0;
      },
      environ_get: unavailable('environ_get'),
      proc_exit: unavailable('proc_exit'),
      fd_close: unavailable('fd_close'),
      fd_seek: unavailable('fd_seek'),
      fd_write: unavailable('fd_write'),
    },
  };
}
