// The lane display: what the lane agent publishes, and the cashier's requests to it.
// Everything shown comes from the agent's events and answers (docs/mqtt-api.md), so every screen
// of a lane shows the same thing. Codes are shown only as the agent masked them.

import { LaneClient } from "./client.js";
import { amountText, describeError, formatMoney, parseAmount, REASONS } from "./format.js";
import { accountDue, accountToOrder, detectKSeries } from "./kseries.js";
import { readSettings } from "./settings.js";

const MAX_SCANS = 10;
const ORDER_WORDS = {
  open: "open",
  paid: "paid",
  void: "voided",
  abandoned: "abandoned",
  refunded: "refunded",
};
const TENDER_KINDS = { gift: "Gift voucher", card: "Gift card" };
// A tender's state (docs/mqtt-api.md, "Tender") in words, and its colour.
const TENDER_STATES = {
  pending: ["outcome not known yet", "warn"],
  taken: ["taken", "ok"],
  refunding: ["being given back", "warn"],
  reversed: ["given back", "muted"],
  failed: ["refused, nothing taken", "bad"],
};

const $ = (id) => document.getElementById(id);

function el(tag, text = "", className = "") {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) {
    node.className = className;
  }
  return node;
}

const settings = readSettings(window.location);
const client = new LaneClient(settings);
const pos = detectKSeries(window);

const lane = {
  gift: null, // {kind: "gift" | "card", token_id, display, provider, status: GiftStatus | CardBalance}
  order: null, // OrderInfo of the order on screen: the open one, or the last one that closed
  view: null, // OrderView of that order, the agent's last answer to order.get
  paid: 0, // what its tenders hold (vouchers and card payments)
  due: null, // what is left to pay on it, when known
  lastTransaction: null, // the last redemption or card payment, for "Reverse"
  offer: null, // gift.redeem params of the partial redemption offered
  loyalty: null, // LoyaltyUserData of the attached guest
  identify: null, // {token_id, display} of a phone or email that found no loyalty guest
};

const currency = () => lane.order?.currency ?? "USD";

// ---- messages -----------------------------------------------------------------------------------

function showAlert(title, message) {
  $("alert-title").textContent = title;
  $("alert-message").textContent = message;
  $("alert").hidden = false;
}

function showError(error, context) {
  const { title, message } = describeError(error);
  showAlert(context ? `${context}: ${title}` : title, message);
}

function clearAlert() {
  $("alert").hidden = true;
}

/** Send a request; on an error answer show it and return null, else return its data. */
async function send(op, params, context) {
  const answer = await client.request(op, params);
  if (answer.status !== "ok") {
    showError(answer.error, context);
    return null;
  }
  clearAlert();
  return answer.data ?? {};
}

function badge(node, text, tone) {
  node.textContent = text;
  node.classList.toggle("ok", tone === "ok");
  node.classList.toggle("bad", tone === "bad");
}

// ---- lane and devices ---------------------------------------------------------------------------

const CONNECTION_WORDS = {
  connected: "Broker: connected",
  connecting: "Broker: connecting",
  disconnected: "Broker: disconnected",
};

client.on("connection", (state, detail) => {
  const text = CONNECTION_WORDS[state] ?? `Broker: ${detail}`;
  badge($("connection"), text, state === "connected" ? "ok" : state === "connecting" ? "" : "bad");
});

client.on("state", (agent) => {
  const online = agent.state === "online";
  const extra = online ? agent.version && ` (${agent.version})` : agent.reason && ` (${agent.reason})`;
  badge($("agent-state"), `Agent: ${agent.state}${extra || ""}`, online ? "ok" : "bad");
});

const devices = new Map();

client.on("device", (id, record) => {
  if (record) {
    devices.set(id, record);
  } else {
    devices.delete(id);
  }
  const rows = [...devices.values()]
    .sort((a, b) => a.device_id.localeCompare(b.device_id))
    .map((device) => {
      const row = el("tr");
      row.append(el("td", `${device.device_id} (${device.kind})`));
      const state = el("td", device.state, device.state === "connected" ? "ok" : "bad");
      if (device.last_error) {
        state.append(el("div", device.last_error, "muted"));
      }
      row.append(state, el("td", String(device.counters?.scans ?? 0)));
      return row;
    });
  $("device-rows").replaceChildren(...rows);
});

// ---- scans --------------------------------------------------------------------------------------

client.on("scan", (scan) => {
  const item = el("li");
  const time = new Date(scan.ts).toLocaleTimeString();
  item.append(el("span", `${time} `, "muted"), el("span", scan.display, "code"));
  item.append(` ${scan.kind.replaceAll("_", " ")}`);
  if (!scan.valid) {
    item.append(el("span", ` not valid: ${scan.error}`, "bad"));
  }
  const list = $("scan-list");
  list.prepend(item);
  while (list.children.length > MAX_SCANS) {
    list.lastElementChild.remove();
  }
});

async function scanInject(data, symbology) {
  const scan = await send("scan.inject", { data, symbology }, "Scan");
  if (scan) {
    const words = scan.valid ? scan.kind.replaceAll("_", " ") : `not valid: ${scan.error}`;
    $("scan-result").textContent = `${scan.display}: ${words}`;
  }
}

$("scan-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("scan-input");
  const data = input.value.trim();
  // The clear code leaves the page at once: from here on only the agent's masked text is shown.
  input.value = "";
  if (data) {
    scanInject(data, "keyed");
  }
});

// ---- gifts and gift cards -----------------------------------------------------------------------

function giftCurrency() {
  return lane.gift.status.currency ?? currency();
}

function renderGift() {
  const { kind, status, display, provider } = lane.gift;
  const isItem = status.type === "item";
  $("gift").hidden = false;
  $("gift-heading").textContent = kind === "card" ? "Gift card" : "Gift";
  $("gift-display").textContent = display;
  $("gift-provider").textContent = provider;
  $("gift-value").textContent = isItem
    ? `${status.item_quantity} × ${status.item_label}`
    : status.balance == null
      ? "Balance not known"
      : formatMoney(status.balance, giftCurrency());
  const line = $("gift-status");
  if (status.is_redeemable) {
    line.textContent = kind === "card" ? "Can pay" : `Redeemable: ${status.description}`;
    line.className = "ok";
  } else {
    // A card has no reason field: its status says blocked or expired, else it is empty.
    const why =
      kind === "card"
        ? status.status === "active" ? "no balance left" : status.status
        : REASONS[status.reason] ?? status.reason;
    line.textContent = `Not redeemable (${why})${status.description ? `: ${status.description}` : ""}`;
    line.className = "bad";
  }
  $("redeem-label").textContent = isItem
    ? `Items to redeem (up to ${status.eligible_quantity})`
    : kind === "card"
      ? `Amount to pay (${giftCurrency()}; empty: what is left of the order)`
      : `Amount (${giftCurrency()})`;
  $("redeem-button").textContent = kind === "card" ? "Pay with card" : "Redeem";
  $("reverse-button").textContent = kind === "card" ? "Give the last payment back" : "Reverse last redemption";
  $("redeem-amount").inputMode = isItem ? "numeric" : "decimal";
  $("redeem-amount").disabled = !status.is_redeemable;
  $("redeem-button").disabled = !status.is_redeemable;
}

/** What to pay by default: the balance up to what is left of the order, when both are known. */
function suggestedAmount() {
  const { kind, status } = lane.gift;
  if (status.type === "item" || lane.due === null) {
    return "";
  }
  const available = kind === "card" ? status.balance : status.eligible_value;
  return amountText(available == null ? lane.due : Math.min(available, lane.due), giftCurrency());
}

function showGift(data, kind) {
  lane.gift = {
    kind,
    token_id: data.token_id,
    display: data.display,
    provider: data.provider,
    status: kind === "card" ? data.card : data.gift,
  };
  hideOffer();
  lane.lastTransaction = null; // "Reverse" acts on what this gift did, not on an earlier one
  $("reverse-button").hidden = true;
  $("redeemed").textContent = "";
  renderGift();
  $("redeem-amount").value = suggestedAmount();
  if (lane.gift.status.is_redeemable) {
    $("redeem-amount").focus();
  }
  if (kind === "card" && pos) {
    const { balance, masked_number: number } = data.card;
    pos.postMessage(`Gift card ${number}: ${formatMoney(balance, giftCurrency())}`);
  }
}

function redeemParams() {
  const { kind, status, token_id: tokenId } = lane.gift;
  const text = $("redeem-amount").value.trim();
  if (status.type === "item") {
    if (!/^[1-9]\d{0,5}$/.test(text)) {
      showAlert("Enter a number of items", "a whole number, at least 1");
      return null;
    }
    return { token_id: tokenId, quantity: Number(text) };
  }
  if (kind === "card" && text === "") {
    return { token_id: tokenId }; // the agent takes what is left of the order
  }
  const amount = parseAmount(text, giftCurrency());
  if (!amount) {
    showAlert("Enter an amount", `e.g. ${amountText(1250, giftCurrency())}`);
    return null;
  }
  return { token_id: tokenId, amount };
}

function hideOffer() {
  lane.offer = null;
  $("offer").hidden = true;
}

/** insufficient_balance carries what is available: offer to redeem (or pay) that part. */
function offerPart(params, available) {
  const money = formatMoney(available, giftCurrency());
  const isItem = params.quantity !== undefined;
  lane.offer = isItem
    ? { token_id: params.token_id, quantity: available }
    : { token_id: params.token_id, amount: available };
  $("offer-text").textContent = isItem ? `Only ${available} left.` : `Only ${money} available.`;
  $("offer-button").textContent = isItem
    ? `Redeem ${available}`
    : lane.gift.kind === "card"
      ? `Pay ${money} by card`
      : `Redeem ${money}`;
  $("offer").hidden = false;
  $("offer-button").focus();
}

async function redeem(params) {
  hideOffer();
  if (pos && lane.gift.kind === "card") {
    await syncOrder(); // the debit is for the order as the POS has it now
  }
  const answer = await client.request("gift.redeem", params);
  if (answer.status !== "ok") {
    showError(answer.error, lane.gift.kind === "card" ? "Card payment" : "Redeem");
    const available = answer.error.details?.available;
    if (answer.error.code === "insufficient_balance" && available > 0) {
      offerPart(params, available);
    }
    return;
  }
  clearAlert();
  if (pos && answer.data.payment) {
    await addToPos(answer.data);
  }
  $("scan-input").focus();
}

$("redeem-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = lane.gift && redeemParams();
  if (params) {
    redeem(params);
  }
});

$("offer-button").addEventListener("click", () => {
  if (lane.offer) {
    redeem(lane.offer);
  }
});

/** What a redemption or reversal moved: "2 × Coffee", "$12.50", or "its value" when the
 *  provider's answer said neither (`gift` is null when the answer did not describe the gift). */
function movedText(result) {
  const { gift } = result;
  if (result.quantity != null) {
    return `${result.quantity} × ${gift?.item_label ?? "items"}`;
  }
  return result.amount != null ? formatMoney(result.amount, gift?.currency) : "its value";
}

function giftRedeemed(data) {
  const { redemption } = data;
  const { gift } = redemption;
  if (gift && lane.gift?.kind === "gift" && lane.gift.status.gift_id === redemption.gift_id) {
    lane.gift.status = gift;
    renderGift();
  }
  lane.lastTransaction = redemption.transaction_id;
  let left = "";
  if (redemption.quantity != null && gift?.item_quantity != null) {
    left = `; ${gift.item_quantity} left`;
  } else if (redemption.quantity == null && gift?.balance != null) {
    left = `; balance ${formatMoney(gift.balance, gift.currency)}`;
  }
  // A late one was found applied after a fault: its request was never answered with it.
  const redeemed = data.late ? "Found redeemed after a fault:" : "Redeemed";
  $("redeemed").textContent = `${redeemed} ${movedText(redemption)}${left}.`;
  $("reverse-button").hidden = false;
}

/** A card's CardBalance after a payment or its reversal (as the agent computes is_redeemable).
 *  `balance` is null when the card service did not say it: then it is not known, and the card
 *  is left to the service to accept or refuse. */
function cardWithBalance(card, balance) {
  const known = balance != null;
  return { ...card, balance, is_redeemable: card.status === "active" && (!known || balance > 0) };
}

function cardPaid(data) {
  const { payment, redemption, remaining } = data;
  if (lane.gift?.token_id === data.token_id) {
    lane.gift.status = cardWithBalance(lane.gift.status, redemption.balance_after);
    renderGift();
  }
  if (lane.order?.order_id === data.order_id) {
    lane.paid = lane.order.total - remaining;
  }
  lane.due = remaining;
  lane.lastTransaction = redemption.transaction_id;
  const left = remaining > 0 ? `${formatMoney(remaining, payment.currency)} left to pay` : "nothing left to pay";
  $("redeemed").textContent = `Paid ${formatMoney(payment.amount_cents, payment.currency)} by card ${data.display}; ${left}.`;
  $("reverse-button").hidden = false;
}

/** A redemption or card payment given back: the answer to this page's `gift.reverse`, or the
 *  `gift.reversed` / `card.reversed` event (any screen's reverse, a void, a refund). */
function showReversal(result) {
  let transactionId;
  if (result.card) {
    // A reversal's details are each null when the card service's answer did not give them.
    const { amount, balance_after: balance, currency: given, masked_number: number } = result.card;
    const code = given ?? currency();
    transactionId = result.card.transaction_id;
    const shown = lane.gift?.kind === "card" && lane.gift;
    if (shown && (number == null ? lane.lastTransaction === transactionId : shown.status.masked_number === number)) {
      lane.gift.status = cardWithBalance(lane.gift.status, balance);
      renderGift();
    }
    const what = amount == null ? "Payment" : formatMoney(amount, code);
    const left = balance == null ? "" : `; balance ${formatMoney(balance, code)}`;
    $("redeemed").textContent = `${what} given back to card ${number ?? `(payment ${transactionId})`}${left}.`;
  } else {
    const { reversal, display } = result;
    transactionId = reversal.transaction_id;
    if (reversal.gift && lane.gift?.kind === "gift" && lane.gift.status.gift_id === reversal.gift_id) {
      lane.gift.status = reversal.gift;
      renderGift();
    }
    $("redeemed").textContent = `Reversed: ${movedText(reversal)} back on ${display ? `gift ${display}` : "the gift"}.`;
  }
  if (lane.lastTransaction === transactionId) {
    // Only what "Reverse" would act on: a void giving back another tender leaves it offered.
    lane.lastTransaction = null;
    $("reverse-button").hidden = true;
  }
}

$("reverse-button").addEventListener("click", async () => {
  if (lane.lastTransaction) {
    const result = await send("gift.reverse", { transaction_id: lane.lastTransaction }, "Reverse");
    if (result) {
      showReversal(result);
    }
  }
});

// ---- the order ----------------------------------------------------------------------------------

const orderWord = (order) => ORDER_WORDS[order.status] ?? order.status;

/** Put `order` (an OrderInfo) on screen; another order id starts its panel afresh. */
function followOrder(order) {
  if (order.order_id !== lane.order?.order_id) {
    lane.paid = 0;
    lane.view = null;
    $("order-steps").replaceChildren();
    renderView();
  }
  lane.order = order;
  const lines = `${order.lines} line${order.lines === 1 ? "" : "s"}`;
  $("order-status").textContent =
    `Order ${order.order_id}: ${formatMoney(order.total, order.currency)}, ${lines}, ${orderWord(order)}`;
  $("paid-button").disabled = order.status !== "open";
  $("void-button").disabled = !["open", "abandoned"].includes(order.status);
}

/** An order event's OrderInfo; the order.get it leads to brings the lines and tenders. */
function showOrder(order) {
  followOrder(order);
  lane.due = order.status === "open" ? Math.max(order.total - lane.paid, 0) : null;
}

function clearOrder() {
  lane.order = null;
  lane.view = null;
  lane.paid = 0;
  lane.due = null;
  $("order-status").textContent = "No open order";
  $("order-steps").replaceChildren();
  $("paid-button").disabled = true;
  $("void-button").disabled = true;
  renderView();
}

/** The agent's answer to order.get (an OrderView): the whole order panel. */
function showView(view) {
  followOrder(view.order);
  lane.view = view;
  lane.paid = view.paid;
  // In a K-Series POS what is left to pay is the POS's (other tenders, cash), read before each
  // scan and payment; on its own the page has only the agent's word for it.
  if (!pos || view.order.status !== "open") {
    lane.due = view.order.status === "open" ? view.left_to_pay : null;
  }
  renderView();
  // What the coupon and loyalty flows hold for the order. A flow that holds nothing leaves its
  // panel as it is (a guest found with no order open; the last order's customer); an agent from
  // before the typed views (no `barcode`) leaves the loyalty panel to the events.
  const { coupons, loyalty } = view.flows ?? {};
  if (coupons) {
    showCoupons(coupons, view.order);
  }
  if (loyalty?.barcode) {
    showLoyalty(loyalty, view.order);
  }
}

function dueText(view) {
  const { order, paid, left_to_pay: left, tenders } = view;
  const money = (minor) => formatMoney(minor, order.currency);
  if (order.status === "open") {
    return [`Paid ${money(paid)}; ${left > 0 ? `left to pay ${money(left)}` : "nothing left to pay"}.`, ""];
  }
  if (!tenders.length) {
    return ["", ""];
  }
  if (order.status === "paid") {
    return [`Taken on this lane: ${money(paid)}.`, ""];
  }
  return paid > 0 ? [`${money(paid)} not given back yet.`, "bad"] : ["Every payment given back.", "ok"];
}

function tenderRow(tender, code) {
  const row = el("tr");
  const what = el("td", `${TENDER_KINDS[tender.flow] ?? tender.flow} `);
  what.append(el("span", tender.display, "code"));
  const amount =
    tender.amount != null
      ? formatMoney(tender.amount, tender.currency ?? code)
      : `${tender.quantity ?? 0} item${tender.quantity === 1 ? "" : "s"}`;
  const [words, tone] = TENDER_STATES[tender.state] ?? [tender.state, ""];
  row.append(what, el("td", amount), el("td", words, tone));
  return row;
}

/** The lines, tenders and what is left to pay of `lane.view`; hidden while none is known. */
function renderView() {
  const { view } = lane;
  $("order-items").hidden = !view;
  $("order-tenders").hidden = !view?.tenders.length;
  const [due, tone] = view ? dueText(view) : ["", ""];
  $("order-due").textContent = due;
  $("order-due").className = tone;
  if (!view) {
    return;
  }
  const code = view.order.currency;
  const lines = view.lines.map((line) => {
    const row = el("tr");
    row.append(el("td", line.name), el("td", String(line.quantity)), el("td", formatMoney(line.amount, code)));
    return row;
  });
  $("order-items").tBodies[0].replaceChildren(...lines);
  $("order-view-tax").textContent = formatMoney(view.tax, code);
  $("order-view-total").textContent = formatMoney(view.order.total, code);
  $("order-tenders").tBodies[0].replaceChildren(...view.tenders.map((t) => tenderRow(t, code)));
}

function stepLine(step) {
  const error = step.error ? ` (${describeError(step.error).title}: ${step.error.message})` : "";
  const outcome = step.ok ? "done" : "failed";
  return el("li", `${step.flow} ${step.step}: ${outcome}. ${step.detail}${error}`, step.ok ? "ok" : "bad");
}

/** order.committed, order.voided, order.refunded: the order's end and what each flow did. */
function orderClosed(data) {
  const items = data.steps.map(stepLine);
  if (data.reason) {
    items.unshift(el("li", data.reason, "muted"));
  }
  for (const flow of data.queued ?? []) {
    items.push(el("li", `${flow}: not done yet, retried in the background`, "warn"));
  }
  if (lane.order?.status === "open" && lane.order.order_id !== data.order.order_id) {
    // An earlier order's refund while a sale is open: the open order stays on screen.
    orderNote(`Order ${data.order.order_id} ${orderWord(data.order)}:`, "muted");
    $("order-steps").append(...items);
    return;
  }
  showOrder(data.order);
  $("order-steps").replaceChildren(...items);
}

function orderNote(text, className) {
  $("order-steps").append(el("li", text, className));
}

/** "name; amount; product code" lines → order lines, or a problem to show. */
function parseLines(text, code) {
  const rows = text.split("\n").map((row) => row.trim()).filter(Boolean);
  const lines = [];
  for (const [index, row] of rows.entries()) {
    const [name, amount, sku] = row.split(";").map((part) => part.trim());
    const minor = parseAmount(amount ?? "", code);
    if (!name || minor === null) {
      return { problem: `line ${index + 1}: write name; amount; product code (optional)` };
    }
    lines.push({ id: String(index + 1), name, quantity: 1, amount: minor, ...(sku ? { sku } : {}) });
  }
  return lines.length ? { lines } : { problem: "the order needs at least one line" };
}

$("order-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = $("order-currency").value.trim().toUpperCase();
  const { lines, problem } = parseLines($("order-lines").value, code);
  const tax = parseAmount($("order-tax").value || "0", code);
  if (problem || tax === null) {
    showAlert("Check the order", problem ?? "the tax is not an amount");
    return;
  }
  const subtotal = lines.reduce((sum, line) => sum + line.amount, 0);
  const order = {
    order_id: $("order-id").value.trim(),
    lines,
    subtotal,
    tax,
    total: subtotal + tax,
    currency: code,
  };
  if (await send("order.update", order, "Order")) {
    $("scan-input").focus();
  }
});

async function closeOrder(op, context) {
  if (lane.order) {
    const closed = await send(op, { order_id: lane.order.order_id }, context);
    if (closed) {
      orderClosed(closed);
    }
  }
}

$("paid-button").addEventListener("click", () => closeOrder("order.paid", "Order paid"));
$("void-button").addEventListener("click", () => closeOrder("order.void", "Void order"));

// ---- the order as the agent holds it (order.get) -----------------------------------------------

// Events are not kept for a screen that was away: one that (re)connects, or whose agent comes
// back online, asks for the open order ("open"); after each event that moves an order or its
// money it asks again for the order on screen ("followed"). One read at a time: whatever is
// asked meanwhile is read once after it, so the last answer shown is the newest.
let reading = false;
let wanted = null; // null | "followed" | "open"

function readOrder(which) {
  wanted = wanted === "open" ? "open" : which;
  if (!reading) {
    drainReads();
  }
}

async function drainReads() {
  reading = true;
  try {
    // Not while the broker or the agent is away: the read when both are back is "open".
    while (wanted && linkReady()) {
      const which = wanted;
      wanted = null;
      const params = which === "followed" && lane.order ? { order_id: lane.order.order_id } : {};
      orderRead(params, await client.read("order.get", params));
    }
  } finally {
    reading = false;
  }
}

function orderRead(params, answer) {
  const asked = params.order_id;
  if (asked && asked !== lane.order?.order_id) {
    return; // another order came on screen meanwhile; it is read after this
  }
  if (answer.status === "ok") {
    showView(answer.data);
    return;
  }
  const { code } = answer.error;
  if (code === "not_found") {
    if (!asked && lane.order?.status === "open") {
      readOrder("followed"); // it closed while this screen was away: show how it ended
    } else if (!asked && !lane.order) {
      clearOrder();
    } else if (asked && lane.order.status === "open") {
      clearOrder(); // the agent no longer knows it: it is not open any more
    } else if (asked) {
      lane.view = null; // a closed order the agent no longer keeps: its events said enough
      renderView();
    }
  } else if (code === "no_answer" && !linkReady()) {
    // Given up as the broker or the agent went away: read again when both are back.
  } else if (code !== "unknown_op") {
    // unknown_op: an agent from before order.get; the page follows the events alone.
    showError(answer.error, "Reading the order");
  }
}

// The read needs both: answers subscribed to, and an agent online to give them.
const link = { subscribed: false, agentOnline: false };
const linkReady = () => link.subscribed && link.agentOnline;

function linkChanged(change) {
  const ready = linkReady();
  Object.assign(link, change);
  if (!ready && linkReady()) {
    readOrder("open");
  }
}

client.on("subscribed", () => linkChanged({ subscribed: true }));
client.on("connection", (state) => {
  if (state === "connecting" || state === "disconnected") {
    linkChanged({ subscribed: false, agentOnline: false }); // the agent's state comes again
  }
});
client.on("state", (agent) => {
  const online = agent.state === "online";
  linkChanged({ agentOnline: online });
  if (!online) {
    client.dropReads("The lane agent went offline before the answer came.");
  }
});

// ---- coupons (PETZ) -----------------------------------------------------------------------------

// Each panel is built by the same pieces from the events (as they come) and from `flows` of
// order.get (for a screen that missed them), so every screen shows the same thing.

const AUTHORIZED_TEXT = "Authorized: apply the discounts, then take payment.";

function couponValue(coupon) {
  if (coupon.amount_off != null) {
    return `${formatMoney(coupon.amount_off, currency())} off`;
  }
  return coupon.percent_off != null ? `${coupon.percent_off}% off` : "";
}

function couponStatus(text, tone) {
  $("coupon-status").textContent = text;
  $("coupon-status").className = tone;
}

/** The customer line and their wallet; `display` is the masked phone number. */
function renderCustomer(display, orderId, customer) {
  $("coupons").hidden = false;
  $("coupon-customer").textContent = `Customer ${display} on order ${orderId}`;
  const wallet = customer.wallet.map((coupon) => {
    const expires = coupon.expires_at ? `, until ${new Date(coupon.expires_at).toLocaleDateString()}` : "";
    return el("li", `${coupon.description} (${couponValue(coupon)}${expires})`);
  });
  if (!wallet.length) {
    wallet.push(el("li", "No coupons in the wallet", "muted"));
  }
  $("coupon-wallet").replaceChildren(...wallet);
}

/** The discount per coupon (or why one does not apply) of a CouponAuthorization. */
function renderAuthorization(authorization) {
  const rows = authorization.discounts.map((discount) => {
    const row = el("tr");
    const amount = discount.rejected
      ? el("td", `not applied: ${discount.reason ?? discount.rejected}`, "bad")
      : el("td", formatMoney(discount.amount, currency()));
    row.append(el("td", discount.description), amount);
    return row;
  });
  $("coupon-discounts").tBodies[0].replaceChildren(...rows);
  $("coupon-total").textContent = formatMoney(authorization.total_discount, currency());
  $("coupon-discounts").hidden = false;
}

const captureText = (capture) =>
  `Captured after payment: ${capture.coupon_ids.length} coupon(s), ${formatMoney(capture.total_discount, currency())} off.`;

const staleText = (reason) => `The order changed: authorize the coupons again${reason ? ` (${reason})` : ""}.`;

function showCustomer(data) {
  renderCustomer(data.display, data.order_id, data.customer);
  $("coupon-discounts").hidden = true;
  couponStatus("", "");
}

function showAuthorization(data) {
  renderAuthorization(data.authorization);
  couponStatus(AUTHORIZED_TEXT, "ok");
}

function showCapture(data) {
  couponStatus(captureText(data.capture), "ok");
}

function showInvalidated(data) {
  couponStatus(staleText(data.reason), "warn");
}

/** `flows.coupons` of order.get (a CouponView) for `order`: the panel the events built. */
function showCoupons(coupons, order) {
  const { customer } = coupons;
  if (customer) {
    renderCustomer(customer.phone_masked, order.order_id, customer);
  } else {
    // Attached by an agent that did not keep the customer: only PETZ's id for them is known.
    $("coupons").hidden = false;
    $("coupon-customer").textContent = `Customer ${coupons.consumer_id} on order ${order.order_id}`;
    $("coupon-wallet").replaceChildren();
  }
  if (coupons.auth) {
    renderAuthorization(coupons.auth);
  } else {
    $("coupon-discounts").hidden = true;
  }
  if (coupons.released) {
    couponStatus(`Released when the order was ${orderWord(order)}: no coupon was redeemed.`, "muted");
  } else if (coupons.capture) {
    couponStatus(captureText(coupons.capture), "ok");
  } else if (coupons.stale) {
    couponStatus(staleText(coupons.stale_reason), "warn");
  } else {
    couponStatus(coupons.auth ? AUTHORIZED_TEXT : "", coupons.auth ? "ok" : "");
  }
}

$("authorize-button").addEventListener("click", async () => {
  const params = lane.order?.status === "open" ? { order_id: lane.order.order_id } : {};
  const authorized = await send("coupon.authorize", params, "Coupons");
  if (authorized) {
    showAuthorization(authorized);
  }
});

// ---- loyalty (Punchh) ---------------------------------------------------------------------------

function selectionOf(discount) {
  const type = discount.discount_type;
  if (type === "discount_amount") {
    return { discount_type: type, discount_value: discount.amount };
  }
  if (type === "redemption_code") {
    return { discount_type: type, token_id: lane.loyalty.token_id };
  }
  return { discount_type: type, discount_id: discount.discount_id };
}

function loyaltyStatus(text, tone) {
  $("loyalty-status").textContent = text;
  $("loyalty-status").className = tone;
}

/** The guest line and their rewards; `display` (the scanned identifier, masked) when known. */
function renderGuest(guest, display) {
  $("loyalty").hidden = false;
  const facts = [
    guest.points_balance != null ? `${guest.points_balance} points` : "",
    guest.banked_rewards ? `${formatMoney(guest.banked_rewards, currency())} banked` : "",
    guest.membership_level ?? "",
  ].filter(Boolean);
  const contact = guest.phone_masked ?? guest.email_masked ?? display;
  $("loyalty-guest").textContent =
    `${guest.first_name ?? "Guest"}${contact ? ` (${contact})` : ""}${facts.length ? `: ${facts.join(", ")}` : ""}`;
  $("loyalty-rewards").replaceChildren(
    ...guest.rewards.map((reward) => {
      const value = reward.amount != null ? ` (${formatMoney(reward.amount, currency())})` : "";
      return el("li", `Reward: ${reward.name}${value}`);
    }),
  );
}

/** The look-up's discounts (`loyalty.user`) as check boxes to choose from. */
function renderOffers(discounts) {
  const boxes = discounts.map((discount, index) => {
    const label = el("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = String(index);
    box.checked = discount.selected;
    const fit = discount.qualified === false ? " (does not qualify for this order)" : "";
    label.append(box, el("span", `${discount.name}: ${formatMoney(discount.amount, currency())}${fit}`));
    return label;
  });
  if (!boxes.length) {
    boxes.push(el("p", "No discounts for this order (send the order first).", "muted"));
  }
  $("loyalty-discounts").replaceChildren(...boxes);
}

function lookupError(data) {
  const error = data.discounts_error;
  return error ? `Discounts unavailable: ${describeError(error).title}: ${error.message}` : "";
}

/** A check's granted lines (negative amounts, as the POS adds them), refusals and total. */
function renderChecked(check) {
  const rows = check.lines.map((line) => {
    const row = el("tr");
    row.append(el("td", line.name), el("td", formatMoney(line.amount, currency())));
    return row;
  });
  for (const failure of check.failures) {
    const row = el("tr");
    row.append(el("td", failure.name ?? failure.discount_type ?? "discount"));
    row.append(el("td", `refused: ${failure.messages.join(" ")}`, "bad"));
    rows.push(row);
  }
  $("loyalty-lines").tBodies[0].replaceChildren(...rows);
  $("loyalty-total").textContent = formatMoney(check.total, currency());
  $("loyalty-lines").hidden = false;
}

const checkedText = (barcode) =>
  `Checked: nothing is redeemed before the order is paid. Receipt barcode ${barcode}.`;

function receiptText(receipt) {
  const earned = receipt.points_earned != null ? `, ${receipt.points_earned} points earned` : "";
  return `Receipt barcode ${receipt.barcode}: ${receipt.checked_in ? "guest checked in" : "no guest check-in"}${earned}.`;
}

// ---- identify: a phone or email that found no guest (loyalty.otp_send / otp_verify / signup) ---

function identifyStatus(text, tone = "") {
  $("identify-status").textContent = text;
  $("identify-status").className = tone;
}

/** `loyalty.invalid` for a contact nobody has: offer a code (Punchh signs the guest in or up
 *  with it) or a sign-up. Only the agent's masked `display` is ever shown. */
function offerIdentify(data) {
  if (data.error.code !== "not_found") {
    return;
  }
  lane.identify = { token_id: data.token_id, display: data.display };
  $("identify").hidden = false;
  $("identify-contact").textContent = `No loyalty guest for ${data.display}.`;
  $("otp-form").hidden = true;
  $("otp-send-button").hidden = false;
  identifyStatus("");
}

function hideIdentify() {
  lane.identify = null;
  $("identify").hidden = true;
  $("otp-code").value = "";
}

$("otp-send-button").addEventListener("click", async () => {
  if (!lane.identify) {
    return;
  }
  const sent = await send("loyalty.otp_send", { token_id: lane.identify.token_id }, "Send code");
  if (sent) {
    identifyStatus(`Code sent by ${sent.channel === "sms" ? "SMS" : "email"} to ${sent.display}.`, "ok");
    $("otp-form").hidden = false;
    $("otp-code").focus();
  }
});

$("otp-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const code = $("otp-code").value.trim();
  $("otp-code").value = ""; // the code leaves the page at once
  const params = { token_id: lane.identify.token_id, code, accepted_terms: $("otp-terms").checked };
  if (await send("loyalty.otp_verify", params, "Verify code")) {
    hideIdentify(); // the guest arrives as loyalty.user
  }
});

$("signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const params = { token_id: lane.identify.token_id, accepted_terms: $("signup-terms").checked };
  for (const [name, id] of [["first_name", "signup-first"], ["last_name", "signup-last"]]) {
    const value = $(id).value.trim();
    if (value) {
      params[name] = value;
    }
  }
  params.marketing_sms = $("signup-sms").checked;
  if (await send("loyalty.signup", params, "Sign up")) {
    $("signup-form").reset();
    hideIdentify();
  }
});

function showGuest(data) {
  hideIdentify();
  lane.loyalty = data;
  renderGuest(data.guest, data.display);
  renderOffers(data.discounts);
  $("loyalty-lines").hidden = true;
  const error = lookupError(data);
  loyaltyStatus(error, error ? "bad" : "");
}

function showChecked(data) {
  renderChecked(data);
  loyaltyStatus(checkedText(data.barcode), "ok");
}

function showReceipt(data) {
  loyaltyStatus(receiptText(data), "ok");
}

/** `flows.loyalty` of order.get (a LoyaltyView) for `order`: the panel the events built. The
 *  look-up's discounts are not kept by the agent: the check boxes stay those of this page's
 *  `loyalty.user` for the same guest and order, else the guest's next scan lists them. */
function showLoyalty(loyalty, order) {
  const closed = ["paid", "refunded"].includes(order.status);
  if (!loyalty.guest) {
    if (closed) {
      showReceipt(loyalty); // paid without a guest: only the receipt, as loyalty.receipt says
    }
    return;
  }
  const seen = lane.loyalty;
  const same = seen?.order_id === order.order_id && seen.guest.user_id === loyalty.guest.user_id;
  renderGuest(loyalty.guest, same ? seen.display : null);
  if (!same) {
    lane.loyalty = null;
    const hint = "Scan the guest again to list their discounts; “Check discounts” checks the basket again.";
    $("loyalty-discounts").replaceChildren(el("p", hint, "muted"));
  }
  const check = loyalty.committed ?? loyalty.check;
  if (check) {
    renderChecked(check);
  } else {
    $("loyalty-lines").hidden = true;
  }
  if (closed) {
    showReceipt(loyalty);
  } else if (!loyalty.committed && ["void", "abandoned"].includes(order.status)) {
    loyaltyStatus(`Nothing redeemed: the order was ${orderWord(order)}.`, "muted");
  } else if (check) {
    loyaltyStatus(checkedText(loyalty.barcode), "ok");
  } else {
    const error = same ? lookupError(seen) : "";
    loyaltyStatus(error, error ? "bad" : "");
  }
}

$("loyalty-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const chosen = [...$("loyalty-discounts").querySelectorAll("input:checked")];
  const selections = chosen.map((box) => selectionOf(lane.loyalty.discounts[Number(box.value)]));
  const checked = await send("loyalty.select", { selections }, "Loyalty");
  if (checked) {
    showChecked(checked);
  }
});

// ---- events -------------------------------------------------------------------------------------

const invalid = (context) => (data) => showError(data.error, `${context} ${data.display}`);

const EVENTS = {
  "gift.validated": (data) => showGift(data, "gift"),
  "card.balance": (data) => showGift(data, "card"),
  "gift.invalid": invalid("Gift"),
  "card.invalid": invalid("Gift card"),
  "coupon.invalid": invalid("Coupons for"),
  "loyalty.invalid": (data) => {
    invalid("Loyalty for")(data);
    offerIdentify(data);
  },
  "gift.redeemed": giftRedeemed,
  "gift.reversed": (data) => showReversal(data),
  "card.reversed": (data) => showReversal({ card: data.reversal }),
  "card.paid": cardPaid,
  "order.updated": (data) => showOrder(data.order),
  "order.committed": orderClosed,
  "order.voided": orderClosed,
  "order.refunded": orderClosed,
  "order.abandoned": ({ order }) =>
    orderNote(`Order ${order.order_id} was abandoned: a new order replaced it.`, "warn"),
  "outbox.delivered": ({ entry }) =>
    orderNote(`Order ${entry.order_id}: ${entry.flow} done after a retry.`, "ok"),
  "outbox.dead": ({ entry, error }) =>
    orderNote(`Order ${entry.order_id}: ${entry.flow} given up (${error}); settle it by hand.`, "bad"),
  "coupon.customer": showCustomer,
  "coupon.authorized": showAuthorization,
  "coupon.captured": showCapture,
  "coupon.invalidated": showInvalidated,
  "loyalty.user": showGuest,
  "loyalty.discounts": showChecked,
  "loyalty.stale": (data) => showError(data.error, "Loyalty discounts no longer checked"),
  "loyalty.receipt": showReceipt,
};

// Events after which the order on screen may have other lines, tenders or state.
const ORDER_EVENTS = new Set([
  "gift.redeemed",
  "gift.reversed",
  "card.paid",
  "card.reversed",
  "order.updated",
  "order.committed",
  "order.voided",
  "order.refunded",
  "outbox.delivered",
]);

client.on("event", (event) => {
  EVENTS[event.type]?.(event.data);
  if (ORDER_EVENTS.has(event.type)) {
    readOrder("followed");
  }
});

// ---- K-Series web extension ---------------------------------------------------------------------

/** Tell the agent about the POS's open order (total incl. tax), and what is left to pay on it. */
async function syncOrder() {
  let account;
  try {
    account = await pos.currentAccount();
  } catch (error) {
    showAlert("Could not read the order from the POS", error.message);
    return;
  }
  if (account && (await send("order.update", accountToOrder(account, currency()), "Order from the POS"))) {
    lane.due = accountDue(account);
  }
}

/** Add a card payment the agent made to the POS sale; give it back if the POS refuses it. */
async function addToPos(result) {
  const { amount_cents: cents, payment_method_code: method, currency: code } = result.payment;
  try {
    await pos.addPayment(cents, method);
  } catch (error) {
    const title = "The POS did not take the card payment";
    const back = await send("gift.reverse", { transaction_id: result.card.transaction_id }, title);
    if (back) {
      showReversal(back);
      showAlert(title, `${error.message}. ${formatMoney(cents, code)} went back to the card.`);
    }
    return;
  }
  pos.checkout();
}

// ---- start --------------------------------------------------------------------------------------

$("lane-name").textContent = settings.base;
document.title = `Lane ${settings.base}`;
$("setting-ws").value = settings.ws;
$("setting-base").value = settings.base;
$("setting-username").value = settings.username;
$("setting-password").value = settings.password;
$("order-id").value = `order-${Date.now().toString(36)}`;

if (pos) {
  $("kseries-mode").hidden = false;
  $("pos-order-button").hidden = false;
  $("pos-order-button").addEventListener("click", syncOrder);
  pos.onScan((text, symbology) => {
    if (!text) {
      showAlert("The POS reported a scan without a code", "scan again or type it");
      return;
    }
    // The order first, so the card's balance arrives to a page that knows what is left to pay.
    syncOrder().then(() => scanInject(text, symbology));
  });
}

if (settings.problem) {
  showAlert("Settings", settings.problem);
} else {
  client.start();
}
