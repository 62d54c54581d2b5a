// A stand-in for the Lightspeed K-Series POS around a web extension: the pos_* functions of
// seed 000, which only the real POS app provides (a mock because no real one can run here).
// Every call is recorded in window.__pos.calls; the test scans with __pos.scan(text) and sets
// the open account or a payment refusal in __pos before acting.
(() => {
  const pos = {
    calls: [],
    refusePayment: null,
    account: {
      identifier: "KS-1",
      totalAmount: 2000,
      paidAmount: 0,
      taxAmount: 150,
      transactionLines: [
        { quantity: 100, amount: 1700, text: "Pizza", itemSku: "PIZ-1" },
        { quantity: 100, amount: 150, text: "Soda", itemSku: "SOD-1" },
      ],
    },
  };
  window.__pos = pos;
  const record = (name, ...args) => pos.calls.push({ name, args });
  window.pos_onBarcodeScanEvent = (callback) => {
    record("pos_onBarcodeScanEvent");
    pos.scan = (text) => callback(text);
  };
  window.pos_onNFCEvent = (callback) => {
    record("pos_onNFCEvent");
    pos.tap = (uid) => callback({ uid });
  };
  window.pos_getCurrentAccount = (callback) => {
    record("pos_getCurrentAccount");
    callback({ error: null, data: pos.account });
  };
  window.pos_addPayment = (amountCents, paymentMethodCode, callback) => {
    record("pos_addPayment", amountCents, paymentMethodCode);
    const refused = pos.refusePayment && { description: pos.refusePayment };
    callback(refused ? { error: refused } : { error: null, data: { paid: amountCents } });
  };
  window.pos_navigateToCheckoutView = () => record("pos_navigateToCheckoutView");
  window.pos_postMessage = (message) => record("pos_postMessage", message);
})();
