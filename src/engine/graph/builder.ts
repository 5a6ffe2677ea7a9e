import { onnx } from 'onnx-proto';
import { float32ToFloat16 } from '../weights/dtype';

/** ONNX element types used by the engine (onnx.TensorProto.DataType). */
export const ElemType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

/** A dimension: a fixed size, or a named symbolic one (e.g. 'seq'). */
export type Dim = number | string;

export type AttributeValue = number | number[] | string | { float: number } | onnx.ITensorProto | onnx.IGraphProto;

/** Where an initializer's bytes live: a file (relative to the weights folder) and a byte range. */
export interface ExternalBytes {
  location: string;
  offset: number;
  length: number;
}

/** The most negative finite float16 or float32: what an additive mask adds to hide a key. */
export function lowestFloat(floatType: ElemType): number {
  return floatType === ElemType.float16 ? -65504 : -3.4028234663852886e38;
}

/**
 * A small typed builder over onnx-proto. Every value is named; names carry the layer
 * (`vision.l12.attn.logits`) so a dumped graph reads like the model.
 */
export class GraphBuilder {
  /** the nodes of the graph being built: the model's, or a branch's while `ifElse` builds it */
  private nodes: onnx.INodeProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly usedNames = new Set<string>();
  private readonly constantCache = new Map<string, string>();

  /** `floatType` is the graph's compute type: the type of `scalar` constants. */
  constructor(
    readonly name: string,
    readonly floatType: ElemType = ElemType.float32,
  ) {}

  /** A fresh value name based on `hint`; hints already used get a numeric suffix. */
  fresh(hint: string): string {
    let name = hint;
    for (let i = 1; this.usedNames.has(name); i++) name = `${hint}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  input(name: string, elemType: ElemType, dims: Dim[]): string {
    this.usedNames.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares `value` as a graph output called `name` (adds an Identity when the names differ). */
  output(name: string, value: string, elemType: ElemType, dims: Dim[]): void {
    if (value !== name) {
      this.usedNames.add(name);
      this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `${name}.identity` });
    }
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Adds one node with a single output and returns the output's name. */
  op(
    opType: string,
    inputs: string[],
    hint: string,
    attributes: Record<string, AttributeValue> = {},
    domain = '',
  ): string {
    return this.opMulti(opType, inputs, [hint], attributes, domain)[0];
  }

  opMulti(
    opType: string,
    inputs: string[],
    hints: string[],
    attributes: Record<string, AttributeValue> = {},
    domain = '',
  ): string[] {
    const output = hints.map((hint) => this.fresh(hint));
    this.nodes.push({
      opType,
      domain,
      input: inputs,
      output,
      name: output[0],
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return output;
  }

  /**
   * An If node: `cond` (a bool scalar) picks which branch runs. Each branch builds its nodes and returns its outputs
   * (values it computed or outer ones, of `types`); constants go to the model's initializers, which branches can read.
   */
  ifElse(
    cond: string,
    hints: string[],
    types: ElemType[],
    thenBranch: () => string[],
    elseBranch: () => string[],
  ): string[] {
    const branch = (name: string, build: () => string[]): onnx.IGraphProto => {
      const outer = this.nodes;
      this.nodes = [];
      try {
        const results = build();
        const output = results.map((value, i) => {
          const result = this.fresh(`${hints[i]}.${name}`);
          this.nodes.push({ opType: 'Identity', input: [value], output: [result], name: result });
          return valueInfo(result, types[i]);
        });
        return { name: this.fresh(`${hints[0]}.${name}`), node: this.nodes, output };
      } finally {
        this.nodes = outer;
      }
    };
    const then_branch = branch('then', thenBranch);
    const else_branch = branch('else', elseBranch);
    return this.opMulti('If', [cond], hints, { then_branch, else_branch });
  }

  /** An initializer whose bytes stay in a weights file (ONNX external data: no copy). */
  externalInitializer(name: string, elemType: ElemType, dims: number[], bytes: ExternalBytes): string {
    const unique = this.fresh(name);
    this.initializers.push({
      name: unique,
      dataType: elemType,
      dims,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: bytes.location },
        { key: 'offset', value: String(bytes.offset) },
        { key: 'length', value: String(bytes.length) },
      ],
    });
    return unique;
  }

  /** A small constant tensor embedded in the graph; identical constants are shared. */
  constant(hint: string, values: Float32Array | Int32Array | BigInt64Array, dims: number[]): string {
    const dataType =
      values instanceof Float32Array
        ? ElemType.float32
        : values instanceof Int32Array
          ? ElemType.int32
          : ElemType.int64;
    const key = `${dataType}:${dims.join(',')}:${Array.from(values as ArrayLike<number | bigint>).join(',')}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    const name = this.fresh(hint);
    this.initializers.push({
      name,
      dataType,
      dims,
      rawData: new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength)),
    });
    this.constantCache.set(key, name);
    return name;
  }

  int64s(hint: string, values: number[]): string {
    return this.constant(hint, BigInt64Array.from(values.map(BigInt)), [values.length]);
  }

  /** A scalar in the graph's compute type. */
  scalar(hint: string, value: number): string {
    if (this.floatType === ElemType.float32) return this.constant(hint, Float32Array.of(value), []);
    const key = `h:${value}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    const name = this.fresh(hint);
    const half = float32ToFloat16(Float32Array.of(value));
    this.initializers.push({ name, dataType: ElemType.float16, dims: [], rawData: new Uint8Array(half.buffer) });
    this.constantCache.set(key, name);
    return name;
  }

  /** The most negative finite value of the compute type (an additive mask that cannot overflow). */
  get lowestFloat(): number {
    return lowestFloat(this.floatType);
  }

  build(opsetVersion = 17): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'ficoco-vision',
      opsetImport: [
        { domain: '', version: opsetVersion },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

/** A value's type; without `dims` its shape is left unknown (a branch output whose shape differs per run). */
function valueInfo(name: string, elemType: ElemType, dims?: Dim[]): onnx.IValueInfoProto {
  const shape = dims && { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  return { name, type: { tensorType: { elemType, shape } } };
}

function attribute(name: string, value: AttributeValue): onnx.IAttributeProto {
  const { AttributeType } = onnx.AttributeProto;
  if (typeof value === 'number') {
    return { name, type: AttributeType.INT, i: value };
  }
  if (typeof value === 'string') {
    return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  }
  if (Array.isArray(value)) {
    return { name, type: AttributeType.INTS, ints: value };
  }
  if ('float' in value) {
    return { name, type: AttributeType.FLOAT, f: value.float };
  }
  if ('node' in value) {
    return { name, type: AttributeType.GRAPH, g: value };
  }
  return { name, type: AttributeType.TENSOR, t: value };
}
