/**
 * How many visual tokens a reduction keeps per image, and the one way it is written wherever a person writes it
 * (settings, the CLI, the quick pick, a server request): "64" tokens, or a share, "11%" or "0.11".
 */

/** Visual tokens kept per image: a count, or a share of the image's tokens in (0, 1]. */
export type Budget = { tokens: number } | { ratio: number };

/** A method parameter's value, as settings and requests carry it. */
export type ParamValue = number | string | boolean;

/** What a budget may be written as, for messages. */
export const BUDGET_HINT =
  'a whole number of visual tokens, 1 or more (e.g. 64), or a share above 0 and up to 100% (e.g. 11% or 0.11)';

/**
 * The budget grammar as a JSON-schema pattern (package.json's setting): a count, N%, or a decimal share. It accepts
 * exactly the budgets parseBudget takes, so the Settings editor flags `0`, `0%` or `150%` as it is typed: none of
 * zero, a percentage up to 100.
 */
export const BUDGET_PATTERN =
  '^\\s*(?!0*(\\.0*)?\\s*%?\\s*$)(\\d+|(0*100(\\.0+)?|0*\\d{1,2}(\\.\\d+)?)\\s*%|0?\\.\\d+)\\s*$';

/** "64" → 64 tokens; "11%" or "0.11" → a share of 0.11; undefined when the text is none of these, or out of range. */
export function parseBudget(text: string): Budget | undefined {
  const trimmed = text.trim();
  if (!new RegExp(BUDGET_PATTERN).test(trimmed)) return undefined;
  // "5.6e-2" rounds the decimal 0.056 once, as "0.056" does; 5.6 / 100 would round twice, to another budget.
  const budget: Budget = trimmed.endsWith('%')
    ? { ratio: Number(`${trimmed.slice(0, -1).trim()}e-2`) }
    : /^\d+$/.test(trimmed)
      ? { tokens: Number(trimmed) }
      : { ratio: Number(trimmed) };
  return isValidBudget(budget) ? budget : undefined;
}

/** A budget that arrives as data: a whole number of tokens ≥ 1, or a share in (0, 1]. */
export function isValidBudget(budget: Budget): boolean {
  if ('tokens' in budget) return Number.isSafeInteger(budget.tokens) && budget.tokens >= 1;
  return Number.isFinite(budget.ratio) && budget.ratio > 0 && budget.ratio <= 1;
}

/**
 * A budget exactly, as requests, keys and tables name it: "64", or a share as the shortest percentage that parses back
 * to the same share ("11%", "11.54%", "33.33333333333333%" for 1/3), so two budgets never share a label.
 */
export function budgetLabel(budget: Budget): string {
  if ('tokens' in budget) return String(budget.tokens);
  // 17 significant digits always read back as the same double; most shares need far fewer.
  for (let digits = 1; ; digits++) {
    const label = percentage(budget.ratio, digits);
    const parsed = parseBudget(label);
    if (digits === 17 || (parsed && 'ratio' in parsed && parsed.ratio === budget.ratio)) return label;
  }
}

/** A budget as a person reads it in a message or a tooltip: "64", or a share to 3 significant digits ("33.3%"). */
export function readableBudget(budget: Budget): string {
  return 'tokens' in budget ? String(budget.tokens) : percentage(budget.ratio, 3);
}

/** `ratio` as a percentage with at most `digits` significant digits, never in exponent notation ("0.00001%"). */
function percentage(ratio: number, digits: number): string {
  return new Intl.NumberFormat('en-US', {
    style: 'percent',
    useGrouping: false,
    maximumSignificantDigits: digits,
  }).format(ratio);
}
