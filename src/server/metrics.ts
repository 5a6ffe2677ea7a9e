/** What `ficoco serve` exposes at /metrics, in Prometheus' text format (prom-client). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AnswerStats } from '../protocol/engine';

export interface ServerMetrics {
  registry: Registry;
  /** one finished request: its HTTP status and, when it was answered, the engine's figures */
  record(status: number, stats?: AnswerStats): void;
}

const SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** `queue`: the waiting requests and busy workers, read when Prometheus scrapes. */
export function serverMetrics(queue: {
  depth: () => number;
  busy: () => number;
  workers: () => number;
}): ServerMetrics {
  const registry = new Registry();
  new Gauge({
    name: 'ficoco_queue_depth',
    help: 'Requests waiting for an engine worker.',
    registers: [registry],
    collect() {
      this.set(queue.depth());
    },
  });
  new Gauge({
    name: 'ficoco_workers_busy',
    help: 'Engine workers answering a request now.',
    registers: [registry],
    collect() {
      this.set(queue.busy());
    },
  });
  new Gauge({
    name: 'ficoco_workers',
    help: 'Engine workers started.',
    registers: [registry],
    collect() {
      this.set(queue.workers());
    },
  });
  const requests = new Counter({
    name: 'ficoco_requests_total',
    help: 'Chat completion requests by HTTP status.',
    labelNames: ['status'],
    registers: [registry],
  });
  const ttft = new Histogram({
    name: 'ficoco_time_to_first_token_seconds',
    help: 'Engine time from the question to the first answer token (vision, prefill and one decode step).',
    buckets: SECONDS,
    registers: [registry],
  });
  const decodeRate = new Histogram({
    name: 'ficoco_decode_tokens_per_second',
    help: 'Answer tokens per second after the first.',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
    registers: [registry],
  });
  const flopsRatio = new Histogram({
    name: 'ficoco_prefill_flops_ratio',
    help: 'Analytic speedup: FLOPs of the unreduced prefill over those of the prefill that ran (1 without reduction).',
    buckets: [1, 1.25, 1.5, 2, 3, 4, 6, 8, 12],
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'ficoco_tokens_total',
    help: 'Tokens by kind: prompt, generated, visual (before reduction) and visual_kept (at the decoder).',
    labelNames: ['kind'],
    registers: [registry],
  });
  return {
    registry,
    record(status, stats) {
      requests.inc({ status: String(status) });
      if (!stats) return;
      ttft.observe(stats.ttftMs / 1000);
      if (stats.generatedTokens > 1) decodeRate.observe(stats.decodeTokensPerSecond);
      flopsRatio.observe(stats.flops.unreduced.total / stats.flops.run.total);
      tokens.inc({ kind: 'prompt' }, stats.promptTokens);
      tokens.inc({ kind: 'generated' }, stats.generatedTokens);
      tokens.inc({ kind: 'visual' }, sum(stats.visualTokens.map((v) => v.original)));
      tokens.inc({ kind: 'visual_kept' }, sum(stats.visualTokens.map((v) => v.atDecoder)));
    },
  };
}

const sum = (values: number[]) => values.reduce((total, v) => total + v, 0);
