import * as ort from 'onnxruntime-node';
import { selectRows, submatrix, unitRows } from '../../reduction/arrays';
import type { AttentionNeeds } from '../../reduction/tokenState';
import { ElemType, GraphBuilder } from '../graph/builder';
import { ATTENTION, HIDDEN_COSINE, KEY_COSINE, KEY_ROWS, MEAN_KEYS, QUERY_ROWS } from '../graph/segment';
import type { SessionFactory } from './provider';

type Outputs = ort.InferenceSession.OnnxValueMapType;

/** a·bᵀ of two row-major float32 matrices, in one ONNX Runtime session made on first use. */
export class RowProducts {
  private session: Promise<ort.InferenceSession> | undefined;

  constructor(private readonly factory: SessionFactory) {}

  /** [aRows, width] · [bRows, width]ᵀ → [aRows, bRows] */
  async multiply(a: Float32Array, b: Float32Array, width: number): Promise<Float32Array> {
    this.session ??= this.factory.create(() => {
      const g = new GraphBuilder('row_products');
      const left = g.input('a', ElemType.float32, ['m', 'width']);
      const right = g.input('b', ElemType.float32, ['n', 'width']);
      const product = g.op('MatMul', [left, g.op('Transpose', [right], 'b_t', { perm: [1, 0] })], 'product');
      g.output('product', product, ElemType.float32, ['m', 'n']);
      return g.build();
    });
    const session = await this.session;
    const outputs = await session.run({
      a: new ort.Tensor('float32', a, [a.length / width, width]),
      b: new ort.Tensor('float32', b, [b.length / width, width]),
    });
    return outputs.product.data as Float32Array;
  }

  /** cos(x_i, x_j) for every pair of rows of x [rows, width]: unit rows times their transpose. */
  cosine(x: Float32Array, width: number): Promise<Float32Array> {
    const unit = unitRows(x, x.length / width, width);
    return this.multiply(unit, unit, width);
  }

  async release(): Promise<void> {
    const session = await this.session;
    this.session = undefined;
    await session?.release();
  }
}

/**
 * What a hook reads after a decoder segment, gathered from the runs over the prompt's chunks: each run gives its rows
 * (attention probabilities over the cache and its own tokens, mean keys, the factors of the logits), and once every
 * chunk has run the matrices are put together over the tokens the hook sees (`content`; all of them when absent).
 */
export class GatheredExposure {
  private attention: Float32Array | undefined;
  /** [count, width] rows by output name */
  private readonly rows = new Map<string, Float32Array>();

  constructor(
    private readonly count: number,
    private readonly needs: AttentionNeeds,
    private readonly content?: Int32Array,
  ) {}

  /** Takes the rows of the run over tokens [start, start + tokens), whose cache held `start` tokens before it. */
  add(outputs: Outputs, start: number, tokens: number): void {
    const probs = outputs[ATTENTION];
    if (probs) {
      // [tokens, slots + tokens]: the cache's slots (the first `start` in use), then this run's tokens.
      const keys = probs.dims[1];
      const slots = keys - tokens;
      const data = probs.data as Float32Array;
      this.attention ??= new Float32Array(this.count * this.count);
      for (let r = 0; r < tokens; r++) {
        const row = (start + r) * this.count;
        this.attention.set(data.subarray(r * keys, r * keys + start), row);
        this.attention.set(data.subarray(r * keys + slots, (r + 1) * keys), row + start);
      }
    }
    for (const name of [QUERY_ROWS, KEY_ROWS, MEAN_KEYS]) {
      const piece = outputs[name];
      if (!piece) continue;
      const width = piece.dims[1];
      if (!this.rows.has(name)) this.rows.set(name, new Float32Array(this.count * width));
      this.rows.get(name)!.set(piece.data as Float32Array, start * width);
    }
  }

  /** The hook's view of the prompt, as the outputs of one run over it would be; `hidden` is the segment's output. */
  async assemble(products: RowProducts, hidden: ort.Tensor | undefined): Promise<Record<string, ort.Tensor>> {
    const { content } = this;
    const seen = content?.length ?? this.count;
    const square = (data: Float32Array) => new ort.Tensor('float32', data, [seen, seen]);
    // [count, width] → the rows the hook sees
    const seenRows = (matrix: Float32Array, width: number) => (content ? selectRows(matrix, width, content) : matrix);
    const assembled: Record<string, ort.Tensor> = {};
    const queryRows = this.rows.get(QUERY_ROWS);
    const keyRows = this.rows.get(KEY_ROWS);
    if (this.attention)
      assembled[ATTENTION] = square(content ? submatrix(this.attention, this.count, content) : this.attention);
    else if (queryRows && keyRows) {
      const width = keyRows.length / this.count;
      assembled[ATTENTION] = square(
        await products.multiply(seenRows(queryRows, width), seenRows(keyRows, width), width),
      );
    }
    const meanKeys = this.rows.get(MEAN_KEYS);
    if (meanKeys) {
      const width = meanKeys.length / this.count;
      const rows = seenRows(meanKeys, width);
      if (this.needs.keys) assembled[MEAN_KEYS] = new ort.Tensor('float32', rows, [seen, width]);
      if (this.needs.keyCosine) assembled[KEY_COSINE] = square(await products.cosine(rows, width));
    }
    if (this.needs.hiddenCosine && hidden) {
      const width = hidden.dims[1];
      assembled[HIDDEN_COSINE] = square(await products.cosine(seenRows(hidden.data as Float32Array, width), width));
    }
    return assembled;
  }
}
