/**
 * ONNX Runtime's log in a process of its own (its default logger is made once per process):
 * `node --import tsx ortLogChild.ts ORDER`, ORDER `gpu-first` (a CUDA probe, then a CPU session) or `cpu-first` (the
 * other way round). The CPU session's model holds an unused initializer, which ORT warns about. Prints the probe's
 * result as JSON on stdout; ORT writes its log on stderr.
 */
import * as ort from 'onnxruntime-node';
import { ElemType, GraphBuilder } from '../../src/engine/graph/builder';
import { probeProviders, sessionOptions } from '../../src/engine/runtime/provider';

async function cpuSession(): Promise<void> {
  const g = new GraphBuilder('warned', ElemType.float32);
  const x = g.input('x', ElemType.float32, [4]);
  g.constant('unused', new Float32Array([1, 2, 3, 4]), [4]);
  g.output('y', g.op('Mul', [x, x], 'y'), ElemType.float32, [4]);
  const session = await ort.InferenceSession.create(g.build(), sessionOptions('cpu', { weightsFolder: process.cwd() }));
  await session.release();
}

async function main(order: string | undefined): Promise<void> {
  if (order === 'cpu-first') await cpuSession();
  const probe = await probeProviders(['cuda', 'cpu']);
  if (order === 'gpu-first') await cpuSession();
  process.stdout.write(`${JSON.stringify(probe)}\n`);
}

void main(process.argv[2]);
