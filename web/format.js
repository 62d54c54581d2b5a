// Money in minor units, and the agent's error vocabulary in words a cashier can act on.

/** Decimals of a currency's minor unit (2 for USD, 0 for JPY, 3 for KWD), as Intl knows them. */
export function fractionDigits(currency) {
  try {
    const options = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions();
    return options.maximumFractionDigits;
  } catch {
    return 2;
  }
}

/** 1250, "USD" → "$12.50" in the browser's locale. */
export function formatMoney(minor, currency = "USD") {
  const digits = fractionDigits(currency);
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(
      minor / 10 ** digits,
    );
  } catch {
    return `${(minor / 10 ** digits).toFixed(digits)} ${currency}`;
  }
}

/** What a cashier typed ("12.50", "12,5", "12") → minor units (1250), or null if it is not an
 *  amount of that currency. Parsed as text so no floating point rounding can change a cent. */
export function parseAmount(text, currency = "USD") {
  const digits = fractionDigits(currency);
  const match = /^(\d{1,9})(?:[.,](\d*))?$/.exec(String(text).trim());
  if (!match || (match[2] ?? "").length > digits) {
    return null;
  }
  const fraction = (match[2] ?? "").padEnd(digits, "0");
  return Number(match[1]) * 10 ** digits + Number(fraction || "0");
}

/** Minor units → the text an amount field shows ("12.50"), the inverse of parseAmount. */
export function amountText(minor, currency = "USD") {
  const digits = fractionDigits(currency);
  return (minor / 10 ** digits).toFixed(digits);
}

/** One heading per error code of docs/mqtt-api.md ("Errors"); the message under it is the
 *  agent's, which carries the provider's own words. `no_answer` is the page's own. */
export const ERROR_TITLES = Object.freeze({
  invalid_request: "Request refused",
  unknown_op: "The lane agent does not know this request",
  request_id_conflict: "Request refused: its id was used for another request",
  unknown_token: "Scan it again",
  not_found: "Not found",
  not_redeemable: "Cannot be redeemed",
  insufficient_balance: "Not enough balance",
  expired: "Expired",
  not_yet_valid: "Not valid yet",
  wrong_location: "Not valid at this store",
  already_reversed: "Already reversed",
  basket_locked: "Loyalty basket in use on another order",
  provider_unavailable: "Provider unavailable: nothing was done",
  unknown_outcome: "Outcome unknown: check the balance before trying again",
  earlier_redemption: "Redeemed before on this lane: confirm before redeeming again",
  not_configured: "Not set up on this lane",
  rate_limited: "Too fast: send it again",
  busy: "Lane busy: nothing was done, send it again",
  storage_full: "Lane device disk full: free space, then send it again",
  internal: "Lane agent error",
  no_answer: "No answer from the lane agent",
});

/** Why a validated gift cannot be redeemed (`gift.reason`). */
export const REASONS = Object.freeze({
  expired: "expired",
  not_yet_valid: "not valid yet",
  depleted: "used up",
  wrong_location: "not valid at this store",
  voided: "voided",
});

/** An ErrorBody ({code, message}) → {title, message} for the alert. */
export function describeError(error) {
  const code = error?.code ?? "internal";
  return { title: ERROR_TITLES[code] ?? code, message: error?.message ?? "", code };
}
