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
  'a whole number of visual tokens (e.g. 64) or a share above 0 and up to 100% (e.g. 11% or 0.11)';

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
  const budget: Budget = trimmed.endsWith('%')
    ? { ratio: Number(trimmed.slice(0, -1)) / 100 }
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
 * How tables, charts, messages and requests name a budget: "64", or a share as a percentage with the decimals it
 * needs ("11%", "11.54%"), so that budgets a list can hold side by side read differently, and the label parses back.
 */
export const budgetLabel = (budget: Budget): string =>
  'tokens' in budget ? String(budget.tokens) : `${withoutTrailingZeros((100 * budget.ratio).toFixed(10))}%`;

/** "11.5400000000" → "11.54", "11.0000000000" → "11": toFixed's digits past the last that counts dropped. */
const withoutTrailingZeros = (fixed: string): string => fixed.replace(/0+$/, '').replace(/\.$/, '');
