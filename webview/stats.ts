/**
 * What an answer cost, under it: one compact line that fits a 300 px sidebar (method · kept tokens · speedup · TTFT),
 * and the details on expand (timings, a sampled answer's seed, provider, FLOPs, how the speedup was measured, why this
 * reduction).
 */
import {
  type AnswerStatsView,
  type SpeedupView,
  isReducedAnswer,
  providerLine,
  seedLine,
} from '../src/protocol/webview';
import { collapsible } from './controls';

export interface StatsOptions {
  /** names the details within the turn, so that focus comes back to them when the turn is redrawn */
  control: string;
  detailsOpen: boolean;
  onDetailsToggle(open: boolean): void;
}

/** The compact line and the collapsed details. */
export function answerStats(doc: Document, stats: AnswerStatsView, options: StatsOptions): HTMLElement {
  const element = doc.createElement('div');
  element.className = 'stats';
  element.append(
    statsLine(doc, stats),
    collapsible(doc, {
      heading: 'Details',
      className: 'stats-details',
      control: options.control,
      open: options.detailsOpen,
      onToggle: options.onDetailsToggle,
      content: detailsList(doc, statsDetails(stats)),
    }),
  );
  return element;
}

/** "ficoco-v 64 · 64/576 tokens · 1.8× faster · TTFT 120 ms"; the speedup says nothing for an unreduced answer. */
function statsLine(doc: Document, stats: AnswerStatsView): HTMLElement {
  const line = doc.createElement('p');
  line.className = 'stats-line';
  const reduced = isReducedAnswer(stats);
  const speedup = reduced ? speedupPart(doc, stats.speedup, stats.measuringSpeedup === true) : undefined;
  const parts = [
    reduced ? `${stats.reduction!.method} ${stats.reduction!.budget}` : 'full tokens',
    keptTokens(stats),
    ...(speedup ? [speedup] : []),
    `TTFT ${milliseconds(stats.ttftMs)}`,
  ];
  parts.forEach((part, i) => line.append(...(i === 0 ? [part] : [' · ', part])));
  return line;
}

/**
 * The host's own words for the speedup. A gain is a badge; "no faster" and "slower" are sentences, left as text that
 * wraps (a badge does not).
 */
function speedupPart(doc: Document, speedup: SpeedupView | undefined, measuring: boolean): HTMLElement | undefined {
  if (!speedup && !measuring) return undefined;
  const element = doc.createElement(speedup?.verdict === 'faster' ? 'vscode-badge' : 'span');
  element.className = speedup ? 'speedup' : 'speedup measuring';
  element.textContent = speedup ? speedup.label : 'measuring speedup…';
  return element;
}

/** "64/576 tokens": per image, the visual tokens that reached the language model of those it started with. */
function keptTokens(stats: AnswerStatsView): string {
  if (stats.visualTokens.length === 0) return 'no visual tokens';
  return `${stats.visualTokens.map((tokens) => `${tokens.atDecoder}/${tokens.original}`).join(' + ')} tokens`;
}

/** The details, as term and description, in the order they are shown. */
export function statsDetails(stats: AnswerStatsView): [string, string][] {
  const rows: [string, string][] = [];
  const { reduction, speedup } = stats;
  if (reduction?.why) rows.push(['Why this reduction', reduction.why]);
  if (speedup) {
    rows.push(
      ['Speedup', speedup.label],
      [
        'Noise band',
        `middle half of ${plural(speedup.pairs, 'paired run')}: ${speedup.low.toFixed(2)}–${speedup.high.toFixed(2)}×`,
      ],
      ['Timed', speedup.timed],
    );
  }
  rows.push(
    ['Visual tokens', visualTokens(stats)],
    [
      'Prefill',
      `${milliseconds(stats.visionMs + stats.prefillMs)} (vision ${milliseconds(stats.visionMs)}, ` +
        `language model ${milliseconds(stats.prefillMs)})`,
    ],
    ['Decode', `${plural(stats.generatedTokens, 'token')} at ${stats.decodeTokensPerSecond.toFixed(1)} tokens/s`],
  );
  if (stats.seed !== undefined) rows.push(['Seed', seedLine(stats.seed)]);
  rows.push(['Provider', providerLine(stats)]);
  if (stats.flopsRatio !== undefined)
    rows.push(['FLOPs', `${(100 * stats.flopsRatio).toFixed(0)} % of the full-token prefill (analytic)`]);
  if (stats.historyTrimmed) {
    const { droppedMessages, contextTokens } = stats.historyTrimmed;
    rows.push([
      'History',
      `${plural(droppedMessages, 'earlier message')} left out to fit the model's ${contextTokens}-token context`,
    ]);
  }
  return rows;
}

/** "64 of 576 reached the language model", per image. */
function visualTokens(stats: AnswerStatsView): string {
  if (stats.visualTokens.length === 0) return 'none: no image in this question';
  const perImage = stats.visualTokens.map((tokens) => `${tokens.atDecoder} of ${tokens.original}`).join(', ');
  return `${perImage} reached the language model`;
}

function detailsList(doc: Document, rows: [string, string][]): HTMLElement {
  const list = doc.createElement('dl');
  list.className = 'stats-details-list';
  for (const [term, description] of rows) {
    const dt = doc.createElement('dt');
    dt.textContent = term;
    const dd = doc.createElement('dd');
    dd.textContent = description;
    list.append(dt, dd);
  }
  return list;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function milliseconds(ms: number): string {
  return `${ms.toFixed(0)} ms`;
}
