// The page's settings come from its URL, so a lane's display (or a K-Series web extension
// button) is configured by the address it opens; the settings panel shows and edits them.

export const DEFAULT_BASE = "lane-agent/s1/l1";
// The port of docs/security/lane-agent.conf's websocket listener for POS screens.
export const DEFAULT_WS_PORT = 9001;

/**
 * Query parameters: ws (broker websocket URL), base (the lane's base topic), or store and lane
 * (with prefix, default lane-agent) to build it, username, password.
 * `where` is window.location (or any {search, hostname, protocol}).
 */
export function readSettings(where) {
  const query = new URLSearchParams(where.search);
  const scheme = where.protocol === "https:" ? "wss" : "ws";
  const host = where.hostname || "127.0.0.1";
  const store = query.get("store");
  const lane = query.get("lane");
  const built = store && lane ? `${query.get("prefix") || "lane-agent"}/${store}/${lane}` : null;
  const base = (query.get("base") || built || DEFAULT_BASE).replace(/\/+$/, "");
  return {
    ws: query.get("ws") || `${scheme}://${host}:${DEFAULT_WS_PORT}/`,
    base,
    username: query.get("username") || "",
    password: query.get("password") || "",
    problem: baseProblem(base),
  };
}

/** Why a base topic cannot be used, or null: it is subscribed to, so no wildcards. */
export function baseProblem(base) {
  if (/[+#]/.test(base)) {
    return `base topic ${base} must not contain + or #`;
  }
  return base.split("/").length < 3 ? `base topic ${base} is not prefix/store/lane` : null;
}
