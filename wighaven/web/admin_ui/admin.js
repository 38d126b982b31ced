/*
 * WigHaven Gateway admin panel: one static page on the admin API
 * (/_gateway/api/v1, contract v1) and nothing else. Vanilla ES2020, no build,
 * loaded as a module under a strict CSP: no inline script or style, no eval,
 * and every piece of API data reaches the page through textContent (never
 * innerHTML), so nothing the API returns can become markup.
 *
 * Routing is by the URL's fragment: #/overview, #/spaces, #/spaces/new,
 * #/spaces/<name>, #/users, #/keys, #/sessions, #/audit, #/logs, #/requests,
 * #/requests/<id>, #/config.
 *
 * Stable hooks for browser tests (data-testid unless marked #id):
 *   Shell     #main, #screen; h1#screen-title [screen-title] (focused on navigation);
 *             nav links [nav-<screen>] (aria-current="page" on the active one);
 *             [who] (signed-in user), form#signout-form, input#signout-csrf, [signout];
 *             #notices [notices] > .notice [notice] with data-kind="ok|error|info".
 *   States    [loading], [empty], [load-error] with its [retry] button. Lists sit in
 *             section[list] whose aria-busy is "true" while (re)loading: after a change,
 *             wait for aria-busy="false" before using the new rows.
 *   Dialogs   dialog[confirm-dialog] with [confirm] / [cancel] and, on failure, [dialog-error];
 *             dialog[secret-dialog] with output[secret-once], [copy], [close].
 *             Every dialog is a modal <dialog>: Escape closes it, Tab stays inside.
 *   Forms     [form-errors] (summary at the top, lists fields it could not place),
 *             p[field-error-<field>] next to its input, <field> as the API names it
 *             (name, path, hosts, access, upstreams[0].url, upstreams[1].token...).
 *   Overview  [live-state]; [stat-rps] [stat-p95] [stat-error-rate] [stat-requests]
 *             [stat-in-flight] [stat-websockets] [stat-streams]; tr[overview-route-<name>]
 *             with [upstream-state] badges (data-state="up|ejected|down").
 *   Spaces    [add-space] (link to #/spaces/new); tr[space-row-<name>] (data-source=store|file|env),
 *             [space-source-<name>], switch [space-toggle-<name>] (store routes only),
 *             [space-edit-<name>]. Editor: form#space-form [space-form], inputs #sf-name, #sf-enabled,
 *             #sf-path, #sf-hosts, radios name=sf-access (#sf-access-opt-public|signed_in|list) + #sf-access-list,
 *             #sf-balance, #sf-affinity, details#sf-advanced (#sf-strip-path, #sf-retries,
 *             #sf-health-path, #sf-health-interval); per upstream i: radios name=sf-up-<i>-kind
 *             (space|url), #sf-up-<i>-space, #sf-up-<i>-url, #sf-up-<i>-token, #sf-up-<i>-clear,
 *             #sf-up-<i>-weight, [test-connection-<i>], output[test-result-<i>] (data-ok="true|false"),
 *             [remove-upstream-<i>], [add-upstream]; [save], [cancel], [remove];
 *             [stale-banner] with [reload] after a 412; [read-only-note] on file/env routes.
 *   Users     [add-user]; tr[user-row-<u>]; [user-actions-<u>] opens a menu of
 *             [user-roles] [user-invite] [user-password] [user-totp] [user-disable]|[user-enable]
 *             [user-delete]. Add dialog [user-dialog]: #nu-username, #nu-email, #nu-roles,
 *             radios name=nu-method (password|invite), #nu-password, #nu-expires, [save].
 *             Roles dialog [roles-dialog] #ur-roles; password dialog [password-dialog]
 *             #rp-password, #rp-confirm; the invite link appears in [secret-dialog].
 *   API keys  [create-key]; #keys-user filter; tr[key-row-<id>] (data-status=active|expired; a revoked
 *             key is gone from the list);
 *             [revoke-key-<id>]. Create dialog [key-dialog]: #ck-user, #ck-name, #ck-route, #ck-days,
 *             [save]; then the key in [secret-dialog] (shown once).
 *   Sessions  #sessions-user filter; tr[session-row-<id>]; [revoke-session-<id>].
 *   Audit     #audit-actor, #audit-kind; tr[audit-row-<id>]; [audit-toggle-<id>] expands
 *             tr[audit-detail-<id>]; [load-more].
 *   Logs      #logs-level, #logs-text, switch #logs-follow [follow]; ol[log-lines] >
 *             li[log-line-<id>]; [load-more].
 *   Requests  #req-route, #req-status, #req-user, [refresh]; tr[request-row-<id>] with
 *             a[request-link-<id>]; [load-more]. Detail: [request-facts], table[request-headers],
 *             table[response-headers].
 *   Config    textarea#config-export [config-export], [download], [copy-export], [refresh-export];
 *             textarea#config-import [config-import], input#config-file, [preview], [apply],
 *             [diff] with [diff-added] [diff-changed] [diff-removed] [diff-unchanged];
 *             [import-errors].
 */

const API = "/_gateway/api/v1";
const ADMIN_PATH = "/_gateway/admin/";
const LOGIN_PATH = "/_gateway/login";
const POLL_MS = 2000;
const DASH = "\u2014";

const app = {
  me: null,
  csrf: null,        // the session's CSRF token, fetched once, again after a 403 csrf
  gen: 0,            // bumped on every navigation: late answers of a left screen are dropped
  cleanups: [],      // timers and listeners of the current screen
  routeNames: null,  // {at, names}: for the route selects, kept briefly
  leaving: false,    // on the way to the sign-in page
};

/* ---------------------------------------------------------------- DOM helpers */

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;
const $ = (sel, root = document) => root.querySelector(sel);

/** An element: props are attributes ("class", "text", "testid", "on<event>" handlers
    and the value/checked properties are special); children are nodes or text. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "testid") el.dataset.testid = value;
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else if (key === "value" || key === "checked") el[key] = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
// Icons: static path data only (never API data), drawn with currentColor.
const ICONS = {
  info: [["circle", { cx: 10, cy: 10, r: 8.25 }], ["path", { d: "M10 9v5.2" }], ["circle", { cx: 10, cy: 5.9, r: 0.6, fill: "currentColor" }]],
  error: [["circle", { cx: 10, cy: 10, r: 8.25 }], ["path", { d: "M10 5.8v5" }], ["circle", { cx: 10, cy: 14.1, r: 0.6, fill: "currentColor" }]],
  warn: [["path", { d: "M10 2.8 18 16.5H2z" }], ["path", { d: "M10 8v3.6" }], ["circle", { cx: 10, cy: 14, r: 0.5, fill: "currentColor" }]],
  check: [["path", { d: "M4.5 10.5l3.5 3.5L15.5 6.5" }]],
  copy: [["rect", { x: 6.5, y: 6.5, width: 10, height: 10, rx: 2 }], ["path", { d: "M13.5 4H5.5A2 2 0 0 0 3.5 6v7.5" }]],
  plus: [["path", { d: "M10 4.5v11M4.5 10h11" }]],
  close: [["path", { d: "M5.5 5.5l9 9M14.5 5.5l-9 9" }]],
  trash: [["path", { d: "M4 6h12M8 6V4h4v2M5.5 6l.8 10h7.4l.8-10" }]],
  more: [["circle", { cx: 4.5, cy: 10, r: 0.9, fill: "currentColor" }], ["circle", { cx: 10, cy: 10, r: 0.9, fill: "currentColor" }], ["circle", { cx: 15.5, cy: 10, r: 0.9, fill: "currentColor" }]],
  refresh: [["path", { d: "M15.5 8A6 6 0 1 0 16 11.5" }], ["path", { d: "M16 3.5V8h-4.5" }]],
  download: [["path", { d: "M10 3.5v9M6 9l4 4 4-4M4 16.5h12" }]],
  key: [["circle", { cx: 7, cy: 13, r: 3.5 }], ["path", { d: "M9.5 10.5 16 4M13.5 6.5l2 2" }]],
  lock: [["rect", { x: 4.5, y: 9, width: 11, height: 8, rx: 2 }], ["path", { d: "M7 9V6.5a3 3 0 0 1 6 0V9" }]],
  bolt: [["path", { d: "M11 2.5 4.5 11H10l-1 6.5L15.5 9H10z" }]],
  inbox: [["path", { d: "M3 11.5 5 4.5h10l2 7v4H3z" }], ["path", { d: "M3 11.5h4l1 2h4l1-2h4" }]],
};

function icon(name, size = 18) {
  const svg = document.createElementNS(SVG_NS, "svg");
  for (const [k, v] of Object.entries({ width: size, height: size, viewBox: "0 0 20 20", fill: "none",
    stroke: "currentColor", "stroke-width": 1.8, "stroke-linecap": "round", "stroke-linejoin": "round",
    "aria-hidden": "true", focusable: "false" })) svg.setAttribute(k, String(v));
  for (const [tag, attrs] of ICONS[name] || []) {
    const part = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) part.setAttribute(k, String(v));
    svg.append(part);
  }
  return svg;
}

function button(label, props = {}, iconName = null) {
  return h("button", { type: "button", class: "btn btn-secondary", ...props }, iconName ? icon(iconName, 16) : null, label);
}

function setBusy(btn, busy) {
  btn.disabled = busy;
  btn.classList.toggle("busy", busy);
  btn.setAttribute("aria-busy", busy ? "true" : "false");
}

function badge(text, kind = "", props = {}) {
  return h("span", { class: `badge ${kind}`.trim(), ...props }, text);
}

/* ---------------------------------------------------------------- formatting */

const num = (x) => (typeof x === "number" && Number.isFinite(x) ? x : null);
const fixed = (x, d) => { const t = x.toFixed(d); return /^-[0.]+$/.test(t) ? t.slice(1) : t; };
const grouper = new Intl.NumberFormat("en-US");
const count = (x) => (num(x) === null ? DASH : grouper.format(Math.trunc(x)));

function msParts(x) {
  x = num(x);
  if (x === null) return [DASH, ""];
  if (x < 1) return [fixed(x, 2), "ms"];
  if (x < 10) return [fixed(x, 1), "ms"];
  if (x < 1000) return [fixed(x, 0), "ms"];
  if (x < 10000) return [fixed(x / 1000, 2), "s"];
  return [fixed(x / 1000, 1), "s"];
}
function pctParts(x) {
  x = num(x);
  if (x === null) return [DASH, ""];
  const p = x * 100;  // error rates are ratios (0..1)
  if (p === 0) return ["0", "%"];
  if (p < 1) return [fixed(p, 2), "%"];
  if (p < 10) return [fixed(p, 1), "%"];
  return [fixed(p, 0), "%"];
}
function rpsText(x) {
  x = num(x);
  if (x === null) return DASH;
  if (x === 0) return "0";
  if (x < 10) return fixed(x, 2);
  if (x < 100) return fixed(x, 1);
  return grouper.format(Math.round(x));
}
const joinParts = ([v, u]) => (u ? `${v} ${u}` : v);
const rateClass = (r) => (!num(r) ? "" : r >= 0.05 ? "bad" : "warn");

function durationText(seconds) {
  const s = Math.max(0, Math.floor(num(seconds) || 0));
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${m} min`;
  if (m) return `${m} min`;
  return `${s} s`;
}

const fullDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dayTime = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

function relativeText(ts) {
  const diff = ts - Date.now() / 1000, a = Math.abs(diff);
  const [value, unit] = a < 45 ? [diff, "second"] : a < 2700 ? [diff / 60, "minute"] : a < 64800 ? [diff / 3600, "hour"]
    : a < 86400 * 26 ? [diff / 86400, "day"] : a < 86400 * 320 ? [diff / (86400 * 30), "month"] : [diff / (86400 * 365), "year"];
  if (unit === "second") return diff < 0 ? "just now" : "in a few seconds";
  return relative.format(Math.round(value), unit);
}

/** A <time> of epoch seconds ts: "14:03:22" today, "Mar 12, 14:03" before; mode "rel": "5 minutes ago". */
function timeEl(ts, mode = "auto") {
  if (num(ts) === null) return h("span", { class: "muted" }, DASH);
  const date = new Date(ts * 1000);
  let text;
  if (mode === "rel") text = relativeText(ts);
  else if (date.toDateString() === new Date().toDateString()) text = clock.format(date);
  else text = dayTime.format(date);
  return h("time", { datetime: date.toISOString(), title: fullDate.format(date) }, text);
}

const splitList = (text) => String(text || "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

function spaceUrl(repo) {
  // As the gateway derives it: user/My_Space -> https://user-my-space.hf.space
  return `https://${repo.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "")}.hf.space`;
}

function hostOf(url) {
  try { return new URL(url).host; } catch { return String(url || ""); }
}

/* ---------------------------------------------------------------- API */

class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && body.detail) || (status ? `The gateway answered ${status}.` : "The gateway could not be reached.");
    super(detail);
    this.status = status;
    this.code = (body && body.error) || "";
    this.detail = detail;
    this.errors = (body && Array.isArray(body.errors)) ? body.errors : [];
  }
}

function toLogin() {
  if (app.leaving) return;
  app.leaving = true;
  location.assign(`${LOGIN_PATH}?next=${encodeURIComponent(ADMIN_PATH + location.hash)}`);
}

async function csrfToken(force = false) {
  if (app.csrf && !force) return app.csrf;
  const { data } = await request("GET", "/_gateway/auth/csrf");
  app.csrf = data && data.csrf;
  const input = $("#signout-csrf");
  if (input) input.value = app.csrf || "";
  return app.csrf;
}

/** One request: JSON in and out, the CSRF token on changes, If-Match when given. */
async function request(method, path, { body, etag, type = "application/json", retried = false } = {}) {
  const url = path.startsWith("/_gateway/") ? path : API + path;
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = type;
    headers["X-CSRF-Token"] = (await csrfToken()) || "";
  }
  if (etag) headers["If-Match"] = etag;
  const payload = body === undefined ? undefined : type === "application/json" ? JSON.stringify(body) : body;
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, credentials: "same-origin", cache: "no-store", redirect: "follow" });
  } catch {
    throw new ApiError(0, { error: "network", detail: "The gateway could not be reached. Check the connection and try again." });
  }
  if (res.status === 401) {
    toLogin();
    throw new ApiError(401, { error: "unauthorized", detail: "Your session ended: taking you to the sign-in page." });
  }
  let data = null;
  if (res.status !== 204) {
    const ctype = res.headers.get("Content-Type") || "";
    data = ctype.includes("json") ? await res.json().catch(() => null) : await res.text();
  }
  if (res.status === 403 && data && data.error === "csrf" && method !== "GET" && !retried) {
    await csrfToken(true);  // the session's token changed (signed in again elsewhere): once more
    return request(method, path, { body, etag, type, retried: true });
  }
  if (!res.ok) throw new ApiError(res.status, data && typeof data === "object" ? data : null);
  return { data, etag: res.headers.get("ETag"), status: res.status };
}

const api = {
  get: async (path) => (await request("GET", path)).data,
  post: async (path, body, opts = {}) => (await request("POST", path, { body, ...opts })).data,
  patch: async (path, body, etag) => (await request("PATCH", path, { body, etag })).data,
  del: async (path, etag) => (await request("DELETE", path, { etag })).data,
};

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Every item of a paged list (the lists that are small: routes, users). */
async function fetchAll(path, params = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < 40; page++) {
    const data = await api.get(path + query({ ...params, limit: 500, cursor }));
    items.push(...(data.items || []));
    cursor = data.next_cursor;
    if (!cursor) break;
  }
  return items;
}

async function routeNames() {
  if (app.routeNames && Date.now() - app.routeNames.at < 30000) return app.routeNames.names;
  const names = (await fetchAll("/routes")).map((r) => r.name);
  app.routeNames = { at: Date.now(), names };
  return names;
}

const enc = encodeURIComponent;

/* ---------------------------------------------------------------- notices */

function notify(text, kind = "ok") {
  // While a modal dialog is open the page behind it is inert (not even announced): say it in the dialog.
  const modal = document.querySelector("dialog[open] .dialog-live");
  if (modal) { modal.textContent = ""; setTimeout(() => { modal.textContent = text; }, 50); }
  const host = $("#notices");
  const close = h("button", { type: "button", class: "icon-btn", "aria-label": "Dismiss" }, icon("close", 16));
  const note = h("div", { class: `notice ${kind}`, testid: "notice", "data-kind": kind },
    h("span", { class: "notice-text" }, text), close);
  const remove = () => note.remove();
  close.addEventListener("click", remove);
  host.append(note);
  setTimeout(remove, kind === "error" ? 10000 : 6000);
  while (host.children.length > 4) host.firstElementChild.remove();
}

const errorText = (e) => (e instanceof ApiError ? e.detail : String((e && e.message) || e));

/* ---------------------------------------------------------------- states */

function loadingBox(text = "Loading\u2026") {
  return h("div", { class: "state-box", testid: "loading", role: "status" },
    h("div", { class: "spinner", "aria-hidden": "true" }), h("p", null, text));
}

function emptyBox(title, text, action = null) {
  return h("div", { class: "state-box", testid: "empty" },
    h("div", { class: "state-icon" }, icon("inbox", 20)),
    h("p", { class: "state-title" }, title), text ? h("p", null, text) : null, action);
}

function errorBox(err, retry) {
  return h("div", { class: "state-box error", testid: "load-error", role: "alert" },
    h("div", { class: "state-icon" }, icon("error", 20)),
    h("p", { class: "state-title" }, err && err.status === 404 ? "Not found" : "Couldn't load this"),
    h("p", null, errorText(err)),
    retry ? button("Try again", { testid: "retry", onclick: retry }, "refresh") : null);
}

function banner(kind, content, props = {}) {
  const iconName = kind === "error" ? "error" : kind === "warn" ? "warn" : "info";
  return h("div", { class: `banner ${kind ? `banner-${kind}` : ""}`.trim(), ...props },
    icon(iconName), h("div", { class: "banner-body" }, content));
}

/* ---------------------------------------------------------------- tables */

/** A table that stacks into cards on a phone: columns [{label, cls}]. */
function dataTable(caption, columns, testid) {
  const tbody = h("tbody");
  const table = h("table", { class: "stack", testid },
    h("caption", { class: "sr-only" }, caption),
    h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.cls || null }, c.label)))),
    tbody);
  return { table, tbody, wrap: h("div", { class: "table-wrap" }, table) };
}

function td(label, content, cls = null) {
  return h("td", { "data-label": label || null, class: cls }, content);
}

/** A panel with a heading and a count, whose body is a table or, while there is none, a state box. */
function listPanel(title, tools = null) {
  const hid = nextId("list");
  const body = h("div", { class: "panel-body" }, loadingBox());
  const foot = h("div", { class: "panel-foot", hidden: true });
  const counter = h("span", { class: "count" });
  const panel = h("section", { class: "panel flush", "aria-labelledby": hid, testid: "list", "aria-busy": "true" },
    h("div", { class: "panel-head" }, h("h2", { id: hid }, title), h("span", { class: "spacer" }), counter),
    tools ? h("div", { class: "panel-tools" }, tools) : null, body, foot);
  return {
    panel, body, foot,
    // aria-busy is "true" while the list loads (tests wait for "false" after a change).
    show(node) { body.replaceChildren(node); panel.setAttribute("aria-busy", node.dataset.testid === "loading" ? "true" : "false"); },
    busy() { panel.setAttribute("aria-busy", "true"); },
    count(text) { counter.textContent = text; },
  };
}

/** "Load more" paging: load(cursor) -> {items, next_cursor}; onItems(items, first). */
function pager(load, onItems, onError, onStart = null) {
  let cursor = null, token = 0;
  const more = button("Load more", { testid: "load-more", hidden: true });
  async function page(first) {
    const mine = first ? ++token : token;
    if (!first) setBusy(more, true);
    else if (onStart) onStart();
    try {
      const data = await load(first ? null : cursor);
      if (mine !== token) return;
      onItems(data.items || [], first, data);
      cursor = data.next_cursor || null;
      more.hidden = !cursor;
    } catch (e) {
      if (mine !== token) return;
      if (first) onError(e); else notify(errorText(e), "error");
    } finally {
      if (!first) setBusy(more, false);
    }
  }
  more.addEventListener("click", () => page(false));
  return { more, reload: () => page(true) };
}

/**
 * A paged table of what belongs to people (API keys, sessions), narrowed to
 * one user by userFilter as it is typed: its panel, rows (row(item, reload)),
 * "Load more", and its empty (empty(filtered) -> [title, text]) and error
 * states. table is [caption, columns, testid]. Returns the pager.
 */
function filteredTable(ctx, { title, toolbar, userFilter, path, row, empty, table }) {
  const list = listPanel(title, toolbar);
  ctx.add(list.panel);
  const user = () => userFilter.value.trim();
  let tbody = null;
  const paging = pager(
    (cursor) => api.get(`${path}${query({ user: user(), cursor })}`),
    (items, first) => {
      if (first && !items.length) { list.show(emptyBox(...empty(Boolean(user())))); return; }
      if (first) {
        const t = dataTable(...table);
        tbody = t.tbody;
        list.show(t.wrap);
      }
      for (const item of items) tbody.append(row(item, paging.reload));
      list.count(`${tbody.children.length} shown`);
    },
    (e) => list.show(errorBox(e, paging.reload)), () => list.busy());
  list.foot.append(paging.more);
  list.foot.hidden = false;
  toolbar.addEventListener("submit", (e) => { e.preventDefault(); paging.reload(); });
  userFilter.addEventListener("input", debounce(() => paging.reload(), 350));
  return paging;
}

/* ---------------------------------------------------------------- forms */

/** The fields of a form by the API's field path, to put 422 errors next to them. */
function formKit(form, summaryHost) {
  const fields = new Map();
  const kit = {
    form,
    register(path, wrap, input) { fields.set(path, { wrap, input }); },
    unregister(prefix) { for (const k of [...fields.keys()]) if (k.startsWith(prefix)) fields.delete(k); },
    clear() {
      summaryHost.replaceChildren();
      for (const el of form.querySelectorAll(".field-error")) el.remove();
      for (const el of form.querySelectorAll("[aria-invalid]")) {
        el.removeAttribute("aria-invalid");
        const ids = (el.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.startsWith("err-"));
        if (ids.length) el.setAttribute("aria-describedby", ids.join(" ")); else el.removeAttribute("aria-describedby");
      }
    },
    /** Show errors [{field, message}]; resolve(field) may name another registered field. */
    show(errors, { resolve = (f) => f, title = null } = {}) {
      kit.clear();
      const unplaced = [];
      let first = null;
      for (const err of errors) {
        const target = fields.get(resolve(err.field || ""));
        if (!target || !target.wrap.isConnected || target.wrap.closest("[hidden]")) { unplaced.push(err); continue; }
        const id = nextId("err");
        const message = h("p", { class: "field-error", id, testid: `field-error-${err.field}` }, err.message);
        target.wrap.append(message);
        const input = target.input;
        if (input) {
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${id}`.trim());
          first = first || input;
          // Edited, the field no longer shows the error of what it held (nor the banner, once none is left).
          const mended = () => {
            input.removeEventListener("input", mended);
            input.removeEventListener("change", mended);
            if (!message.isConnected) return;
            message.remove();
            input.removeAttribute("aria-invalid");
            const ids = (input.getAttribute("aria-describedby") || "").split(" ").filter((x) => x && x !== id);
            if (ids.length) input.setAttribute("aria-describedby", ids.join(" ")); else input.removeAttribute("aria-describedby");
            if (!unplaced.length && !form.querySelector(".field-error")) summaryHost.replaceChildren();
          };
          input.addEventListener("input", mended);
          input.addEventListener("change", mended);
        }
        const details = target.wrap.closest("details");
        if (details) details.open = true;
      }
      const placed = errors.length - unplaced.length;
      const summary = h("div", { class: "banner banner-error", role: "alert", tabindex: "-1", testid: "form-errors" },
        icon("error"),
        h("div", { class: "banner-body" },
          h("p", null, h("b", null, title || (errors.length === 1 ? "One thing to fix" : `${errors.length} things to fix`))),
          placed ? h("p", null, placed === errors.length ? "See the highlighted fields below." : "Some are marked on the fields below.") : null,
          unplaced.length ? h("ul", null, unplaced.map((e) => h("li", null, e.field ? h("code", null, e.field) : null, e.field ? ": " : "", e.message))) : null));
      summaryHost.replaceChildren(summary);
      (first && !unplaced.length ? first : summary).focus();
    },
    /** Any failure of a submit: 422 by field, others as one message. */
    fail(e, opts = {}) {
      if (e instanceof ApiError && e.status === 422 && e.errors.length) kit.show(e.errors, opts);
      else kit.show([{ field: "", message: errorText(e) }], { title: opts.title || "That didn't work" });
    },
  };
  return kit;
}

/** A labelled field: label, input, hint; registered as path in kit for its errors. */
function field({ label, input, hint = null, optional = false, path = null, kit = null, cls = "" }) {
  if (!input.id) input.id = nextId("f");
  const hintEl = hint ? h("p", { class: "hint", id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  const wrap = h("div", { class: `field ${cls}`.trim() },
    h("label", { for: input.id }, label, optional ? h("span", { class: "opt" }, " (optional)") : null), input, hintEl);
  if (kit && path !== null) kit.register(path, wrap, input);
  return wrap;
}

const textInput = (props = {}) => h("input", { type: "text", autocomplete: "off", spellcheck: "false", ...props });

function select(options, value, props = {}) {
  const el = h("select", props, options.map(([v, label]) => h("option", { value: v }, label)));
  el.value = value;
  return el;
}

function switchInput(label, props = {}) {
  const input = h("input", { type: "checkbox", role: "switch", ...props });
  return { input, el: h("label", { class: "switch" }, input, h("span", null, label)) };
}

/* ---------------------------------------------------------------- dialogs */

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1']), output[tabindex]";

/** A modal <dialog> (removed from the page when closed, focus back where it was). */
const dialogs = new WeakMap();  // <dialog> -> its controller

function openDialog({ title, testid, wide = false, build }) {
  // A dialog opened as another one closes (a form, then its secret) gives focus back to the first one's opener.
  const host = document.activeElement && document.activeElement.closest && document.activeElement.closest("dialog");
  const parent = host && dialogs.get(host);
  const opener = parent && parent.closing ? parent.opener : document.activeElement;
  const titleId = nextId("dlg");
  const dlg = h("dialog", { class: wide ? "wide" : null, "aria-labelledby": titleId, testid });
  const ctl = {
    el: dlg, titleId, opener, onClose: null, closing: false,
    // onClose runs at once (a secret leaves the page now), and again harmlessly on the
    // dialog's "close" event, which is how Escape closes it.
    close() { ctl.closing = true; if (ctl.onClose) ctl.onClose(); if (dlg.open) dlg.close(); },
    title: h("h2", { id: titleId }, title),
  };
  build(ctl);
  dlg.append(h("p", { class: "sr-only dialog-live", role: "status", "aria-live": "polite" }));
  dlg.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    // Keep Tab inside the dialog (the page behind is inert, but the browser's UI is not).
    const items = [...dlg.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null || el === document.activeElement);
    if (!items.length) return;
    const first = items[0], last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
    else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
  });
  dlg.addEventListener("close", () => {
    if (ctl.onClose) ctl.onClose();
    dlg.remove();
    if (document.querySelector("dialog[open]")) return;  // another dialog took over
    const back = opener && opener.isConnected ? opener : $("#screen-title");
    if (back) back.focus();
  });
  dialogs.set(dlg, ctl);
  document.body.append(dlg);
  dlg.showModal();
  const start = dlg.querySelector("[autofocus]") || dlg.querySelector(FOCUSABLE);
  if (start) start.focus();
  return ctl;
}

/** Ask before a destructive action; run() does it (the dialog stays open on failure). */
function confirmAction({ title, text, confirmLabel = "Confirm", danger = true, details = null, run }) {
  return new Promise((resolve) => {
    let done = false;
    openDialog({
      title, testid: "confirm-dialog",
      build(d) {
        const errorHost = h("div");
        const cancel = h("button", { type: "button", class: "btn btn-secondary", testid: "cancel", autofocus: true, onclick: () => d.close() }, "Cancel");
        const confirm = h("button", { type: "button", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, testid: "confirm" }, confirmLabel);
        confirm.addEventListener("click", async () => {
          setBusy(confirm, true);
          errorHost.replaceChildren();
          try {
            if (run) await run();
            done = true;
            d.close();
          } catch (e) {
            setBusy(confirm, false);
            errorHost.replaceChildren(banner("error", h("p", null, errorText(e)), { role: "alert", testid: "dialog-error" }));
          }
        });
        d.el.setAttribute("aria-describedby", `${d.titleId}-text`);
        d.el.append(h("div", { class: "dialog-body" },
          h("div", { class: `dialog-icon ${danger ? "danger" : ""}` }, icon(danger ? "warn" : "info", 20)),
          d.title, h("p", { id: `${d.titleId}-text` }, text), details, errorHost,
          h("div", { class: "dialog-actions" }, cancel, confirm)));
        d.onClose = () => resolve(done);
      },
    });
  });
}

/** A dialog with a form: fill(body, kit) adds the fields; submit(kit) does the work (throws to stay open). */
function formDialog({ title, testid, lede = null, submitLabel = "Save", fill, submit, wide = false }) {
  return openDialog({
    title, testid, wide,
    build(d) {
      const summary = h("div");
      const stack = h("div", { class: "form-stack" });
      const save = h("button", { type: "submit", class: "btn btn-primary", testid: "save" }, submitLabel);
      const form = h("form", { class: "dialog-body", novalidate: true },
        d.title, lede ? h("p", null, lede) : null, summary, stack,
        h("div", { class: "dialog-actions" },
          h("button", { type: "button", class: "btn btn-secondary", testid: "cancel", onclick: () => d.close() }, "Cancel"), save));
      const kit = formKit(form, summary);
      fill(stack, kit, d);
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        kit.clear();
        setBusy(save, true);
        try {
          const closeNow = await submit(kit, d);
          if (closeNow !== false) d.close();
        } catch (e) {
          kit.fail(e);
        } finally {
          if (save.isConnected) setBusy(save, false);
        }
      });
      d.el.append(form);
    },
  });
}

/** Show a secret (API key, invitation link) once. It leaves the DOM when the dialog closes. */
function secretDialog({ title, lede, secret, note, label }) {
  let value = secret;
  openDialog({
    title, testid: "secret-dialog",
    build(d) {
      const out = h("output", { class: "secret-value", testid: "secret-once", "aria-label": label, tabindex: "0" }, value);
      const copy = button("Copy", { testid: "copy", class: "btn btn-primary" }, "copy");
      copy.addEventListener("click", () => copyText(value, copy, out));
      d.el.append(h("div", { class: "dialog-body" },
        h("div", { class: "dialog-icon ok" }, icon("key", 20)),
        d.title, h("p", null, lede),
        h("div", { class: "secret" }, out, copy),
        h("p", { class: "once-note" }, icon("warn"), h("span", null, h("b", null, "You won't see it again. "), note)),
        h("div", { class: "dialog-actions" },
          h("button", { type: "button", class: "btn btn-secondary", testid: "close", onclick: () => d.close() }, "Done"))));
      d.onClose = () => { out.textContent = ""; value = null; };
    },
  });
}

async function copyText(text, btn, node = null) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    if (node) {  // no clipboard API (plain http): select the text and use the old command
      const range = document.createRange();
      range.selectNodeContents(node);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { ok = document.execCommand("copy"); } catch { ok = false; }
    }
  }
  if (btn) {
    const label = btn.lastChild;
    const before = label.textContent;
    label.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(() => { if (label.isConnected) label.textContent = before; }, 2000);
  }
  notify(ok ? "Copied to the clipboard." : "Couldn't copy: select the text and copy it yourself.", ok ? "ok" : "error");
}

/* ---------------------------------------------------------------- menus */

/** A button opening a menu of actions [{label, testid, run, danger}] (null: a separator). */
function actionMenu(label, testid, items) {
  const id = nextId("menu");
  const btn = h("button", { type: "button", class: "btn btn-quiet btn-sm", "aria-haspopup": "menu", "aria-expanded": "false",
    "aria-controls": id, "aria-label": label, testid }, icon("more", 16), h("span", null, "Actions"));
  const list = h("ul", { class: "menu", id, role: "menu", "aria-label": label, hidden: true });
  let buttons = [];
  const outside = (event) => { if (!wrap.contains(event.target)) close(false); };
  function open() {
    // The items exist only while the menu is open: one row's menu at a time is in the page.
    buttons = [];
    list.replaceChildren();
    for (const item of items) {
      if (!item) { list.append(h("li", { class: "sep", role: "separator" })); continue; }
      const b = h("button", { type: "button", role: "menuitem", tabindex: "-1", class: item.danger ? "danger" : null, testid: item.testid }, item.label);
      b.addEventListener("click", () => { close(false); item.run(); });
      buttons.push(b);
      list.append(h("li", { role: "none" }, b));
    }
    list.hidden = false;
    btn.setAttribute("aria-expanded", "true");
    // Open upwards when there is no room below.
    list.classList.toggle("up", btn.getBoundingClientRect().bottom + list.offsetHeight + 16 > innerHeight);
    buttons[0].focus();
    document.addEventListener("pointerdown", outside, true);
  }
  function close(refocus = true) {
    if (list.hidden) return;
    list.hidden = true;
    list.replaceChildren();
    btn.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", outside, true);
    if (refocus) btn.focus();
  }
  btn.addEventListener("click", () => (list.hidden ? open() : close()));
  btn.addEventListener("keydown", (e) => { if (e.key === "ArrowDown") { e.preventDefault(); open(); } });
  list.addEventListener("keydown", (e) => {
    const i = buttons.indexOf(document.activeElement);
    const go = (j) => { e.preventDefault(); buttons[(j + buttons.length) % buttons.length].focus(); };
    if (e.key === "ArrowDown") go(i + 1);
    else if (e.key === "ArrowUp") go(i - 1);
    else if (e.key === "Home") go(0);
    else if (e.key === "End") go(buttons.length - 1);
    else if (e.key === "Escape") { e.preventDefault(); close(); }
    else if (e.key === "Tab") close(false);
  });
  const wrap = h("div", { class: "menu-wrap" }, btn, list);
  return wrap;
}

/* ---------------------------------------------------------------- screens: shell */

/** The head every screen has: its h1 (focused on navigation), a lede, its main actions. */
function screenHead({ title, lede = null, crumb = null, actions = [], extra = null }) {
  return h("div", { class: "screen-head" },
    h("div", { class: "titles" },
      crumb ? h("p", { class: "crumb" }, h("a", { href: crumb.href }, crumb.label)) : null,
      h("h1", { id: "screen-title", tabindex: "-1", testid: "screen-title" }, title),
      lede ? h("p", { class: "lede" }, lede) : null, extra),
    actions.length ? h("div", { class: "head-actions" }, actions) : null);
}

function makeCtx(gen) {
  const root = $("#screen");
  const main = $("#main");
  return {
    root,
    alive: () => gen === app.gen,
    add(...nodes) { root.append(...nodes); return nodes[0]; },
    head(opts) {
      document.title = `${opts.title} \u00b7 WigHaven Admin`;
      return this.add(screenHead(opts));
    },
    every(ms, fn) {
      const timer = setInterval(() => { if (!document.hidden && gen === app.gen) fn(); }, ms);
      app.cleanups.push(() => clearInterval(timer));
    },
    onLeave(fn) { app.cleanups.push(fn); },
    busy(on) { main.setAttribute("aria-busy", on ? "true" : "false"); },
    reload: () => render(false),
  };
}

const SCREENS = [
  [/^\/overview$/, "overview", overviewScreen],
  [/^\/spaces$/, "spaces", spacesScreen],
  [/^\/spaces\/new$/, "spaces", (ctx) => spaceScreen(ctx, null)],
  [/^\/spaces\/([^/]+)$/, "spaces", (ctx, name) => spaceScreen(ctx, name)],
  [/^\/users$/, "users", usersScreen],
  [/^\/keys$/, "keys", keysScreen],
  [/^\/sessions$/, "sessions", sessionsScreen],
  [/^\/audit$/, "audit", auditScreen],
  [/^\/logs$/, "logs", logsScreen],
  [/^\/requests$/, "requests", requestsScreen],
  [/^\/requests\/([^/]+)$/, "requests", requestScreen],
  [/^\/config$/, "config", configScreen],
];

function render(moveFocus) {
  for (const fn of app.cleanups.splice(0)) { try { fn(); } catch { /* a cleanup never stops navigation */ } }
  const gen = ++app.gen;
  const path = location.hash.replace(/^#/, "") || "/overview";
  let match = null, nav = null, run = notFoundScreen;
  for (const [re, name, fn] of SCREENS) {
    match = path.match(re);
    if (match) { nav = name; run = fn; break; }
  }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  revealNav(nav && $(`[data-nav="${nav}"]`));
  const ctx = makeCtx(gen);
  ctx.root.replaceChildren();
  ctx.busy(false);
  const params = match ? match.slice(1).map((p) => { try { return decodeURIComponent(p); } catch { return p; } }) : [];
  run(ctx, ...params);
  if (moveFocus) {
    window.scrollTo(0, 0);
    const title = $("#screen-title");
    if (title) title.focus();
  }
}

/** On a phone the navigation scrolls sideways: keep the current screen's link in view. */
function revealNav(link) {
  const bar = $("#nav");
  if (!link || bar.scrollWidth <= bar.clientWidth) return;
  const left = link.offsetLeft, right = left + link.offsetWidth;
  if (left < bar.scrollLeft + 16) bar.scrollLeft = Math.max(0, left - 16);
  else if (right > bar.scrollLeft + bar.clientWidth - 16) bar.scrollLeft = right - bar.clientWidth + 16;
}

function notFoundScreen(ctx) {
  ctx.head({ title: "Page not found", lede: "There is no admin screen at this address." });
  ctx.add(h("p", null, h("a", { href: "#/overview" }, "Go to the overview")));
}

/* ---------------------------------------------------------------- Overview */

function overviewScreen(ctx) {
  const live = h("span", { class: "live down", testid: "live-state" }, "Connecting\u2026");
  ctx.head({ title: "Overview", lede: "Live traffic through the gateway, refreshed every 2 seconds.", actions: [live] });
  const host = ctx.add(h("div", { class: "overview" }, loadingBox("Loading the gateway's status\u2026")));
  let view = null, inFlight = false;

  async function tick() {
    if (inFlight) return;
    inFlight = true;
    try {
      const status = await api.get("/status");
      if (!ctx.alive()) return;
      if (!view) { view = overviewView(); host.replaceChildren(view.el); }
      view.update(status);
      const draining = status.status === "draining";
      live.className = `live${draining ? " draining" : ""}`;
      live.textContent = draining ? "Draining" : "Live";
      live.title = `Updated ${clock.format(new Date())}`;
    } catch (e) {
      if (!ctx.alive()) return;
      live.className = "live down";
      live.textContent = "Reconnecting\u2026";
      if (!view) host.replaceChildren(errorBox(e, tick));
      else view.el.classList.add("stale");
    } finally {
      inFlight = false;
    }
  }
  tick();
  ctx.every(POLL_MS, tick);
}

function overviewView() {
  const figures = {};
  const card = (key, label) => {
    const v = h("span", { class: "v", testid: `stat-${key}` });
    const sub = h("span", { class: "sub" });
    figures[key] = { v, sub };
    return h("div", { class: "card" }, h("dt", null, label), h("dd", null, v, sub));
  };
  const cards = h("dl", { class: "cards", testid: "totals" },
    card("rps", "Requests / s"), card("p95", "Latency p95"), card("error-rate", "Error rate"),
    card("requests", "Requests"), card("in-flight", "In flight"), card("websockets", "Open WebSockets"));
  const streams = h("b", { testid: "stat-streams" });
  const { table, tbody, wrap } = dataTable("Each route's traffic and the health of its upstreams", [
    { label: "Route" }, { label: "Req/s", cls: "r" }, { label: "p95", cls: "r" }, { label: "Errors", cls: "r" },
    { label: "In flight", cls: "r" }, { label: "Upstreams" }], "overview-routes");
  table.classList.add("overview-routes");
  const version = h("span", { class: "hint" });
  const empty = emptyBox("No routes yet", "Add a Space to start forwarding requests.",
    h("a", { class: "btn btn-primary", href: "#/spaces/new" }, icon("plus", 16), "Add a Space"));
  const routesBody = h("div", null, wrap);
  const el = h("div", { class: "overview-body", id: "overview" },
    h("section", { "aria-labelledby": "totals-h" }, h("h2", { id: "totals-h", class: "sr-only" }, "Totals"), cards),
    h("section", { class: "panel flush", "aria-labelledby": "routes-h" },
      h("div", { class: "panel-head" }, h("h2", { id: "routes-h" }, "Routes"),
        h("span", { class: "hint" }, "req/s over the last 10 s; p95 and errors over the last minute"), h("span", { class: "spacer" }), version),
      routesBody));
  el.classList.add("grid-gap");
  const rows = new Map();

  function set(key, parts, cls = "") {
    const [value, unit] = Array.isArray(parts) ? parts : [parts, ""];
    figures[key].v.replaceChildren(value, unit ? h("span", { class: "unit" }, unit) : "");
    figures[key].v.className = `v ${cls}`.trim();
  }

  function update(s) {
    el.classList.remove("stale");
    const lat = s.latency_ms || {};
    set("rps", rpsText(s.requests_per_second));
    figures.rps.sub.textContent = "average of the last 10 s";
    set("p95", msParts(lat.p95));
    figures.p95.sub.replaceChildren(h("span", { class: "q" }, "p50 ", h("b", null, joinParts(msParts(lat.p50)))),
      h("span", { class: "q" }, "p99 ", h("b", null, joinParts(msParts(lat.p99)))));
    set("error-rate", pctParts(s.error_rate), rateClass(s.error_rate));
    figures["error-rate"].sub.textContent = "of requests in the last minute";
    set("requests", count(s.requests));
    figures.requests.sub.replaceChildren(h("b", null, count(s.errors)), s.errors === 1 ? " error" : " errors", " \u00b7 up ", durationText(s.uptime_seconds));
    set("in-flight", count(s.in_flight));
    figures["in-flight"].sub.textContent = "being answered now";
    set("websockets", count(s.open_websockets));
    streams.textContent = count(s.open_streams);
    figures.websockets.sub.replaceChildren(streams, s.open_streams === 1 ? " event stream open" : " event streams open");
    version.textContent = s.version ? `gateway v${s.version}` : "";
    updateRoutes(s.routes || []);
  }

  function updateRoutes(routes) {
    if (!routes.length) { routesBody.replaceChildren(empty); rows.clear(); return; }
    if (!wrap.isConnected) routesBody.replaceChildren(wrap);
    const seen = new Set();
    for (const r of routes) {
      seen.add(r.name);
      let row = rows.get(r.name);
      if (!row) { row = routeRow(r.name); rows.set(r.name, row); }
      row.update(r);
    }
    for (const [name, row] of rows) if (!seen.has(name)) { row.tr.remove(); rows.delete(name); }
    // Keep the rows in the order the gateway gives, moving only what moved (focus stays put).
    routes.forEach((r, i) => { const tr = rows.get(r.name).tr; if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
  }

  function routeRow(name) {
    const link = h("a", { class: "cell-main", href: `#/spaces/${enc(name)}` }, name);
    const match = h("span", { class: "cell-sub" });
    const state = h("span");
    const cells = { rps: td("Req/s", "", "r num"), p95: td("p95", "", "r num"), err: td("Errors", "", "r num"), fly: td("In flight", "", "r num") };
    const ups = h("ul", { class: "ups-list" });
    const tr = h("tr", { testid: `overview-route-${name}` },
      h("th", { scope: "row" }, link, " ", state, match), cells.rps, cells.p95, cells.err, cells.fly, td("Upstreams", ups, "full"));
    return {
      tr,
      update(r) {
        match.textContent = matchText(r.hosts, r.path);
        state.replaceChildren(r.enabled === false ? badge("disabled", "outline") : "");
        cells.rps.textContent = rpsText(r.requests_per_second);
        cells.p95.textContent = joinParts(msParts(r.p95_ms));
        cells.err.textContent = joinParts(pctParts(r.error_rate));
        cells.err.className = `r num ${rateClass(r.error_rate) ? `num-${rateClass(r.error_rate)}` : ""}`.trim();
        cells.fly.textContent = count(r.in_flight);
        ups.replaceChildren(...(r.upstreams || []).map(upstreamItem));
        if (!(r.upstreams || []).length) ups.append(h("li", { class: "muted" }, "none"));
      },
    };
  }

  return { el, update };
}

const UPSTREAM_STATES = { up: ["up", "ok"], ejected: ["ejected", "warn"], down: ["down", "bad"] };

function upstreamItem(u) {
  const [label, kind] = UPSTREAM_STATES[u.state] || [u.state || "unknown", ""];
  return h("li", null,
    badge(label, `dot ${kind}`, { testid: "upstream-state", "data-state": u.state }),
    h("span", { class: "ups-label" }, u.space || u.upstream),
    u.in_flight ? h("span", { class: "cell-sub" }, `${u.in_flight} in flight`) : null,
    u.last_error ? h("span", { class: "ups-err" }, u.last_error) : null);
}

function matchText(hosts, path) {
  const where = hosts && hosts.length ? hosts.join(", ") : "any host";
  return `${where} \u00b7 ${path || "/"}`;
}

/* ---------------------------------------------------------------- Spaces */

const SOURCES = {
  store: ["Store", "accent", "Added in this panel: editable here."],
  file: ["Config file", "", "From the config file (WIGHAVEN_CONFIG): read-only here."],
  env: ["Environment", "warn", "From PRIVATE_BACKEND_URL: read-only here."],
};

function sourceBadge(source, testid = null) {
  const [label, kind, title] = SOURCES[source] || [source, "", ""];
  return badge(label, kind, { title, testid, "data-source": source });
}

function accessText(access) {
  if (access === "public") return "Public";
  if (access === "signed_in") return "Anyone signed in";
  if (Array.isArray(access)) return access.join(", ");
  return String(access ?? DASH);
}

function spacesScreen(ctx) {
  ctx.head({
    title: "Spaces",
    lede: "Each Space is a route: the hosts and path it answers, and the Hugging Face Spaces it forwards to.",
    actions: [h("a", { class: "btn btn-primary", href: "#/spaces/new", testid: "add-space" }, icon("plus", 16), "Add a Space")],
  });
  const list = listPanel("All Spaces");
  ctx.add(list.panel);

  async function load() {
    list.show(loadingBox("Loading Spaces\u2026"));
    try {
      const items = await fetchAll("/routes");
      if (!ctx.alive()) return;
      app.routeNames = { at: Date.now(), names: items.map((r) => r.name) };
      list.count(`${items.length} ${items.length === 1 ? "Space" : "Spaces"}`);
      if (!items.length) {
        list.show(emptyBox("No Spaces yet", "Add your first private Hugging Face Space to put it behind the gateway.",
          h("a", { class: "btn btn-primary", href: "#/spaces/new" }, icon("plus", 16), "Add a Space")));
        return;
      }
      const { tbody, wrap } = dataTable("Spaces (routes)", [
        { label: "Name" }, { label: "Match" }, { label: "Upstreams" }, { label: "Source" }, { label: "Enabled" }, { label: "", cls: "r" }], "spaces-table");
      for (const item of items) tbody.append(spaceRow(item, load));
      list.show(wrap);
    } catch (e) {
      if (ctx.alive()) list.show(errorBox(e, load));
    }
  }
  load();
}

function spaceRow(item, reload) {
  const editable = item.source === "store";
  const name = item.name;
  let enabledCell;
  if (editable) {
    const sw = switchInput(item.enabled ? "On" : "Off", { checked: item.enabled, testid: `space-toggle-${name}`, "aria-label": `${name} enabled` });
    sw.input.addEventListener("change", () => toggleSpace(item, sw, reload));
    enabledCell = sw.el;
  } else {
    enabledCell = h("span", null, badge(item.enabled ? "On" : "Off", item.enabled ? "ok dot" : "outline"),
      h("span", { class: "cell-sub" }, "read-only"));
  }
  const ups = h("ul", { class: "ups-list" }, (item.upstreams || []).map((u) => h("li", null,
    h("span", { class: "ups-label" }, u.space || hostOf(u.url)),
    u.token && u.token.set ? h("span", { class: "cell-sub", title: "A token is sent to this upstream" }, icon("lock", 13), " token") : null)));
  return h("tr", { testid: `space-row-${name}`, "data-source": item.source, class: item.enabled ? null : "disabled-row" },
    h("th", { scope: "row", "data-label": null },
      h("a", { class: "cell-main", href: `#/spaces/${enc(name)}` }, name),
      h("span", { class: "cell-sub" }, accessText(item.access))),
    td("Match", h("div", { class: "match" },
      h("span", null, item.hosts && item.hosts.length ? item.hosts.join(", ") : h("span", { class: "muted" }, "any host")),
      h("code", null, item.path || "/"))),
    td("Upstreams", ups),
    td("Source", sourceBadge(item.source, `space-source-${name}`)),
    td("Enabled", enabledCell),
    td(null, h("a", { class: "btn btn-quiet btn-sm", href: `#/spaces/${enc(name)}`, testid: `space-edit-${name}` }, editable ? "Edit" : "View"), "actions"));
}

async function toggleSpace(item, sw, reload) {
  const on = sw.input.checked;
  if (item.busy) { sw.input.checked = !on; return; }
  const patch = async () => {
    const updated = await api.patch(`/routes/${enc(item.name)}`, { enabled: on }, item.etag);
    Object.assign(item, updated);
  };
  // Not disabled while it works: a disabled switch would lose the keyboard focus.
  item.busy = true;
  sw.input.setAttribute("aria-busy", "true");
  try {
    if (on) await patch();
    else if (!(await confirmAction({
      title: `Disable ${item.name}?`,
      text: "Visitors will get a 503 \u201croute disabled\u201d page instead of the Space until you enable it again.",
      confirmLabel: "Disable", run: patch,
    }))) { sw.input.checked = true; return; }
    sw.el.lastChild.textContent = on ? "On" : "Off";
    sw.input.closest("tr").classList.toggle("disabled-row", !on);
    notify(`${item.name} is ${on ? "enabled" : "disabled"}.`);
  } catch (e) {
    sw.input.checked = !on;
    if (e.status === 412) { notify(`Someone else changed ${item.name}: the list was reloaded.`, "error"); reload(); }
    else notify(errorText(e), "error");
  } finally {
    item.busy = false;
    sw.input.removeAttribute("aria-busy");
  }
}

/** #/spaces/new and #/spaces/<name>: the editor, or a read-only view of a file/env route. */
function spaceScreen(ctx, name) {
  const crumb = { href: "#/spaces", label: "Spaces" };
  if (name === null) {
    ctx.head({ title: "Add a Space", crumb, lede: "Put a private Hugging Face Space behind the gateway: visitors sign in here, the gateway adds the token." });
    ctx.add(spaceForm(ctx, null));
    return;
  }
  const head = ctx.head({ title: name, crumb });
  const host = ctx.add(h("div", null, loadingBox("Loading the Space\u2026")));
  (async () => {
    try {
      const { data, etag } = await request("GET", `/routes/${enc(name)}`);
      if (!ctx.alive()) return;
      data.etag = data.etag || etag;
      $(".titles", head).append(h("p", { class: "lede" }, sourceBadge(data.source), " ", editedText(data)));
      host.replaceChildren(data.source === "store" ? spaceForm(ctx, data) : spaceReadOnly(data));
    } catch (e) {
      if (ctx.alive()) host.replaceChildren(errorBox(e, ctx.reload));
    }
  })();
}

function editedText(item) {
  if (item.source !== "store") return "";
  const parts = [];
  if (item.version) parts.push(`version ${item.version}`);
  if (item.updated_at) parts.push(`changed ${relativeText(item.updated_at)}${item.updated_by ? ` by ${item.updated_by}` : ""}`);
  return parts.join(" \u00b7 ");
}

function spaceReadOnly(item) {
  const where = item.source === "file"
    ? "the gateway's config file (WIGHAVEN_CONFIG)" : "the PRIVATE_BACKEND_URL environment variable";
  const facts = h("dl", { class: "facts" });
  const fact = (label, value) => facts.append(h("dt", null, label), h("dd", null, value));
  fact("Match", matchText(item.hosts, item.path));
  fact("Strip the path", item.strip_path ? "yes" : "no");
  fact("Access", accessText(item.access));
  fact("Enabled", item.enabled ? "yes" : "no (answers 503)");
  fact("Balance", BALANCE[item.balance] || item.balance);
  fact("Affinity", AFFINITY[item.affinity] || item.affinity);
  fact("Retries", String(item.retries ?? 0));
  fact("Health check", item.health_path ? `${item.health_path} every ${item.health_interval} s` : "none");
  const ups = dataTable("Upstreams", [{ label: "Upstream" }, { label: "Token" }, { label: "Weight", cls: "r" }, { label: "", cls: "r" }], "upstreams-table");
  (item.upstreams || []).forEach((u, i) => {
    const result = h("output", { class: "test-result", testid: `test-result-${i}`, "aria-live": "polite" });
    const test = button("Test connection", { class: "btn btn-quiet btn-sm", testid: `test-connection-${i}` }, "bolt");
    test.addEventListener("click", () => runTest(test, result, { route: item.name, upstream: i, path: item.health_path || "/" }));
    ups.tbody.append(h("tr", null,
      h("th", { scope: "row" }, h("span", { class: "cell-main" }, u.space || hostOf(u.url)), h("span", { class: "cell-sub" }, u.url)),
      td("Token", u.token && u.token.set ? "set" : "none"), td("Weight", String(u.weight ?? 1), "r"),
      td(null, h("div", { class: "test-row" }, test, result), "actions")));
  });
  return h("div", { class: "grid-gap" },
    banner("", [h("p", null, h("b", null, "Read-only here. "), `This Space comes from ${where}. Change it there and reload the gateway.`)],
      { testid: "read-only-note" }),
    h("section", { class: "panel", "aria-labelledby": "ro-settings" }, h("div", { class: "panel-head" }, h("h2", { id: "ro-settings" }, "Settings")), facts),
    h("section", { class: "panel flush", "aria-labelledby": "ro-ups" }, h("div", { class: "panel-head" }, h("h2", { id: "ro-ups" }, "Upstreams")), ups.wrap));
}

const BALANCE = { round_robin: "Round robin", least_in_flight: "Fewest requests in flight" };
const AFFINITY = { none: "None", cookie: "Cookie: a visitor stays on one upstream", gradio: "Gradio session: a Gradio session stays on one upstream" };

/** Test an upstream (POST /upstreams/test) and say how it went in result. */
async function runTest(btn, result, body, onInvalid = null) {
  setBusy(btn, true);
  result.replaceChildren(h("span", { class: "muted" }, "Testing\u2026"));
  result.removeAttribute("data-ok");
  try {
    const r = await api.post("/upstreams/test", body);
    const time = joinParts(msParts(r.duration_ms));
    result.dataset.ok = String(!!r.ok);
    if (r.ok) result.replaceChildren(badge(`${r.status ?? "OK"}`, "ok dot"), `Connected in ${time}`);
    else result.replaceChildren(badge(r.status ? String(r.status) : "failed", "bad dot"),
      r.error || (r.status ? `The upstream answered ${r.status} (${time}).` : "No answer."), r.status ? ` \u00b7 ${time}` : "");
  } catch (e) {
    result.dataset.ok = "false";
    if (e.status === 422 && onInvalid) onInvalid(e.errors);
    result.replaceChildren(badge("error", "bad dot"), e.status === 422 && e.errors.length ? e.errors.map((x) => x.message).join(" ") : errorText(e));
  } finally {
    setBusy(btn, false);
  }
}

/** The Add / Edit form of a store route (item null: a new one). */
function spaceForm(ctx, item) {
  const editing = !!item;
  const summary = h("div", { class: "form-summary" });
  const form = h("form", { id: "space-form", class: "panel", novalidate: true, testid: "space-form", "aria-label": editing ? `Edit ${item.name}` : "Add a Space" });
  const kit = formKit(form, summary);
  const v = item || { name: "", hosts: [], path: "", strip_path: true, balance: "round_robin", affinity: "none", retries: 0,
    health_path: null, health_interval: 10, access: "signed_in", enabled: true, upstreams: [{ url: "", space: "", token: { set: false }, weight: 1 }] };

  // Basics.
  const name = textInput({ id: "sf-name", value: v.name, readonly: editing, required: true, autocapitalize: "off", placeholder: "chat" });
  const enabled = switchInput("Enabled", { id: "sf-enabled", checked: v.enabled !== false });
  // Upstreams: a model per upstream, re-rendered on add/remove (indexes name the fields).
  const ups = (v.upstreams && v.upstreams.length ? v.upstreams : [{}]).map((u, i) => upstreamModel(u, editing ? i : null));
  const upsHost = h("div", { class: "grid-gap" });
  const addUp = button("Add another upstream", { class: "btn btn-quiet btn-sm", testid: "add-upstream" }, "plus");
  addUp.addEventListener("click", () => { ups.push(upstreamModel({}, null)); drawUpstreams(); $(`#sf-up-${ups.length - 1}-space`)?.focus(); });
  // Matching and access.
  const path = textInput({ id: "sf-path", value: v.path || "", placeholder: "/" });
  const hosts = textInput({ id: "sf-hosts", value: (v.hosts || []).join(", "), placeholder: "chat.example.org" });
  const accessKind = v.access === "public" || v.access === "signed_in" ? v.access : "list";
  const accessList = textInput({ id: "sf-access-list", value: Array.isArray(v.access) ? v.access.join(", ") : "", placeholder: "role:team, user:alice, hf_org:acme" });
  const accessRadios = [["public", "Public", "Anyone, without signing in."], ["signed_in", "Signed in", "Anyone with an account here."], ["list", "Only some people", "Listed roles, users or Hugging Face organisations."]]
    .map(([value, label, hint]) => h("label", { class: "choice" },
      h("input", { type: "radio", name: "sf-access", value, id: `sf-access-opt-${value}`, checked: accessKind === value }),
      h("span", null, h("b", null, label), h("span", { class: "hint" }, hint))));
  const accessFieldset = h("fieldset", { class: "choices", id: "sf-access" }, h("legend", null, "Who can use it"), accessRadios);
  const accessListField = field({ label: "Allowed", input: accessList, path: "access", kit,
    hint: "Separate with commas: role:NAME, user:NAME or hf_org:NAME." });
  const syncAccess = () => { accessListField.hidden = form.querySelector("input[name=sf-access]:checked").value !== "list"; };
  form.addEventListener("change", (e) => { if (e.target.name === "sf-access") syncAccess(); });
  const balance = select(Object.entries(BALANCE), v.balance || "round_robin", { id: "sf-balance" });
  const affinity = select(Object.entries({ none: "None", cookie: "Cookie", gradio: "Gradio session" }), v.affinity || "none", { id: "sf-affinity" });
  // Advanced.
  const strip = h("input", { type: "checkbox", id: "sf-strip-path", checked: v.strip_path !== false });
  const retries = h("input", { type: "number", id: "sf-retries", min: 0, max: 10, step: 1, value: v.retries ?? "", inputmode: "numeric" });
  const healthPath = textInput({ id: "sf-health-path", value: v.health_path || "", placeholder: "/health" });
  const healthInterval = h("input", { type: "number", id: "sf-health-interval", min: 1, step: 1, value: v.health_interval ?? "", inputmode: "numeric" });
  const stripWrap = h("div", { class: "field wide" }, h("label", { class: "check", for: "sf-strip-path" }, strip,
    h("span", null, "Strip the path", h("span", { class: "hint" }, "Remove the path prefix before forwarding (/chat/x reaches the Space as /x)."))));
  kit.register("strip_path", stripWrap, strip);
  const advanced = h("details", { class: "advanced", id: "sf-advanced" },
    h("summary", null, "Advanced", h("span", { class: "hint" }, "path stripping, retries, health checks")),
    h("div", { class: "details-body form-grid" },
      stripWrap,
      field({ label: "Retries", input: retries, path: "retries", kit, hint: "Tries on another upstream when one fails before answering." }),
      field({ label: "Health check path", input: healthPath, path: "health_path", kit, optional: true, hint: "Polled on every upstream; empty: no health checks." }),
      field({ label: "Health check interval", input: healthInterval, path: "health_interval", kit, hint: "Seconds between checks." })));

  const nameField = field({ label: "Name", input: name, path: "name", kit,
    hint: editing ? "A Space's name can't change: add a new one instead." : "Lowercase letters, digits and hyphens; shown in logs and figures." });
  const enabledWrap = h("div", { class: "field" }, h("span", { class: "label" }, "Status"), enabled.el,
    h("p", { class: "hint" }, "Off: visitors get a 503 page, nothing is forwarded."));
  kit.register("enabled", enabledWrap, enabled.input);

  const stale = h("div", { class: "form-summary" });
  const save = h("button", { type: "submit", class: "btn btn-primary", testid: "save" }, editing ? "Save changes" : "Add Space");
  const actions = h("div", { class: "form-actions" }, save,
    h("a", { class: "btn btn-secondary", href: "#/spaces", testid: "cancel" }, "Cancel"),
    editing ? h("button", { type: "button", class: "btn btn-danger-quiet push", testid: "remove", onclick: () => removeSpace(item, stale) }, icon("trash", 16), "Remove Space") : null);

  form.append(summary, stale,
    h("div", { class: "form-section" }, h("h2", null, "Space"),
      h("div", { class: "form-grid" }, nameField, enabledWrap)),
    h("div", { class: "form-section" }, h("h2", null, "Upstream"),
      h("p", { class: "section-hint" }, "The Hugging Face Space (or any HTTPS URL) requests are forwarded to. Add more to share the load."),
      upsHost, h("div", null, addUp)),
    h("div", { class: "form-section" }, h("h2", null, "Where it answers"),
      h("div", { class: "form-grid" },
        field({ label: "Path", input: path, path: "path", kit, hint: "Requests whose path starts with this, e.g. /chat. Empty: /." }),
        field({ label: "Hosts", input: hosts, path: "hosts", kit, optional: true, hint: "Host names, separated by commas. Empty: any host." }))),
    h("div", { class: "form-section" }, h("h2", null, "Access"), accessFieldset, accessListField),
    h("div", { class: "form-section" }, h("h2", null, "Load balancing"),
      h("div", { class: "form-grid" },
        field({ label: "Balance", input: balance, path: "balance", kit, hint: "How requests are shared between upstreams." }),
        field({ label: "Affinity", input: affinity, path: "affinity", kit, hint: "Gradio apps keep state per session: choose Gradio session for them." }))),
    advanced,
    actions);
  kit.register("upstreams", upsHost, null);
  syncAccess();
  drawUpstreams();

  function drawUpstreams() {
    kit.unregister("upstreams[");
    upsHost.replaceChildren(...ups.map((m, i) => upstreamFieldset(m, i)));
  }

  function upstreamFieldset(m, i) {
    const p = `sf-up-${i}`;
    const f = `upstreams[${i}]`;
    const kindSeg = h("fieldset", { class: "seg" }, h("legend", { class: "sr-only" }, `Upstream ${i + 1}: kind`),
      [["space", "Hugging Face Space"], ["url", "URL"]].map(([value, label]) => h("label", null,
        h("input", { type: "radio", name: `${p}-kind`, value, id: `${p}-kind-${value}`, checked: m.kind === value }), label)));
    const space = textInput({ id: `${p}-space`, value: m.space, placeholder: "user/space-name", autocapitalize: "off" });
    const url = h("input", { type: "url", id: `${p}-url`, value: m.url, placeholder: "https://user-space-name.hf.space", autocomplete: "off", spellcheck: "false" });
    const derived = h("span", { class: "mono" });
    const spaceField = field({ label: "Repo id", input: space, path: `${f}.space`, kit, hint: "Forwards to" });
    spaceField.querySelector(".hint").replaceChildren("Forwards to ", derived);
    const urlField = field({ label: "URL", input: url, path: `${f}.url`, kit, hint: "Must start with https://." });
    const token = h("input", { type: "password", id: `${p}-token`, autocomplete: "new-password", spellcheck: "false", value: m.token, placeholder: m.orig && m.orig.tokenSet ? "\u2022\u2022\u2022\u2022\u2022\u2022\u2022\u2022 (kept)" : "hf_\u2026" });
    const tokenHint = m.orig && m.orig.tokenSet
      ? "A token is saved. Leave this empty to keep it, or type a new one to replace it."
      : "A Hugging Face token with read access to the Space, or env:NAME / file:/path. Never shown again.";
    const tokenField = field({ label: "Token", input: token, path: `${f}.token`, kit, optional: !(m.orig && m.orig.tokenSet), hint: tokenHint });
    if (m.orig && m.orig.tokenSet) {
      const clear = h("input", { type: "checkbox", id: `${p}-clear`, checked: m.clear });
      clear.addEventListener("change", () => { m.clear = clear.checked; token.disabled = clear.checked; if (clear.checked) { token.value = ""; m.token = ""; } });
      token.disabled = m.clear;
      tokenField.append(h("label", { class: "check", for: clear.id }, clear, h("span", null, "Remove the saved token")));
    }
    const weight = h("input", { type: "number", id: `${p}-weight`, min: 1, step: 1, value: m.weight, inputmode: "numeric" });
    const weightField = field({ label: "Weight", input: weight, path: `${f}.weight`, kit, hint: "Share of requests." });
    weightField.hidden = ups.length < 2;
    const result = h("output", { class: "test-result", testid: `test-result-${i}`, "aria-live": "polite", for: `${p}-test` });
    const test = button("Test connection", { id: `${p}-test`, testid: `test-connection-${i}`, class: "btn btn-secondary btn-sm" }, "bolt");
    test.addEventListener("click", () => {
      const target = resolvedUrl(m);
      if (!target) { kit.show([{ field: `${f}.${m.kind}`, message: m.kind === "space" ? "Give the Space's repo id first (user/space-name)." : "Give the URL first." }]); return; }
      const check = healthPath.value.trim() || "/";
      const keep = editing && m.orig && !m.token && !m.clear && m.orig.url.replace(/\/+$/, "") === target.replace(/\/+$/, "");
      // An unchanged upstream is tested with its stored token, which the page never sees.
      const body = keep ? { route: item.name, upstream: m.orig.index, path: check } : { url: target, path: check, ...(m.token.trim() ? { token: m.token.trim() } : {}) };
      // The test names the body's fields (url, token): put them on this upstream's.
      const own = (e) => ({ ...e, field: e.field === "url" || e.field === "token" ? `${f}.${e.field}` : e.field });
      runTest(test, result, body, (errors) => kit.show(errors.map(own), { resolve: resolveField }));
    });
    const remove = ups.length > 1 ? h("button", { type: "button", class: "btn btn-quiet btn-sm", testid: `remove-upstream-${i}`, "aria-label": `Remove upstream ${i + 1}` }, icon("trash", 15), "Remove") : null;
    if (remove) remove.addEventListener("click", () => { ups.splice(i, 1); drawUpstreams(); addUp.focus(); });

    const sync = () => {
      spaceField.hidden = m.kind !== "space";
      urlField.hidden = m.kind !== "url";
      derived.textContent = m.space.trim() ? spaceUrl(m.space.trim()) : "https://user-space-name.hf.space";
    };
    kindSeg.addEventListener("change", (e) => { m.kind = e.target.value; sync(); (m.kind === "space" ? space : url).focus(); });
    space.addEventListener("input", () => { m.space = space.value; sync(); });
    space.addEventListener("change", () => {
      // A pasted Space page address becomes its repo id.
      const hit = space.value.trim().match(/^https?:\/\/(?:www\.)?huggingface\.co\/spaces\/([^/\s]+\/[^/\s?#]+)/i);
      if (hit) { space.value = m.space = hit[1]; sync(); }
    });
    url.addEventListener("input", () => { m.url = url.value; });
    token.addEventListener("input", () => { m.token = token.value; });
    weight.addEventListener("input", () => { m.weight = weight.value; });
    sync();
    const box = h("fieldset", { class: "upstream", "data-index": i },
      h("legend", null, ups.length > 1 ? `Upstream ${i + 1}` : "Upstream"),
      h("div", { class: "upstream-head" }, kindSeg, remove ? h("span", { class: "spacer" }) : null, remove),
      h("div", { class: `form-grid${ups.length > 1 ? " three" : ""}` }, spaceField, urlField, tokenField, weightField),
      h("div", { class: "test-row" }, test, result));
    kit.register(f, box, null);
    return box;
  }

  // An error on upstreams[i].url shows on the repo id field when the upstream is given by its repo id.
  function resolveField(fieldPath) {
    const hit = fieldPath.match(/^upstreams\[(\d+)\]\.(url|space)$/);
    if (hit && ups[+hit[1]]) return `upstreams[${hit[1]}].${ups[+hit[1]].kind}`;
    return fieldPath;
  }

  function numberOr(input) {
    const raw = input.value.trim();
    if (!raw) return null;
    const n = Number(raw);
    return Number.isFinite(n) ? n : raw;  // a bad one goes as is: the gateway names the field
  }

  function body() {
    const b = {};
    if (!editing) b.name = name.value.trim();
    b.enabled = enabled.input.checked;
    const pathValue = path.value.trim();
    if (pathValue || editing) b.path = pathValue || "/";
    b.hosts = splitList(hosts.value);
    const kind = form.querySelector("input[name=sf-access]:checked").value;
    b.access = kind === "list" ? splitList(accessList.value) : kind;
    b.balance = balance.value;
    b.affinity = affinity.value;
    b.strip_path = strip.checked;
    // On an edit, null removes the key (a merge patch): the gateway's default applies.
    for (const [key, input] of [["retries", retries], ["health_interval", healthInterval]]) {
      const n = numberOr(input);
      if (n !== null || editing) b[key] = n;
    }
    const hp = healthPath.value.trim();
    if (hp || editing) b.health_path = hp || null;
    b.upstreams = ups.map(upstreamBody);
    return b;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    kit.clear();
    stale.replaceChildren();
    setBusy(save, true);
    try {
      if (editing) await api.patch(`/routes/${enc(item.name)}`, body(), item.etag);
      else await api.post("/routes", body());
      if (!ctx.alive()) return;
      app.routeNames = null;
      notify(editing ? `Changes to ${item.name} saved.` : `${name.value.trim()} added.`);
      location.hash = "#/spaces";
    } catch (e) {
      if (!ctx.alive()) return;
      if (e.status === 412) showStale(stale, item.name);
      else if (e.status === 409 && e.code === "conflict") kit.show([{ field: "name", message: e.detail }]);
      else kit.fail(e, { resolve: resolveField });
    } finally {
      if (save.isConnected) setBusy(save, false);
    }
  });
  return form;
}

function upstreamModel(u, index) {
  const space = u.space || "";
  // Shown by repo id when that is what the URL comes from; otherwise by URL.
  const bySpace = !!space && (!u.url || spaceUrl(space) === u.url.replace(/\/+$/, ""));
  return {
    kind: bySpace || !u.url ? "space" : "url",
    space, url: u.url || "", token: "", clear: false, weight: u.weight ?? 1,
    orig: index === null ? null : { index, url: u.url || "", space, tokenSet: !!(u.token && u.token.set) },
  };
}

function resolvedUrl(m) {
  return m.kind === "space" ? (m.space.trim() ? spaceUrl(m.space.trim()) : "") : m.url.trim();
}

/** An upstream as the API takes it; the token is never read back: {"set": true} keeps it. */
function upstreamBody(m) {
  const out = {};
  if (m.kind === "space") out.space = m.space.trim();
  else {
    out.url = m.url.trim();
    if (m.orig && m.orig.space && m.orig.url === out.url) out.space = m.orig.space;
  }
  const typed = m.token.trim();
  if (typed) out.token = typed;
  else if (m.orig && m.orig.tokenSet && !m.clear) out.token = { set: true };
  else out.token = null;
  const w = String(m.weight).trim();
  if (w !== "") out.weight = Number.isFinite(Number(w)) ? Number(w) : w;
  return out;
}

function showStale(host, name) {
  const reload = button("Reload", { testid: "reload", class: "btn btn-secondary btn-sm" }, "refresh");
  reload.addEventListener("click", () => render(true));
  const note = h("div", { class: "banner banner-warn", role: "alert", tabindex: "-1", testid: "stale-banner" },
    icon("warn"), h("div", { class: "banner-body" },
      h("p", null, h("b", null, "Someone else changed this Space; reload. "),
        `${name} was changed after you opened it, so nothing was saved. Reload to see the current version (your edits here will be lost).`)),
    reload);
  host.replaceChildren(note);
  note.focus();
}

async function removeSpace(item, staleHost) {
  const done = await confirmAction({
    title: `Remove ${item.name}?`,
    text: `Requests to ${matchText(item.hosts, item.path)} will no longer reach the Space. This can't be undone (an export keeps a copy).`,
    confirmLabel: "Remove Space",
    run: async () => {
      try {
        await api.del(`/routes/${enc(item.name)}`, item.etag);
      } catch (e) {
        if (e.status === 412) {
          showStale(staleHost, item.name);
          throw new ApiError(412, { error: "stale", detail: "Someone else changed this Space since you opened it: cancel, then reload it." });
        }
        throw e;
      }
    },
  });
  if (done) {
    app.routeNames = null;
    notify(`${item.name} removed.`);
    location.hash = "#/spaces";
  }
}

/* ---------------------------------------------------------------- Users */

const ADMIN_ROLE = "admin";

function usersScreen(ctx) {
  const add = button("Add a user", { class: "btn btn-primary", testid: "add-user" }, "plus");
  ctx.head({ title: "Users", lede: "People who sign in with a password. Hugging Face accounts (hf:\u2026) appear after their first sign-in.", actions: [add] });
  const list = listPanel("All users");
  list.panel.classList.add("no-clip");  // the actions menu must not be cut off
  ctx.add(list.panel);
  add.addEventListener("click", () => addUserDialog(load));

  async function load() {
    list.busy();
    try {
      const users = await fetchAll("/users");
      if (!ctx.alive()) return;
      list.count(`${users.length} ${users.length === 1 ? "user" : "users"}`);
      if (!users.length) { list.show(emptyBox("No users yet", "Add someone, or send them an invitation link to set their own password.")); return; }
      const { tbody, wrap } = dataTable("Users", [{ label: "User" }, { label: "Roles" }, { label: "Sign-in" }, { label: "Status" }, { label: "Added" }, { label: "", cls: "r" }], "users-table");
      for (const u of users) tbody.append(userRow(u, load));
      wrap.classList.add("no-clip");
      list.show(wrap);
    } catch (e) {
      if (ctx.alive()) list.show(errorBox(e, load));
    }
  }
  list.show(loadingBox("Loading users\u2026"));
  load();
}

function userRow(u, reload) {
  const name = u.username;
  const hf = name.startsWith("hf:");
  const signIn = h("div", { class: "chips" },
    hf ? badge("Hugging Face", "accent") : u.password && u.password.set ? badge("Password", "") : badge("No password yet", "warn"),
    u.totp && u.totp.set ? badge("2FA", "ok") : null);
  const me = app.me && app.me.user === name;
  // Groups of actions, a separator between groups; some only make sense for some users.
  const groups = [
    [{ label: "Change roles\u2026", testid: "user-roles", run: () => rolesDialog(u, reload) }],
    [hf ? null : { label: "Invitation link\u2026", testid: "user-invite", run: () => inviteUser(u) },
      hf ? null : { label: "Reset password\u2026", testid: "user-password", run: () => passwordDialog(u, reload) },
      u.totp && u.totp.set ? { label: "Reset two-factor\u2026", testid: "user-totp", run: () => resetTotp(u, reload) } : null],
    [u.disabled ? { label: "Enable", testid: "user-enable", run: () => setDisabled(u, false, reload) }
      : { label: "Disable\u2026", testid: "user-disable", run: () => setDisabled(u, true, reload), danger: true },
    { label: "Delete\u2026", testid: "user-delete", run: () => deleteUser(u, reload), danger: true }],
  ].map((g) => g.filter(Boolean)).filter((g) => g.length);
  const items = groups.flatMap((g, i) => (i ? [null, ...g] : g));
  return h("tr", { testid: `user-row-${name}`, class: u.disabled ? "disabled-row" : null },
    h("th", { scope: "row" }, h("span", { class: "cell-main" }, name, me ? h("span", { class: "muted" }, " (you)") : null),
      u.email ? h("span", { class: "cell-sub" }, u.email) : null),
    td("Roles", u.roles && u.roles.length ? h("div", { class: "chips" }, u.roles.map((r) => h("span", { class: `chip ${r === ADMIN_ROLE ? "admin" : ""}` }, r)))
      : h("span", { class: "muted" }, "none")),
    td("Sign-in", signIn),
    td("Status", u.disabled ? badge("Disabled", "outline dot") : badge("Active", "ok dot")),
    td("Added", timeEl(u.created_at, "rel")),
    td(null, actionMenu(`Actions for ${name}`, `user-actions-${name}`, items), "actions"));
}

function rolesInputField(kit, value, id) {
  return field({ label: "Roles", input: textInput({ id, value }), path: "roles", kit, optional: true,
    hint: "Separate with commas. admin opens this panel; other roles are for Space access (role:NAME)." });
}

function addUserDialog(reload) {
  formDialog({
    title: "Add a user", testid: "user-dialog", submitLabel: "Add user",
    lede: "They sign in with their username and a password: set one now, or send them a link to choose their own.",
    fill(stack, kit) {
      const pw = h("input", { type: "password", id: "nu-password", autocomplete: "new-password" });
      const pwField = field({ label: "Password", input: pw, path: "password", kit, hint: "At least 8 characters. Tell it to them another way than the link." });
      const expires = select([["86400", "1 day"], ["259200", "3 days"], ["604800", "7 days"]], "259200", { id: "nu-expires" });
      const expField = field({ label: "Link expires after", input: expires, path: "expires_in", kit });
      const methods = h("fieldset", { class: "choices" }, h("legend", null, "How will they sign in?"),
        [["invite", "Invitation link", "A one-use link where they choose a password."], ["password", "Set a password", "You choose it now."]]
          .map(([value, label, hint]) => h("label", { class: "choice" },
            h("input", { type: "radio", name: "nu-method", value, id: `nu-method-${value}`, checked: value === "invite" }),
            h("span", null, h("b", null, label), h("span", { class: "hint" }, hint)))));
      const sync = () => {
        const invite = stack.querySelector("input[name=nu-method]:checked").value === "invite";
        pwField.hidden = invite;
        expField.hidden = !invite;
      };
      methods.addEventListener("change", sync);
      stack.append(
        field({ label: "Username", input: textInput({ id: "nu-username", autofocus: true, autocapitalize: "off" }), path: "username", kit }),
        field({ label: "Email", input: h("input", { type: "email", id: "nu-email", autocomplete: "off" }), path: "email", kit, optional: true }),
        rolesInputField(kit, "", "nu-roles"),
        methods, pwField, expField);
      sync();
    },
    async submit(kit, d) {
      const form = d.el;
      const username = $("#nu-username", form).value.trim();
      const invite = $("input[name=nu-method]:checked", form).value === "invite";
      const body = { username, roles: splitList($("#nu-roles", form).value) };
      const email = $("#nu-email", form).value.trim();
      if (email) body.email = email;
      if (!invite) body.password = $("#nu-password", form).value;
      await api.post("/users", body);
      reload();
      if (!invite) { notify(`${username} added.`); return; }
      const expiresIn = Number($("#nu-expires", form).value);
      d.close();
      try {
        const link = await api.post(`/users/${enc(username)}/invite`, { expires_in: expiresIn });
        showInvite(username, link);
      } catch (e) {
        notify(`${username} was added, but the invitation link failed: ${errorText(e)}`, "error");
      }
      return false;
    },
  });
}

function showInvite(username, link) {
  const url = new URL(link.url, location.origin).href;  // the API may give a path or a full URL
  secretDialog({
    title: `Invitation for ${username}`, label: "Invitation link", secret: url,
    lede: `Send this link to ${username}: it opens a page where they choose their password. It works once${num(link.expires_at) ? `, until ${fullDate.format(new Date(link.expires_at * 1000))}` : ""}.`,
    note: "Copy it now. Anyone with the link can set this account's password, so send it privately.",
  });
}

async function inviteUser(u) {
  const ok = await confirmAction({
    title: `Invitation link for ${u.username}?`, danger: false, confirmLabel: "Create link",
    text: "A one-use link where they set a new password. Until it is used, their current password still works.",
    run: async () => { showInvite(u.username, await api.post(`/users/${enc(u.username)}/invite`, {})); },
  });
  return ok;
}

function rolesDialog(u, reload) {
  formDialog({
    title: `Roles of ${u.username}`, testid: "roles-dialog", submitLabel: "Save roles",
    fill(stack, kit) {
      const f = rolesInputField(kit, (u.roles || []).join(", "), "ur-roles");
      $("input", f).setAttribute("autofocus", "");
      stack.append(f);
    },
    async submit(kit, d) {
      await api.patch(`/users/${enc(u.username)}`, { roles: splitList($("#ur-roles", d.el).value) }, u.etag);
      notify(`Roles of ${u.username} saved.`);
      reload();
    },
  });
}

function passwordDialog(u, reload) {
  formDialog({
    title: `Reset the password of ${u.username}`, testid: "password-dialog", submitLabel: "Reset password",
    lede: "They are signed out everywhere and sign in again with the new password.",
    fill(stack, kit) {
      stack.append(
        field({ label: "New password", input: h("input", { type: "password", id: "rp-password", autocomplete: "new-password", autofocus: true }), path: "password", kit, hint: "At least 8 characters." }),
        field({ label: "New password again", input: h("input", { type: "password", id: "rp-confirm", autocomplete: "new-password" }), path: "confirm", kit }));
    },
    async submit(kit, d) {
      const pw = $("#rp-password", d.el).value, again = $("#rp-confirm", d.el).value;
      if (pw.length < 8) { kit.show([{ field: "password", message: "The password needs at least 8 characters." }]); return false; }
      if (pw !== again) { kit.show([{ field: "confirm", message: "The two passwords are not the same." }]); return false; }
      await api.patch(`/users/${enc(u.username)}`, { password: pw }, u.etag);
      notify(`Password of ${u.username} reset.`);
      reload();
    },
  });
}

function resetTotp(u, reload) {
  confirmAction({
    title: `Reset two-factor for ${u.username}?`, confirmLabel: "Reset two-factor",
    text: "Their authenticator app stops working here: they sign in with the password alone and can set up a new one.",
    run: async () => { await api.patch(`/users/${enc(u.username)}`, { totp: null }, u.etag); notify(`Two-factor of ${u.username} reset.`); reload(); },
  });
}

async function setDisabled(u, disabled, reload) {
  const run = async () => {
    await api.patch(`/users/${enc(u.username)}`, { disabled }, u.etag);
    notify(`${u.username} ${disabled ? "disabled" : "enabled"}.`);
    reload();
  };
  if (!disabled) { try { await run(); } catch (e) { notify(errorText(e), "error"); } return; }
  confirmAction({
    title: `Disable ${u.username}?`, confirmLabel: "Disable",
    text: "They can't sign in or use their API keys until you enable the account again.", run,
  });
}

function deleteUser(u, reload) {
  confirmAction({
    title: `Delete ${u.username}?`, confirmLabel: "Delete user",
    text: "Their account, sessions and API keys go away. This can't be undone.",
    run: async () => { await api.del(`/users/${enc(u.username)}`, u.etag); notify(`${u.username} deleted.`); reload(); },
  });
}

/* ---------------------------------------------------------------- API keys */

/** The API lists the keys in force only: a revoked key is gone from it. */
function keyStatus(k) {
  if (num(k.expires_at) !== null && k.expires_at * 1000 < Date.now()) return ["expired", "Expired", "warn"];
  return ["active", "Active", "ok dot"];
}

function keysScreen(ctx) {
  const create = button("Create a key", { class: "btn btn-primary", testid: "create-key" }, "plus");
  ctx.head({ title: "API keys", lede: "Keys let programs call the gateway with Authorization: Bearer. A key scoped to a Space works only there.", actions: [create] });
  const userFilter = textInput({ id: "keys-user", type: "search", placeholder: "Any owner", list: "keys-users" });
  const users = h("datalist", { id: "keys-users" });
  const toolbar = h("form", { class: "toolbar", role: "search", "aria-label": "Filter API keys" },
    field({ label: "Owner", input: userFilter }), users);
  const paging = filteredTable(ctx, {
    title: "Keys", toolbar, userFilter, path: "/api-keys", row: keyRow,
    empty: (filtered) => [filtered ? "No keys for this owner" : "No API keys yet", "Create one for a script, a notebook or CI."],
    table: ["API keys", [{ label: "Key" }, { label: "Owner" }, { label: "Scope" }, { label: "Expires" }, { label: "Last used" }, { label: "Status" }, { label: "", cls: "r" }], "keys-table"],
  });
  create.addEventListener("click", () => createKeyDialog(paging.reload));
  fetchAll("/users").then((all) => users.replaceChildren(...all.map((u) => h("option", { value: u.username })))).catch(() => {});
  paging.reload();
}

function keyRow(k, reload) {
  const [status, label, kind] = keyStatus(k);
  return h("tr", { testid: `key-row-${k.id}`, "data-status": status },
    h("th", { scope: "row" }, h("span", { class: "cell-main" }, k.name || h("span", { class: "muted" }, "unnamed")),
      h("code", { class: "cell-sub" }, k.id)),
    td("Owner", k.user),
    td("Scope", k.route ? h("a", { href: `#/spaces/${enc(k.route)}` }, k.route) : h("span", { class: "muted" }, "All Spaces")),
    td("Expires", num(k.expires_at) === null ? h("span", { class: "muted" }, "never") : timeEl(k.expires_at, "rel")),
    td("Last used", num(k.last_used_at) === null ? h("span", { class: "muted" }, "never") : timeEl(k.last_used_at, "rel")),
    td("Status", badge(label, kind)),
    td(null, h("button", { type: "button", class: "btn btn-danger-quiet btn-sm", testid: `revoke-key-${k.id}`,
      "aria-label": `Revoke key ${k.name || k.id}`, onclick: () => revokeKey(k, reload) }, "Revoke"), "actions"));
}

function revokeKey(k, reload) {
  confirmAction({
    title: `Revoke ${k.name ? `\u201c${k.name}\u201d` : `key ${k.id}`}?`, confirmLabel: "Revoke key",
    text: `Programs using this key of ${k.user} stop getting in at once, and it leaves this list (the audit trail keeps it). This can't be undone.`,
    run: async () => { await api.del(`/api-keys/${enc(k.id)}`, k.etag); notify("Key revoked."); reload(); },
  });
}

function createKeyDialog(reload) {
  formDialog({
    title: "Create an API key", testid: "key-dialog", submitLabel: "Create key",
    fill(stack, kit) {
      const owner = textInput({ id: "ck-user", value: (app.me && app.me.user) || "", list: "ck-users", autocapitalize: "off" });
      const ownerList = h("datalist", { id: "ck-users" });
      const route = select([["", "All Spaces"]], "", { id: "ck-route" });
      const days = h("input", { type: "number", id: "ck-days", min: 1, step: 1, value: "90", inputmode: "numeric" });
      stack.append(
        field({ label: "Owner", input: owner, path: "user", kit, hint: "The key acts as this user." }), ownerList,
        field({ label: "Name", input: textInput({ id: "ck-name", autofocus: true, placeholder: "ci deploy" }), path: "name", kit, optional: true, hint: "To recognise it in this list." }),
        field({ label: "Scope", input: route, path: "route", kit, hint: "A key scoped to one Space can't be used anywhere else (nor on this API)." }),
        field({ label: "Expires after (days)", input: days, path: "expires_in_days", kit, optional: true, hint: "Empty: never expires." }));
      routeNames().then((names) => route.append(...names.map((n) => h("option", { value: n }, n)))).catch(() => {});
      fetchAll("/users").then((all) => ownerList.replaceChildren(...all.map((u) => h("option", { value: u.username })))).catch(() => {});
    },
    async submit(kit, d) {
      const f = d.el;
      const body = {};
      const user = $("#ck-user", f).value.trim(), name = $("#ck-name", f).value.trim(), route = $("#ck-route", f).value;
      const days = $("#ck-days", f).value.trim();
      if (user) body.user = user;
      if (name) body.name = name;
      if (route) body.route = route;
      if (days) body.expires_in_days = Number.isInteger(Number(days)) ? Number(days) : days;
      const created = await api.post("/api-keys", body);
      let secret = created.key;
      created.key = undefined;
      d.close();
      reload();
      secretDialog({
        title: "Your new API key", label: "API key", secret,
        lede: `Key ${created.name ? `\u201c${created.name}\u201d ` : ""}of ${created.user}${created.route ? `, for ${created.route} only` : ""}. Use it as Authorization: Bearer <key>.`,
        note: "Copy it now and keep it somewhere safe: the gateway can't show it again.",
      });
      secret = null;
      return false;
    },
  });
}

/* ---------------------------------------------------------------- Sessions */

function deviceText(ua) {
  if (!ua) return "Unknown device";
  const browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" : /Chrome\//.test(ua) ? "Chrome"
    : /Safari\//.test(ua) ? "Safari" : (ua.match(/^([\w.-]+)\//) || [null, "Program"])[1];
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Mac OS X/.test(ua) ? "macOS"
    : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

function sessionsScreen(ctx) {
  ctx.head({ title: "Sessions", lede: "Who is signed in right now. Revoking a session signs that browser or token out at once." });
  const userFilter = textInput({ id: "sessions-user", type: "search", placeholder: "Any user" });
  const toolbar = h("form", { class: "toolbar", role: "search", "aria-label": "Filter sessions" }, field({ label: "User", input: userFilter }));
  filteredTable(ctx, {
    title: "Active sessions", toolbar, userFilter, path: "/sessions", row: sessionRow,
    empty: (filtered) => ["No sessions", filtered ? "Nobody by that name is signed in." : "Nobody is signed in."],
    table: ["Sessions", [{ label: "User" }, { label: "Via" }, { label: "Device" }, { label: "Address" }, { label: "Started" }, { label: "Expires" }, { label: "", cls: "r" }], "sessions-table"],
  }).reload();
}

function sessionRow(s, reload) {
  const mine = app.me && app.me.user === s.user;
  return h("tr", { testid: `session-row-${s.id}` },
    h("th", { scope: "row" }, h("span", { class: "cell-main" }, s.user, mine ? h("span", { class: "muted" }, " (you)") : null)),
    td("Via", badge(s.via || DASH, s.via === "huggingface" ? "accent" : "")),
    td("Device", h("span", { title: s.user_agent || "" }, deviceText(s.user_agent), h("span", { class: "cell-sub clip" }, s.user_agent || ""))),
    td("Address", h("span", { class: "cell-mono" }, s.address || DASH)),
    td("Started", timeEl(s.created_at, "rel")),
    td("Expires", timeEl(s.expires_at, "rel")),
    td(null, h("button", { type: "button", class: "btn btn-danger-quiet btn-sm", testid: `revoke-session-${s.id}`, "aria-label": `Revoke the session of ${s.user}`,
      onclick: () => confirmAction({
        title: `Revoke this session of ${s.user}?`, confirmLabel: "Revoke session",
        text: mine ? "If this is the browser you are using now, you will be signed out." : `${deviceText(s.user_agent)} is signed out at once; ${s.user} can sign in again.`,
        run: async () => { await api.del(`/sessions/${enc(s.id)}`, s.etag); notify("Session revoked."); reload(); },
      }) }, "Revoke"), "actions"));
}

/* ---------------------------------------------------------------- Audit */

const AUDIT_KINDS = ["login.succeeded", "login.failed", "login.throttled", "logout", "token.refreshed", "token.reused",
  "user.created", "user.updated", "user.deleted", "user.invited", "invite.used", "key.created", "key.revoked",
  "session.revoked", "route.created", "route.updated", "route.deleted", "config.imported"];

function kindBadge(kind) {
  const cls = /failed|reused/.test(kind) ? "bad" : /throttled|deleted|revoked/.test(kind) ? "warn"
    : /succeeded|created|used$/.test(kind) ? "ok" : /updated|imported|invited/.test(kind) ? "accent" : "";
  return badge(kind, cls);
}

function auditSubject(e) {
  const d = e.detail || {};
  if (d.route) return `Space ${d.route}`;
  if (d.user) return `User ${d.user}`;
  if (d.key) return `Key ${d.key}`;
  if (d.session) return `Session ${d.session}`;
  if (e.kind === "config.imported") return `+${(d.added || []).length} ~${(d.changed || []).length} \u2212${(d.removed || []).length}`;
  return "";
}

const pretty = (value) => JSON.stringify(value, null, 2);

function auditScreen(ctx) {
  ctx.head({ title: "Audit log", lede: "Every sign-in and every change, newest first: who, from where, what before and after." });
  const actor = textInput({ id: "audit-actor", type: "search", placeholder: "Anyone" });
  const kind = select([["", "All events"], ...AUDIT_KINDS.map((k) => [k, k])], "", { id: "audit-kind" });
  const toolbar = h("form", { class: "toolbar", role: "search", "aria-label": "Filter the audit log" },
    field({ label: "Actor", input: actor }), field({ label: "Event", input: kind }));
  const list = listPanel("Events", toolbar);
  ctx.add(list.panel);
  let tbody = null;
  const paging = pager(
    (cursor) => api.get(`/audit${query({ actor: actor.value.trim(), kind: kind.value, limit: 50, cursor })}`),
    (items, first) => {
      if (first && !items.length) { list.show(emptyBox("No events", actor.value.trim() || kind.value ? "Nothing matches these filters." : "Nothing happened yet.")); return; }
      if (first) {
        const t = dataTable("Audit events", [{ label: "Time" }, { label: "Actor" }, { label: "Event" }, { label: "Subject" }, { label: "From" }, { label: "", cls: "r" }], "audit-table");
        tbody = t.tbody;
        list.show(t.wrap);
      }
      for (const e of items) tbody.append(...auditRows(e));
      list.count(`${tbody.querySelectorAll("tr[data-event]").length} shown`);
    },
    (e) => list.show(errorBox(e, paging.reload)), () => list.busy());
  list.foot.append(paging.more);
  list.foot.hidden = false;
  toolbar.addEventListener("submit", (e) => { e.preventDefault(); paging.reload(); });
  actor.addEventListener("input", debounce(() => paging.reload(), 350));
  kind.addEventListener("change", () => paging.reload());
  paging.reload();
}

function auditRows(e) {
  const detailId = nextId("audit-detail");
  const toggle = h("button", { type: "button", class: "btn btn-quiet btn-sm", "aria-expanded": "false", "aria-controls": detailId, testid: `audit-toggle-${e.id}` }, "Details");
  const detailRow = h("tr", { class: "expand-row", id: detailId, hidden: true, testid: `audit-detail-${e.id}` });
  toggle.addEventListener("click", () => {
    const open = detailRow.hidden;
    if (open && !detailRow.firstChild) detailRow.append(h("td", { colspan: 6 }, auditDetail(e)));
    detailRow.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide" : "Details";
  });
  const row = h("tr", { testid: `audit-row-${e.id}`, "data-event": e.id },
    td("Time", timeEl(e.at), "nowrap"),
    td("Actor", e.actor ? h("span", { class: "cell-main" }, e.actor) : h("span", { class: "muted" }, "anonymous")),
    td("Event", kindBadge(e.kind)),
    td("Subject", auditSubject(e) || h("span", { class: "muted" }, DASH)),
    td("From", h("span", { class: "cell-mono" }, e.source || DASH)),
    td(null, toggle, "actions"));
  return [row, detailRow];
}

function auditDetail(e) {
  const d = e.detail || {};
  if (d.before !== undefined || d.after !== undefined) {
    const before = d.before || {}, after = d.after || {};
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
      .filter((k) => k !== "etag" && JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    const rest = Object.fromEntries(Object.entries(d).filter(([k]) => k !== "before" && k !== "after"));
    return h("div", null,
      d.before && d.after && keys.length ? h("p", { class: "hint" }, "Changed: ", keys.join(", ")) : null,
      h("div", { class: "diff-cols" },
        h("div", null, h("h3", null, "Before"), d.before ? h("pre", { class: "code" }, pretty(d.before)) : h("p", { class: "muted" }, "nothing (new)")),
        h("div", null, h("h3", null, "After"), d.after ? h("pre", { class: "code" }, pretty(d.after)) : h("p", { class: "muted" }, "nothing (removed)"))),
      Object.keys(rest).length ? h("pre", { class: "code" }, pretty(rest)) : null);
  }
  return h("pre", { class: "code" }, pretty(d));
}

/* ---------------------------------------------------------------- Logs */

const LOG_LEVELS = [["", "All levels"], ["info", "Info and above"], ["warn", "Warnings and above"], ["error", "Errors and above"], ["critical", "Critical only"]];
const MAX_LOG_LINES = 1500;

function logsScreen(ctx) {
  const follow = switchInput("Follow live", { id: "logs-follow", testid: "follow" });
  const followNote = h("span", { class: "count", "aria-live": "polite" });
  ctx.head({ title: "Logs", lede: "The gateway's recent log lines (kept in memory), newest first." });
  const level = select(LOG_LEVELS, "", { id: "logs-level" });
  const text = textInput({ id: "logs-text", type: "search", placeholder: "Words in the line" });
  const toolbar = h("form", { class: "toolbar", role: "search", "aria-label": "Filter log lines" },
    field({ label: "Level", input: level }), field({ label: "Contains", input: text, cls: "grow" }),
    h("div", { class: "tools-end" }, followNote, follow.el));
  const lines = h("ol", { class: "log", testid: "log-lines", "aria-label": "Log lines, newest first" });
  const body = h("div", null, loadingBox("Loading log lines\u2026"));
  const panel = h("section", { class: "panel flush", "aria-label": "Log lines" }, body, h("div", { class: "panel-foot", hidden: true }));
  ctx.add(toolbar, panel);
  let lastId = 0, polling = false;

  const paging = pager(
    (cursor) => api.get(`/logs${query({ level: level.value, text: text.value.trim(), limit: 200, cursor })}`),
    (items, first, data) => {
      if (first) {
        lines.replaceChildren();
        body.replaceChildren(lines);
        lastId = num(data.last_id) || 0;
      }
      for (const line of items) { lines.append(logLine(line)); lastId = Math.max(lastId, line.id || 0); }
      if (!lines.children.length) lines.append(h("li", { class: "empty", testid: "empty" }, "No log lines match."));
    },
    (e) => body.replaceChildren(errorBox(e, paging.reload)));
  panel.lastChild.append(paging.more);
  panel.lastChild.hidden = false;

  async function poll() {
    if (!follow.input.checked || polling) return;
    polling = true;
    try {
      const data = await api.get(`/logs${query({ level: level.value, text: text.value.trim(), after: lastId, limit: 500 })}`);
      if (!ctx.alive()) return;
      const items = data.items || [];
      // Newest first: insert the batch as one block at the top.
      const block = document.createDocumentFragment();
      for (const line of items) {
        if (line.id <= lastId && lines.querySelector(`[data-id="${line.id}"]`)) continue;
        block.append(logLine(line, true));
      }
      if (block.childNodes.length) { lines.querySelector("li.empty")?.remove(); lines.prepend(block); }
      // Never go back: an empty answer may name an older id.
      lastId = Math.max(lastId, num(data.last_id) || 0, ...items.map((l) => l.id || 0));
      while (lines.children.length > MAX_LOG_LINES) lines.lastElementChild.remove();
      followNote.textContent = `Following \u00b7 ${clock.format(new Date())}`;
    } catch (e) {
      followNote.textContent = `Paused: ${errorText(e)}`;
    } finally {
      polling = false;
    }
  }
  follow.input.addEventListener("change", () => {
    followNote.textContent = follow.input.checked ? "Following" : "";
    if (follow.input.checked) poll();
  });
  ctx.every(POLL_MS, poll);
  toolbar.addEventListener("submit", (e) => { e.preventDefault(); paging.reload(); });
  level.addEventListener("change", () => paging.reload());
  text.addEventListener("input", debounce(() => paging.reload(), 350));
  paging.reload();
}

function logLine(line, fresh = false) {
  const date = new Date((line.time || 0) * 1000);
  return h("li", { class: `${line.level || ""}${fresh ? " fresh" : ""}`, testid: `log-line-${line.id}`, "data-id": line.id },
    h("time", { class: "l-time", datetime: date.toISOString(), title: fullDate.format(date) }, clock.format(date)),
    h("span", null, h("span", { class: `lvl ${line.level || ""}` }, line.level || "?")),
    h("span", { class: "l-ns", title: line.namespace || "" }, line.namespace || ""),
    h("span", { class: "l-text" }, line.text || ""));
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

/* ---------------------------------------------------------------- Requests */

function statusBadge(status) {
  if (status === null || status === undefined) return h("span", { class: "st none", title: "No answer: the exchange failed" }, "\u2014");
  return h("span", { class: `st s${String(status)[0]}` }, String(status));
}

function requestsScreen(ctx) {
  const refresh = button("Refresh", { testid: "refresh", class: "btn btn-secondary" }, "refresh");
  ctx.head({ title: "Requests", lede: "The most recent exchanges through the gateway (kept in memory), newest first.", actions: [refresh] });
  const route = select([["", "All Spaces"]], "", { id: "req-route" });
  const status = select([["", "Any status"], ["2xx", "2xx success"], ["3xx", "3xx redirect"], ["4xx", "4xx client error"], ["5xx", "5xx server error"]], "", { id: "req-status" });
  const user = textInput({ id: "req-user", type: "search", placeholder: "Anyone" });
  const toolbar = h("form", { class: "toolbar", role: "search", "aria-label": "Filter requests" },
    field({ label: "Space", input: route }), field({ label: "Status", input: status }), field({ label: "User", input: user }));
  const list = listPanel("Recent requests", toolbar);
  ctx.add(list.panel);
  let tbody = null;
  const paging = pager(
    (cursor) => api.get(`/requests${query({ route: route.value, status_class: status.value, user: user.value.trim(), limit: 50, cursor })}`),
    (items, first) => {
      if (first && !items.length) { list.show(emptyBox("No requests", route.value || status.value || user.value.trim() ? "Nothing matches these filters." : "Nothing went through the gateway yet.")); return; }
      if (first) {
        const t = dataTable("Recent requests", [{ label: "Time" }, { label: "Method" }, { label: "Path" }, { label: "Space" }, { label: "Status" }, { label: "Duration", cls: "r" }, { label: "User" }, { label: "Request id" }], "requests-table");
        t.table.classList.add("requests");
        tbody = t.tbody;
        list.show(t.wrap);
      }
      for (const r of items) tbody.append(requestRow(r));
      list.count(`${tbody.children.length} shown`);
    },
    (e) => list.show(errorBox(e, paging.reload)), () => list.busy());
  list.foot.append(paging.more);
  list.foot.hidden = false;
  toolbar.addEventListener("submit", (e) => { e.preventDefault(); paging.reload(); });
  route.addEventListener("change", () => paging.reload());
  status.addEventListener("change", () => paging.reload());
  user.addEventListener("input", debounce(() => paging.reload(), 350));
  refresh.addEventListener("click", () => paging.reload());
  routeNames().then((names) => route.append(...names.map((n) => h("option", { value: n }, n)))).catch(() => {});
  paging.reload();
}

function requestRow(r) {
  const href = `#/requests/${enc(r.id)}`;
  const tr = h("tr", { class: "clickable", testid: `request-row-${r.id}` },
    td("Time", timeEl(r.time), "nowrap"),
    td("Method", h("span", { class: "method" }, r.method || DASH)),
    td("Path", h("a", { href, class: "cell-mono", testid: `request-link-${r.id}`, title: r.path }, h("span", { class: "clip" }, r.path || "/")), "c-path"),
    td("Space", r.route || h("span", { class: "muted" }, "none")),
    td("Status", statusBadge(r.status)),
    td("Duration", joinParts(msParts(r.duration_ms)), "r num"),
    td("User", r.user || h("span", { class: "muted" }, "anonymous")),
    td("Request id", h("code", { class: "cell-sub" }, r.request_id || DASH), "c-id"));
  // The whole row opens the request; the link is what keyboards and screen readers use.
  tr.addEventListener("click", (e) => { if (!e.target.closest("a, button") && !getSelection().toString()) location.hash = href; });
  return tr;
}

function requestScreen(ctx, id) {
  ctx.head({ title: `Request ${id}`, crumb: { href: "#/requests", label: "Requests" } });
  const host = ctx.add(h("div", { class: "grid-gap" }, loadingBox()));
  (async () => {
    try {
      const r = await api.get(`/requests/${enc(id)}`);
      if (!ctx.alive()) return;
      const title = $("#screen-title");
      title.replaceChildren(h("span", { class: "method" }, r.method), " ", h("span", { class: "mono" }, r.path));
      document.title = `${r.method} ${r.path} \u00b7 WigHaven Admin`;
      const facts = h("dl", { class: "facts", testid: "request-facts" });
      const fact = (label, value) => facts.append(h("dt", null, label), h("dd", null, value));
      fact("Status", statusBadge(r.status));
      fact("Time", h("span", null, fullDate.format(new Date(r.time * 1000))));
      fact("Duration", joinParts(msParts(r.duration_ms)));
      fact("Space", r.route ? h("a", { href: `#/spaces/${enc(r.route)}` }, r.route) : "none");
      fact("User", r.user || "anonymous");
      fact("Client", h("span", { class: "mono" }, r.client || DASH));
      fact("Request id", h("code", null, r.request_id || DASH));
      host.replaceChildren(
        h("section", { class: "panel", "aria-labelledby": "rq-sum" }, h("div", { class: "panel-head" }, h("h2", { id: "rq-sum" }, "Summary")), facts),
        h("div", { class: "two-col" },
          headersPanel("Request headers", r.request_headers, "request-headers"),
          headersPanel("Response headers", r.response_headers, "response-headers")));
    } catch (e) {
      if (ctx.alive()) host.replaceChildren(errorBox(e, ctx.reload));
    }
  })();
}

function headersPanel(title, headers, testid) {
  const hid = nextId("hdr");
  let body;
  if (!headers) body = h("p", { class: "muted", testid }, "No response: the exchange ended before an answer.");
  else if (!headers.length) body = h("p", { class: "muted", testid }, "None.");
  else {
    body = h("div", { class: "table-wrap" }, h("table", { class: "headers-table", testid },
      h("caption", { class: "sr-only" }, title),
      h("tbody", null, headers.map(([k, v]) => h("tr", null, h("td", null, k), h("td", { class: v === "[redacted]" ? "redacted" : null }, v))))));
  }
  return h("section", { class: "panel", "aria-labelledby": hid }, h("div", { class: "panel-head" }, h("h2", { id: hid }, title),
    headers ? h("span", { class: "hint" }, `${headers.length}`) : null), body);
}

/* ---------------------------------------------------------------- Config */

function configScreen(ctx) {
  ctx.head({ title: "Configuration", lede: "Export every Space as TOML, or import a file to make the stored Spaces match it." });
  const exportArea = h("textarea", { id: "config-export", class: "mono", readonly: true, rows: 11, wrap: "off", spellcheck: "false", testid: "config-export", "aria-describedby": "config-export-hint" });
  const download = button("Download", { testid: "download", class: "btn btn-primary" }, "download");
  const copy = button("Copy", { testid: "copy-export" }, "copy");
  const again = button("Refresh", { testid: "refresh-export", class: "btn btn-quiet" }, "refresh");
  const exportState = h("div");
  const exportPanel = h("section", { class: "panel", "aria-labelledby": "export-h" },
    h("div", { class: "panel-head" }, h("h2", { id: "export-h" }, "Export"),
      h("span", { class: "hint", id: "config-export-hint" }, "Tokens are written as env: references: no secret leaves the gateway.")),
    exportState, h("div", { class: "field" }, h("label", { for: "config-export", class: "sr-only" }, "Exported TOML"), exportArea),
    h("div", { class: "btn-row form-actions" }, download, copy, again));

  async function loadExport() {
    exportState.replaceChildren();
    exportArea.value = "";
    exportArea.placeholder = "Loading\u2026";
    for (const b of [download, copy]) b.disabled = true;
    try {
      const text = await api.get("/config/export");
      if (!ctx.alive()) return;
      exportArea.value = typeof text === "string" ? text : pretty(text);
      for (const b of [download, copy]) b.disabled = false;
    } catch (e) {
      if (ctx.alive()) exportState.replaceChildren(errorBox(e, loadExport));
    } finally {
      exportArea.placeholder = "";
    }
  }
  download.addEventListener("click", () => {
    const blob = new Blob([exportArea.value], { type: "application/toml" });
    const url = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().slice(0, 10);
    const a = h("a", { href: url, download: `wighaven-routes-${stamp}.toml`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 5000);
  });
  copy.addEventListener("click", () => copyText(exportArea.value, copy));
  again.addEventListener("click", loadExport);

  ctx.add(exportPanel, importPanel(ctx, loadExport));
  loadExport();
}

function importPanel(ctx, afterApply) {
  const area = h("textarea", { id: "config-import", class: "mono", rows: 10, wrap: "off", spellcheck: "false", testid: "config-import",
    placeholder: "[[routes]]\nname = \"chat\"\npath = \"/chat\"\n  [[routes.upstreams]]\n  url = \"https://user-chat.hf.space\"\n  token = \"env:HF_TOKEN\"" });
  const file = h("input", { type: "file", id: "config-file", accept: ".toml,text/plain,application/toml" });
  const preview = button("Preview changes", { testid: "preview", class: "btn btn-secondary" });
  const apply = h("button", { type: "button", class: "btn btn-primary", testid: "apply", disabled: true }, "Apply");
  const result = h("div", { class: "grid-gap", "aria-live": "polite" });
  let previewed = null;  // {text, diff}: Apply sends exactly the text that was previewed

  file.addEventListener("change", async () => {
    const f = file.files && file.files[0];
    if (!f) return;
    if (f.size > 2 * 1024 * 1024) { notify("That file is larger than 2 MiB.", "error"); return; }
    area.value = await f.text();
    invalidate();
  });
  const invalidate = () => {
    if (previewed && previewed.text !== area.value) {
      previewed = null;
      apply.disabled = true;
      result.replaceChildren(h("p", { class: "hint" }, "The text changed since the preview: preview again before applying."));
    }
  };
  area.addEventListener("input", invalidate);

  async function send(dryRun) {
    return api.post(`/config/import${dryRun ? "?dry_run=true" : ""}`, area.value, { type: "application/toml" });
  }
  function showFailure(e) {
    const errors = e instanceof ApiError && e.errors.length ? e.errors : [{ field: "", message: errorText(e) }];
    result.replaceChildren(h("div", { class: "banner banner-error", role: "alert", testid: "import-errors" }, icon("error"),
      h("div", { class: "banner-body" }, h("p", null, h("b", null, e.status === 409 ? "This can't be imported" : "The file has problems")),
        h("ul", null, errors.map((x) => h("li", null, x.field ? h("code", null, x.field) : null, x.field ? ": " : "", x.message))))));
  }

  preview.addEventListener("click", async () => {
    if (!area.value.trim()) { result.replaceChildren(banner("warn", h("p", null, "Paste TOML or choose a file first."), { testid: "import-errors" })); area.focus(); return; }
    setBusy(preview, true);
    apply.disabled = true;
    const text = area.value;
    try {
      const diff = await send(true);
      if (!ctx.alive()) return;
      const changes = (diff.added || []).length + (diff.changed || []).length + (diff.removed || []).length;
      previewed = { text, diff };
      apply.disabled = !changes;
      result.replaceChildren(diffView(diff),
        h("p", { class: "hint" }, changes ? "Nothing is changed until you apply." : "Nothing to change: the stored Spaces already match."));
    } catch (e) {
      if (ctx.alive()) { previewed = null; showFailure(e); }
    } finally {
      setBusy(preview, false);
    }
  });

  apply.addEventListener("click", async () => {
    if (!previewed || previewed.text !== area.value) return;
    const d = previewed.diff;
    const n = (k) => (d[k] || []).length;
    const done = await confirmAction({
      title: "Apply this configuration?", confirmLabel: "Apply",
      text: `${n("added")} added, ${n("changed")} changed, ${n("removed")} removed. It is applied all at once, in every worker.`,
      details: n("removed") ? h("p", { class: "once-note" }, icon("warn"), h("span", null, "Removed: ", d.removed.join(", "))) : null,
      run: async () => {
        const applied = await send(false);
        previewed = null;
        apply.disabled = true;
        app.routeNames = null;
        result.replaceChildren(banner("", h("p", null, h("b", null, "Applied. "), "The stored Spaces now match the file.")), diffView(applied));
      },
    });
    if (done) { notify("Configuration applied."); afterApply(); }
  });

  return h("section", { class: "panel", "aria-labelledby": "import-h" },
    h("div", { class: "panel-head" }, h("h2", { id: "import-h" }, "Import"),
      h("span", { class: "hint" }, "Stored Spaces not in the file are removed; config-file Spaces must match it exactly.")),
    h("div", { class: "grid-gap" },
      h("div", { class: "field" }, h("label", { for: "config-file" }, "Load a file ", h("span", { class: "opt" }, "(or paste below)")), file),
      h("div", { class: "field" }, h("label", { for: "config-import" }, "TOML to import"), area),
      h("div", { class: "btn-row" }, preview, apply),
      result));
}

function diffView(diff) {
  const group = (key, title, symbol) => {
    const names = diff[key] || [];
    return h("div", { class: `diff-group ${key}`, testid: `diff-${key}` },
      h("h3", null, symbol, ` ${title}`, h("span", { class: "n" }, String(names.length))),
      names.length ? h("ul", null, names.map((n) => h("li", null, n))) : h("p", { class: "none hint" }, "none"));
  };
  return h("div", { class: "diff", testid: "diff", "aria-label": diff.dry_run ? "Preview of the import" : "What the import changed" },
    group("added", "Added", "+"), group("changed", "Changed", "~"), group("removed", "Removed", "\u2212"), group("unchanged", "Unchanged", "="));
}

/* ---------------------------------------------------------------- start */

async function loadMe() {
  try {
    const me = (await request("GET", "/_gateway/auth/me")).data;
    app.me = me;
    $("#who-name").textContent = me.user;
    $("#who").hidden = false;
  } catch (e) {
    if (e.status !== 401) notify(`Couldn't tell who is signed in: ${errorText(e)}`, "error");
  }
}

function start() {
  // The sign-out form is a real form post; it needs the CSRF token first.
  const signout = $("#signout-form");
  signout.addEventListener("submit", async (event) => {
    if ($("#signout-csrf").value) return;
    event.preventDefault();
    try { await csrfToken(); signout.submit(); } catch (e) { notify(errorText(e), "error"); }
  });
  if (!/^#\//.test(location.hash)) history.replaceState(null, "", "#/overview");
  // Only #/... is a screen; the skip link (#main) moves focus and leaves the URL alone.
  window.addEventListener("hashchange", () => { if (/^#\//.test(location.hash)) render(true); });
  $(".skip").addEventListener("click", (event) => { event.preventDefault(); $("#main").focus(); });
  render(false);
  document.body.dataset.state = "ready";
  loadMe();
  csrfToken().catch(() => { /* fetched again before the first change */ });
}

start();
