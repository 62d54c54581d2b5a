// The page as a Lightspeed K-Series web extension (seed 000): the POS provides pos_* functions
// on window. Lightspeed publishes their names and purpose, not their payloads, so every guess
// about a signature or a shape is in this file and marked UNCERTAIN (docs/display.md lists them).

// Present in every K-Series web extension that can take a payment (seed 000's workflow).
const REQUIRED = [
  "pos_onBarcodeScanEvent",
  "pos_onNFCEvent",
  "pos_getCurrentAccount",
  "pos_addPayment",
  "pos_navigateToCheckoutView",
];

// UNCERTAIN: the scan callbacks' argument is not documented: a string, or an object holding
// the text in one of these fields (first found wins).
const SCAN_FIELDS = ["barcode", "data", "value", "code", "text", "uid", "id"];

// UNCERTAIN: pos_postMessage's argument; a public TypeScript declaration has {name, args}.
const MESSAGE_NAME = "lane-agent";

// Reading the open order is a lookup: if the POS says nothing, the cashier is told, not stuck.
// (pos_addPayment has no such bound: the POS may be waiting for the cashier.)
const ACCOUNT_TIMEOUT_MS = 10000;

/** The bridge when the page runs inside the K-Series POS, else null. */
export function detectKSeries(win) {
  return REQUIRED.every((name) => typeof win[name] === "function") ? new KSeriesBridge(win) : null;
}

/** The text of a scan callback's argument, or "" when none can be found. */
export function scanText(payload) {
  if (typeof payload === "string") {
    return payload.trim();
  }
  if (payload && typeof payload === "object") {
    const data = payload.data && typeof payload.data === "object" ? payload.data : payload;
    for (const field of SCAN_FIELDS) {
      if (typeof data[field] === "string" && data[field].trim()) {
        return data[field].trim();
      }
    }
  }
  return "";
}

/**
 * UNCERTAIN: how a pos_* function answers. Seed 000 writes pos_getCurrentAccount() without a
 * callback; a public mock calls back with {error, data}; the features page speaks of posData,
 * posResponse and posError objects. So: the callback's argument, or else the return value
 * (awaited if it is a promise), then unwrapped; an `error` or `posError` rejects.
 */
function callPos(fn, args, timeoutMs = 0) {
  return new Promise((resolve, reject) => {
    if (timeoutMs) {
      setTimeout(() => reject(new Error("the POS did not answer")), timeoutMs);
    }
    const settle = (result) => {
      const failure = result?.posError ?? result?.error;
      if (failure) {
        reject(new Error(failure.description ?? failure.message ?? String(failure)));
      } else {
        resolve(result?.data ?? result?.posData ?? result?.posResponse ?? result ?? null);
      }
    };
    try {
      const returned = fn(...args, settle);
      if (returned !== undefined) {
        Promise.resolve(returned).then(settle, reject);
      }
    } catch (error) {
      reject(error);
    }
  });
}

/**
 * UNCERTAIN: pos_getCurrentAccount's data (from a public mock): totalAmount and paidAmount in
 * cents, tax included; transactionLines with quantity in hundredths (100 = 1), amount in cents,
 * text and itemSku; identifier is the order id. → the params of the agent's order.update.
 */
export function accountToOrder(account, currency) {
  const total = Math.max(0, Math.round(Number(account.totalAmount) || 0));
  const taxAmount = Math.round(Number(account.taxAmount) || 0);
  const tax = taxAmount > 0 && taxAmount <= total ? taxAmount : 0;
  const lines = (account.transactionLines ?? []).map((line, index) => ({
    id: String(index + 1),
    name: String(line.text || line.itemSku || `Item ${index + 1}`).slice(0, 200),
    quantity: Math.max(1, Math.round((Number(line.quantity) || 100) / 100)),
    amount: Math.round(Number(line.amount) || 0),
    sku: line.itemSku ? String(line.itemSku).slice(0, 64) : null,
  }));
  return {
    order_id: String(account.identifier ?? account.id ?? "").slice(0, 64),
    lines,
    subtotal: total - tax,
    tax,
    total,
    currency: account.currencyCode || currency,
  };
}

/** What is left to pay on the account (same UNCERTAIN fields): totalAmount - paidAmount. */
export function accountDue(account) {
  const total = Math.round(Number(account.totalAmount) || 0);
  return Math.max(0, total - Math.round(Number(account.paidAmount) || 0));
}

export class KSeriesBridge {
  constructor(win) {
    this.win = win;
  }

  /** handler(text, symbology) for every barcode and NFC read the POS reports. */
  onScan(handler) {
    this.win.pos_onBarcodeScanEvent((payload) => handler(scanText(payload), "unknown"));
    this.win.pos_onNFCEvent((payload) => handler(scanText(payload), "nfc"));
  }

  /** The POS's open account (order), or null when none is open. */
  async currentAccount() {
    const data = await callPos(this.win.pos_getCurrentAccount, [], ACCOUNT_TIMEOUT_MS);
    return data && typeof data === "object" && data.totalAmount !== undefined ? data : null;
  }

  /** Resolves once the POS took the payment; rejects with its reason when it did not. */
  addPayment(amountCents, paymentMethodCode) {
    return callPos(this.win.pos_addPayment, [amountCents, paymentMethodCode]);
  }

  checkout() {
    this.win.pos_navigateToCheckoutView();
  }

  /** Shows a line on the POS (a card's balance); not every POS version has pos_postMessage. */
  postMessage(text) {
    if (typeof this.win.pos_postMessage === "function") {
      this.win.pos_postMessage({ name: MESSAGE_NAME, args: [text] });
    }
  }
}
