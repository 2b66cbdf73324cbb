/*
 * The leaders' dashboard: the public GraphQL API, read with the user's token.
 *
 * Why it is built the way it is:
 * - The token comes from the address's fragment (#token=…, which never reaches a server
 *   log) or the sign-in form, and is kept in sessionStorage: it dies with the tab.
 * - The region is in the fragment too (#region=640400), so the browser's Back button and
 *   bookmarks work and a drill-down is an ordinary link.
 * - The gateway that serves the page answers its queries, so they name the fields they
 *   use; `viewer` tells whose token it is and which regions it may read.
 * - Queries stay small (pages of 20, a few requests per view): the gateway refuses
 *   expensive ones (SHUANGJIAN_QUERY_COST_BUDGET).
 * - Live: one WebSocket (graphql-transport-ws; the token goes in connection_init because
 *   browsers cannot set WebSocket headers); an event refreshes the figures, debounced.
 * - Nothing is said by colour alone: every mark has words, charts have labels, patterns
 *   and a data table.
 */
"use strict";

(() => {
  const ENDPOINT = document.querySelector('meta[name="shuangjian-graphql"]').content;
  const TOKEN_KEY = "shuangjian.dashboard.token";
  const NATION = "all";
  const DEBOUNCE_MS = 500;
  // A second refresh a little later: the read models may trail the live event slightly.
  const SETTLE_MS = 2500;
  // Events that keep coming (an import) refresh the figures at least this often.
  const MAX_WAIT_MS = 5000;
  // A message now and then keeps proxies from closing a quiet WebSocket.
  const PING_MS = 30000;
  const MONTHS = 12;
  const PAGE = 20;
  const TIME_ZONE = "Asia/Shanghai";
  const FONT =
    '"Shuangjian Sans", "Noto Sans SC", "Noto Sans CJK SC", "Source Han Sans SC", ' +
    '"PingFang SC", "Microsoft YaHei", sans-serif';

  const fmtInt = new Intl.NumberFormat("zh-CN");
  const fmtMoney = new Intl.NumberFormat("zh-CN", {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
  });
  const fmtPct = new Intl.NumberFormat("zh-CN", {
    style: "percent",
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  });
  const fmtWan = new Intl.NumberFormat("zh-CN", { maximumFractionDigits: 2 });
  const fmtTime = new Intl.DateTimeFormat("zh-CN", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
    timeZone: TIME_ZONE,
  });

  const LEVEL = { PROVINCE: "省级", CITY: "市级", DISTRICT: "区县级" };
  const ROLE = { VIEWER: "查看", OPERATOR: "经办", ADMIN: "管理员", IMPORTER: "数据导入" };
  const FINDING = {
    FIRE_SAFETY: "消防安全",
    STAFF_QUALIFICATION: "从业人员资质",
    TRAINING_MATERIAL: "培训材料",
    FEES: "收费问题",
    HOLIDAY_SUBJECT_TRAINING: "节假日学科类培训",
    HIDDEN_TRAINING: "隐形变异培训",
    UNLICENSED_OPERATION: "无证办学",
    FALSE_ADVERTISING: "虚假宣传",
    OTHER: "其他",
  };
  const INSTITUTION_STATUS = {
    PENDING: "待审批",
    APPROVED: "已审批",
    SUSPENDED: "停业整顿",
    REVOKED: "已取缔",
    EXITED: "已退出",
  };
  const RECTIFICATION_STATUS = { OPEN: "整改中", SUBMITTED: "待验收", CLOSED: "已完成" };
  const RISK = { GREEN: "绿色", YELLOW: "黄色", RED: "红色" };
  const ERROR_TITLE = {
    FORBIDDEN: ["无权查看", "该地区不在您的令牌授权范围内，未显示任何数据。"],
    BAD_INPUT: ["请求有误", "请检查地址中的地区代码。"],
    NOT_FOUND: ["未找到", ""],
    UNAVAILABLE: ["服务暂不可用", "请稍后再试。"],
    INTERNAL: ["服务器内部错误", "请稍后再试，或联系运维人员。"],
  };

  const $ = (id) => document.getElementById(id);

  /** A DOM element: h("td", {class: "num"}, "12"). Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // --- numbers ---------------------------------------------------------------------------

  const int = (value) => (value === null || value === undefined ? "—" : fmtInt.format(value));
  const pct = (value) => (value === null || value === undefined ? "—" : fmtPct.format(value));
  // Money is an exact decimal string ("4999.00"): formatted from the string, never a float.
  const money = (value) => (value === null || value === undefined ? "—" : fmtMoney.format(value));
  const wan = (value) => Number(value) / 10000;

  function cents(value) {
    const [whole, fraction = ""] = String(value).replace(/^-/, "").split(".");
    const amount = BigInt(whole || "0") * 100n + BigInt((fraction + "00").slice(0, 2));
    return String(value).startsWith("-") ? -amount : amount;
  }

  function fromCents(amount) {
    const sign = amount < 0n ? "-" : "";
    const abs = amount < 0n ? -amount : amount;
    return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, "0")}`;
  }

  const isMoney = (value) => typeof value === "string" && /^-?\d+\.\d{2}$/.test(value);

  /** Adds ``source`` into ``target`` field by field (counts, money, lists of counts). */
  function addInto(target, source) {
    for (const [key, value] of Object.entries(source || {})) {
      if (typeof value === "number") target[key] = (target[key] || 0) + value;
      else if (isMoney(value)) target[key] = fromCents(cents(target[key] || "0.00") + cents(value));
      else if (Array.isArray(value)) {
        const merged = new Map((target[key] || []).map((item) => [labelOf(item), { ...item }]));
        for (const item of value) {
          const known = merged.get(labelOf(item));
          if (known) known.count += item.count;
          else merged.set(labelOf(item), { ...item });
        }
        target[key] = [...merged.values()];
      } else if (value && typeof value === "object") addInto((target[key] ||= {}), value);
      else if (!(key in target)) target[key] = value;
    }
    return target;
  }

  const labelOf = (item) => item.type || item.channel || JSON.stringify(item);

  /** The rates of a sum, from its parts, as the contract defines them. */
  function rerate(figures) {
    if (!figures) return figures;
    const institutions = figures.institutions || figures;
    if ("subjectBaseline" in institutions) {
      const base = institutions.subjectBaseline;
      institutions.subjectCompressionRate = base ? (base - institutions.subject) / base : null;
    }
    const inspections = figures.inspections || figures;
    if ("rectificationsOpened" in inspections && "rectificationRate" in inspections) {
      const opened = inspections.rectificationsOpened;
      inspections.rectificationRate = opened ? inspections.rectificationsClosed / opened : null;
    }
    return figures;
  }

  // --- months ----------------------------------------------------------------------------

  /** The first days of the last ``count`` months, oldest first, by Beijing time. */
  function lastMonths(count) {
    const parts = new Intl.DateTimeFormat("en-CA", {
      year: "numeric",
      month: "2-digit",
      timeZone: TIME_ZONE,
    }).formatToParts(new Date());
    let year = Number(parts.find((p) => p.type === "year").value);
    let month = Number(parts.find((p) => p.type === "month").value);
    const months = [];
    for (let i = 0; i < count; i += 1) {
      months.unshift(`${year}-${String(month).padStart(2, "0")}-01`);
      month -= 1;
      if (month === 0) {
        month = 12;
        year -= 1;
      }
    }
    return months;
  }

  function monthLabel(iso, index) {
    const [year, month] = iso.split("-").map(Number);
    return index === 0 || month === 1 ? `${year}年${month}月` : `${month}月`;
  }

  /** On a chart's axis: every month, the year under the first and under January. */
  function axisMonth(iso, index) {
    const [year, month] = iso.split("-").map(Number);
    return index === 0 || month === 1 ? `${month}月\n${year}年` : `${month}月`;
  }

  // --- GraphQL over HTTP ----------------------------------------------------------------

  class GraphQLFailure extends Error {
    constructor(errors) {
      super(errors.map((e) => e.message).join("; "));
      this.errors = errors;
    }
    get codes() {
      return this.errors.map((e) => (e.extensions && e.extensions.code) || "BAD_INPUT");
    }
    get unauthenticated() {
      return this.codes.includes("UNAUTHENTICATED");
    }
  }

  async function gql(operationName, query, variables) {
    let response;
    try {
      response = await fetch(ENDPOINT, {
        method: "POST",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/graphql-response+json, application/json",
          Authorization: `Bearer ${state.token}`,
        },
        body: JSON.stringify({ query, variables: variables || {}, operationName }),
      });
    } catch (error) {
      throw new GraphQLFailure([
        { message: `无法连接服务器（${error.message}）`, extensions: { code: "UNAVAILABLE" } },
      ]);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.status === 401) {
      const errors = (body && body.errors) || [{ message: "未登录" }];
      throw new GraphQLFailure(
        errors.map((e) => ({ ...e, extensions: { ...e.extensions, code: "UNAUTHENTICATED" } })),
      );
    }
    if (!body || typeof body !== "object") {
      throw new GraphQLFailure([
        { message: `服务器返回 HTTP ${response.status}`, extensions: { code: "UNAVAILABLE" } },
      ]);
    }
    if (body.errors && body.errors.length) throw new GraphQLFailure(body.errors);
    return body.data;
  }

  // --- the queries -------------------------------------------------------------------------

  const STATS = `fragment Figures on RegionStats {
  institutions { active subject subjectBaseline subjectCompressionRate }
  inspections {
    inspections personnelDispatched institutionsInspected findings
    rectificationsOpened rectificationsClosed rectificationRate rectificationsOverdue
    complaints lawTalks jointActions
  }
  finance { orders orderAmount escrowBalance released refunded riskGreen riskYellow riskRed }
}`;

  const ROW_STATS = `stats {
      institutions { active subjectCompressionRate }
      inspections { inspections rectificationRate rectificationsOverdue }
      finance { orderAmount riskRed }
    }`;

  const REGION_QUERY = `query DashboardRegion($code: String!) {
  region(code: $code) {
    code name fullName level
    parent { code name level parent { code name level } }
    stats { ...Figures }
    children { code name level ${ROW_STATS} }
  }
}
${STATS}`;

  const NATION_QUERY = `query DashboardNation {
  regions(level: PROVINCE) { code name fullName level stats { ...Figures } }
}
${STATS}`;

  const WATCH_QUERY = `query DashboardWatchlists($region: String) {
  red: institutions(filter: {region: $region, riskLevel: RED}, first: ${PAGE}) {
    totalCount
    edges { node { id name status riskLevel region { name } } }
  }
  overdue: rectifications(filter: {region: $region, overdue: true}, first: ${PAGE}) {
    totalCount
    edges { node { id deadline status institution { name } region { name } findings { type } } }
  }
}`;

  // A month's figures, and the standing at its end (月末).
  const MONTH = `fragment Month on MonthlyStats {
  month institutionsRegistered institutionsClosed
  inspections personnelDispatched institutionsInspected findings findingsByType { type count }
  rectificationsOpened rectificationsClosed complaints lawTalks jointActions
  orders orderAmount released refunded
  atMonthEnd {
    institutionsActive subject subjectBaseline subjectCompressionRate
    rectificationsOpened rectificationsClosed rectificationRate rectificationsOverdue
    escrowBalance riskRed
  }
}`;

  const HISTORY_QUERY = `query DashboardHistory($code: String!, $from: Date!, $to: Date!) {
  region(code: $code) { history(from: $from, to: $to) { ...Month } }
}
${MONTH}`;

  // At most this many provinces a request, well under the gateway's alias limit.
  const PROVINCES_A_REQUEST = 8;

  // Codes come from the gateway's own list of provinces (six digits), never from the user.
  const nationHistoryQuery = (codes) => `query DashboardNationHistory($from: Date!, $to: Date!) {
${codes.map((code) => `  p${code}: region(code: "${code}") { history(from: $from, to: $to) { ...Month } }`).join("\n")}
}
${MONTH}`;

  const SUBSCRIPTION = `subscription DashboardEvents($region: String!) {
  events(region: $region) { id type region occurredAt }
}`;

  // --- state -------------------------------------------------------------------------------

  const state = {
    token: null,
    viewer: null, // { subject, role, scope: { code, name, level } | null }
    picker: [], // [{ code, label }]
    code: null, // the region shown; NATION for the whole country
    generation: 0,
    live: null,
    charts: new Map(),
    focusAfterLoad: false,
    showAllRows: false,
    refreshTimer: 0,
    settleTimer: 0,
    pendingSince: 0,
    fontsReady: null,
  };

  // --- the address's fragment -------------------------------------------------------------

  const hashParams = () => new URLSearchParams(location.hash.replace(/^#/, ""));

  function takeTokenFromAddress() {
    const params = hashParams();
    if (!params.has("token")) return false;
    const token = cleanToken(params.get("token"));
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      state.token = token;
    }
    return Boolean(token);
  }

  /** A pasted token, with or without "Bearer " or the GraphiQL header JSON around it. */
  function cleanToken(text) {
    let token = (text || "").trim();
    try {
      const parsed = JSON.parse(token);
      if (parsed && typeof parsed.Authorization === "string") token = parsed.Authorization;
    } catch {
      /* not JSON: the token itself */
    }
    return token.replace(/^Bearer\s+/i, "").trim();
  }

  const regionHref = (code) => `#region=${encodeURIComponent(code)}`;

  // --- sign-in and sign-out ----------------------------------------------------------------

  function showSignIn(message, kind) {
    stopLive();
    destroyCharts();
    $("main").hidden = true;
    $("region-bar").hidden = true;
    $("session").hidden = true;
    $("alert").hidden = true;
    $("sign-in").hidden = false;
    const note = $("sign-in-message");
    note.textContent = message || "";
    note.dataset.kind = kind || "error";
    document.title = "登录 · 双减监管数据看板";
    $("token-input").value = "";
    $("token-input").focus();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.viewer = null;
    showSignIn("您已退出登录。如需继续查看，请重新输入令牌。", "info");
  }

  function authFailed(failure) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    const detail = failure && failure.errors ? failure.errors.map((e) => e.message).join("；") : "";
    showSignIn(
      `令牌无效或已过期，请重新输入令牌（UNAUTHENTICATED${detail ? `：${detail}` : ""}）。`,
      "error",
    );
  }

  // --- session: viewer, picker --------------------------------------------------------------

  async function loadSession() {
    const viewer = await gql(
      "DashboardViewer",
      "query DashboardViewer { viewer { subject role scope { code name level } } }",
    );
    state.viewer = viewer.viewer;
    const scope = state.viewer.scope;
    if (scope) {
      const data = await gql(
        "DashboardScope",
        `query DashboardScope($code: String!) {
  region(code: $code) { code fullName children { code name } }
}`,
        { code: scope.code },
      );
      const root = data.region;
      state.picker = [
        { code: root.code, label: root.fullName },
        ...root.children.map((child) => ({ code: child.code, label: `　${child.name}` })),
      ];
    } else {
      const data = await gql(
        "DashboardProvinces",
        "query DashboardProvinces { regions(level: PROVINCE) { code name } }",
      );
      state.picker = [
        { code: NATION, label: "全国" },
        ...data.regions.map((region) => ({ code: region.code, label: `　${region.name}` })),
      ];
    }
  }

  function renderSession() {
    const viewer = state.viewer;
    const role = ROLE[String(viewer.role || "").toUpperCase()] || viewer.role || "";
    const scope = viewer.scope ? viewer.scope.name : "全国";
    $("who").textContent = [viewer.subject, role, `范围：${scope}`].filter(Boolean).join(" · ");
    $("session").hidden = false;
    $("region-bar").hidden = false;
  }

  function renderPicker(code, name) {
    const select = $("region-select");
    select.replaceChildren();
    const options = [...state.picker];
    if (!options.some((option) => option.code === code) && code !== NATION) {
      options.unshift({ code, label: `当前：${name || code}` });
    }
    for (const option of options) {
      select.append(
        h("option", { value: option.code, selected: option.code === code }, option.label),
      );
    }
  }

  // --- loading a view -------------------------------------------------------------------------

  async function enter() {
    $("sign-in").hidden = true;
    try {
      await loadSession();
    } catch (failure) {
      if (failure instanceof GraphQLFailure && failure.unauthenticated) return authFailed(failure);
      $("main").hidden = true;
      showAlert(failure);
      return undefined;
    }
    renderSession();
    startLive();
    route();
    return undefined;
  }

  function defaultRegion() {
    return state.viewer.scope ? state.viewer.scope.code : NATION;
  }

  function route() {
    if (takeTokenFromAddress()) {
      enter();
      return;
    }
    if (!state.token || !state.viewer) return;
    let code = hashParams().get("region") || defaultRegion();
    if (code === NATION && state.viewer.scope) {
      code = state.viewer.scope.code; // the whole country is above a scoped token
      history.replaceState(null, "", location.pathname + location.search + regionHref(code));
    }
    const moved = code !== state.code;
    state.code = code;
    if (moved) state.showAllRows = false;
    load({ quiet: false });
  }

  /** Everything for ``state.code``; ``quiet`` for a live refresh (no busy state, no focus). */
  async function load({ quiet }) {
    const generation = ++state.generation;
    const code = state.code;
    const months = lastMonths(MONTHS);
    if (!quiet) $("main").setAttribute("aria-busy", "true");
    const span = { from: months[0], to: months[months.length - 1] };

    const figures = code === NATION ? loadNation() : loadRegion(code);
    const trend = figures.then((view) => loadHistory(view, span));
    const watch = gql("DashboardWatchlists", WATCH_QUERY, {
      region: code === NATION ? null : code,
    });
    const [viewResult, trendResult, watchResult] = await Promise.allSettled([
      figures,
      trend,
      watch,
    ]);
    if (generation !== state.generation) return; // a newer view was asked for meanwhile

    $("main").removeAttribute("aria-busy");
    const failures = [viewResult, trendResult, watchResult]
      .filter((result) => result.status === "rejected")
      .map((result) => result.reason);
    if (failures.some((f) => f instanceof GraphQLFailure && f.unauthenticated)) {
      authFailed(failures.find((f) => f.unauthenticated));
      return;
    }
    if (viewResult.status === "rejected") {
      // No figures for this region (out of scope, unknown code…): show none of anything.
      showNothing(code);
      showAlert(...failures);
      return;
    }
    if (failures.length) showAlert(...failures);
    else hideAlert();

    const view = viewResult.value;
    const history = trendResult.status === "fulfilled" ? trendResult.value : null;
    $("main").hidden = false;
    if (!quiet) {
      // A live refresh leaves these alone: the user may be in the picker.
      renderHeader(view);
      renderPicker(code, view.name);
    }
    renderKpis(view.stats, history ? history[history.length - 1] : null);
    await renderCharts(history, months);
    renderChildren(view);
    if (watchResult.status === "fulfilled") renderWatchlists(watchResult.value);
    $("live-time").textContent = `更新于 ${fmtTime.format(new Date())}`;
    if (state.live) state.live.watch(liveRegions(view));
    if (!quiet && state.focusAfterLoad) {
      state.focusAfterLoad = false;
      $("region-title").focus();
    }
  }

  async function loadRegion(code) {
    const data = await gql("DashboardRegion", REGION_QUERY, { code });
    if (!data.region) {
      throw new GraphQLFailure([
        { message: `没有代码为 ${code} 的地区`, extensions: { code: "NOT_FOUND" } },
      ]);
    }
    return data.region;
  }

  async function loadNation() {
    const data = await gql("DashboardNation", NATION_QUERY);
    const stats = rerate(data.regions.reduce((sum, region) => addInto(sum, region.stats), {}));
    return {
      code: NATION,
      name: "全国",
      fullName: "全国",
      level: "NATION",
      parent: null,
      stats,
      children: data.regions,
    };
  }

  /** Any figure other than zero: provinces without add nothing to a national trend. */
  function hasFigures(value) {
    if (typeof value === "number") return value !== 0;
    if (isMoney(value)) return cents(value) !== 0n;
    if (value && typeof value === "object") return Object.values(value).some(hasFigures);
    return false;
  }

  async function loadHistory(view, span) {
    if (view.code !== NATION) {
      const data = await gql("DashboardHistory", HISTORY_QUERY, { code: view.code, ...span });
      return data.region.history;
    }
    const codes = view.children.filter((p) => hasFigures(p.stats)).map((p) => p.code);
    const total = lastMonths(MONTHS).map((month) => ({ month }));
    for (let i = 0; i < codes.length; i += PROVINCES_A_REQUEST) {
      const chunk = codes.slice(i, i + PROVINCES_A_REQUEST);
      const data = await gql("DashboardNationHistory", nationHistoryQuery(chunk), span);
      for (const code of chunk) {
        data[`p${code}`].history.forEach((month, index) => {
          const { month: _, ...figures } = month;
          addInto(total[index], figures);
        });
      }
    }
    for (const month of total) if (month.atMonthEnd) rerate(month.atMonthEnd);
    return total;
  }

  function showNothing(code) {
    if (state.live) state.live.watch([]);
    $("main").hidden = true;
    destroyCharts();
    for (const id of ["kpis", "charts", "children", "red", "overdue"]) $(id).replaceChildren();
    $("region-title").textContent = code === NATION ? "全国" : `地区 ${code}`;
    $("breadcrumb").replaceChildren();
    document.title = "双减监管数据看板";
    renderPicker(code);
  }

  // --- alerts -----------------------------------------------------------------------------------

  function showAlert(...failures) {
    const alert = $("alert");
    const seen = new Set();
    const lines = [];
    for (const failure of failures) {
      const errors =
        failure instanceof GraphQLFailure
          ? failure.errors
          : [
              {
                message: String((failure && failure.message) || failure),
                extensions: { code: "INTERNAL" },
              },
            ];
      for (const error of errors) {
        const code = (error.extensions && error.extensions.code) || "BAD_INPUT";
        const key = `${code}:${error.message}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const [title, advice] = ERROR_TITLE[code] || ["查询失败", ""];
        lines.push(
          h(
            "p",
            {},
            h("strong", {}, `${title}（${code}）`),
            advice ? `：${advice}` : "",
            h("br"),
            `服务器说明：${error.message}`,
          ),
        );
      }
    }
    alert.replaceChildren(...lines);
    alert.hidden = lines.length === 0;
  }

  function hideAlert() {
    $("alert").hidden = true;
    $("alert").replaceChildren();
  }

  // --- header ------------------------------------------------------------------------------------

  function lineage(view) {
    const chain = [];
    for (let region = view.parent; region; region = region.parent) chain.unshift(region);
    return chain;
  }

  function reachable(code) {
    const scope = state.viewer.scope;
    if (!scope) return true;
    if (code === NATION) return false;
    const prefix = { PROVINCE: 2, CITY: 4, DISTRICT: 6 }[scope.level] || 6;
    return code.startsWith(scope.code.slice(0, prefix));
  }

  function renderHeader(view) {
    const title = $("region-title");
    const level = LEVEL[view.level];
    title.replaceChildren(view.fullName, level ? h("span", { class: "level" }, level) : "");
    document.title = `${view.fullName} · 双减监管数据看板`;
    const crumbs = [];
    const ancestors = [
      ...(state.viewer.scope ? [] : [{ code: NATION, name: "全国" }]),
      ...lineage(view),
    ];
    for (const region of ancestors) {
      if (region.code === view.code) continue;
      crumbs.push(
        h(
          "li",
          {},
          reachable(region.code)
            ? h(
                "a",
                { href: regionHref(region.code), onclick: () => (state.focusAfterLoad = true) },
                region.name,
              )
            : h("span", {}, region.name),
        ),
      );
    }
    // The whole country is the top: no trail to show above it.
    if (view.code !== NATION) {
      crumbs.push(h("li", {}, h("span", { "aria-current": "page" }, view.name)));
    }
    $("breadcrumb").replaceChildren(...crumbs);
    $("breadcrumb").parentElement.hidden = crumbs.length === 0;
  }

  // --- KPI cards ------------------------------------------------------------------------------------

  const thisMonth = (month, field, format = int) =>
    month && field in month ? `本月 ${format(month[field])}` : "";

  const KPI_GROUPS = [
    {
      title: "机构治理",
      cards: [
        {
          key: "active",
          label: "在册机构",
          unit: "家",
          value: (s) => s.institutions.active,
          note: (s, m) =>
            m
              ? `本月新登记 ${int(m.institutionsRegistered)} · 关停 ${int(m.institutionsClosed)}`
              : "",
        },
        {
          key: "subject",
          label: "学科类机构",
          unit: "家",
          value: (s) => s.institutions.subject,
          note: (s) => `政策基线 ${int(s.institutions.subjectBaseline)} 家`,
        },
        {
          key: "compression",
          label: "压减率",
          format: pct,
          value: (s) => s.institutions.subjectCompressionRate,
          note: (s) => (s.institutions.subjectBaseline ? "学科类机构较基线压减" : "无基线数据"),
        },
        {
          key: "riskRed",
          label: "红色风险机构",
          unit: "家",
          alarm: true,
          value: (s) => s.finance.riskRed,
          note: (s) => `黄色 ${int(s.finance.riskYellow)} · 绿色 ${int(s.finance.riskGreen)}`,
        },
      ],
    },
    {
      title: "检查与整改",
      cards: [
        {
          key: "inspections",
          label: "检查批次",
          unit: "批",
          value: (s) => s.inspections.inspections,
          note: (s, m) => thisMonth(m, "inspections"),
        },
        {
          key: "personnel",
          label: "出动人次",
          unit: "人次",
          value: (s) => s.inspections.personnelDispatched,
          note: (s, m) => thisMonth(m, "personnelDispatched"),
        },
        {
          key: "inspected",
          label: "排查机构",
          unit: "家",
          value: (s) => s.inspections.institutionsInspected,
          note: (s, m) => thisMonth(m, "institutionsInspected"),
        },
        {
          key: "findings",
          label: "发现问题",
          unit: "个",
          value: (s) => s.inspections.findings,
          note: (s, m) => thisMonth(m, "findings"),
        },
        {
          key: "rectification",
          label: "整改率",
          format: pct,
          value: (s) => s.inspections.rectificationRate,
          note: (s) =>
            `已整改 ${int(s.inspections.rectificationsClosed)} / 应整改 ${int(s.inspections.rectificationsOpened)}`,
        },
        {
          key: "overdue",
          label: "逾期未整改",
          unit: "件",
          alarm: true,
          value: (s) => s.inspections.rectificationsOverdue,
          note: () => "超过整改期限仍未完成",
        },
        {
          key: "complaints",
          label: "投诉举报",
          unit: "件",
          value: (s) => s.inspections.complaints,
          note: (s, m) => thisMonth(m, "complaints"),
        },
        {
          key: "lawTalks",
          label: "法治谈话",
          unit: "人",
          value: (s) => s.inspections.lawTalks,
          note: (s) => `联合执法行动 ${int(s.inspections.jointActions)} 次`,
        },
      ],
    },
    {
      title: "预收费监管",
      cards: [
        {
          key: "orders",
          label: "预收费订单",
          unit: "笔",
          value: (s) => s.finance.orders,
          note: (s, m) => thisMonth(m, "orders"),
        },
        {
          key: "orderAmount",
          label: "预收费金额",
          unit: "元",
          format: money,
          value: (s) => s.finance.orderAmount,
          note: (s, m) => thisMonth(m, "orderAmount", money),
        },
        {
          key: "escrow",
          label: "监管余额",
          unit: "元",
          format: money,
          value: (s) => s.finance.escrowBalance,
          note: () => "已收取、尚未拨付或退还",
        },
        {
          key: "released",
          label: "已拨付",
          unit: "元",
          format: money,
          value: (s) => s.finance.released,
          note: (s, m) => thisMonth(m, "released", money),
        },
        {
          key: "refunded",
          label: "已退费",
          unit: "元",
          format: money,
          value: (s) => s.finance.refunded,
          note: (s, m) => thisMonth(m, "refunded", money),
        },
      ],
    },
  ];

  function renderKpis(stats, month) {
    const groups = KPI_GROUPS.map((group) => {
      const id = `kpi-group-${group.cards[0].key}`;
      return h(
        "section",
        { class: "kpi-group", "aria-labelledby": id },
        h("h3", { id }, group.title),
        h(
          "ul",
          { class: "kpi-row" },
          group.cards.map((card) => {
            const value = card.value(stats);
            const format = card.format || int;
            const alarm = card.alarm && typeof value === "number" && value > 0;
            return h(
              "li",
              {
                class: "kpi",
                dataset: { kpi: card.key, tone: alarm ? "alarm" : "plain" },
              },
              h("p", { class: "kpi-label" }, card.label, alarm ? "（需关注）" : ""),
              h(
                "p",
                { class: card.format === money ? "kpi-value kpi-money" : "kpi-value" },
                h("span", { class: "num" }, format(value)),
                card.unit && value !== null ? h("span", { class: "unit" }, card.unit) : null,
              ),
              h("p", { class: "kpi-note" }, card.note(stats, month) || "　"),
            );
          }),
        ),
      );
    });
    $("kpis").replaceChildren(...groups);
  }

  // --- charts --------------------------------------------------------------------------------------

  // Dark enough for text-level contrast on white; each series also has its own pattern
  // (ECharts' decals) and symbol, so no series is told apart by colour alone.
  const PALETTE = ["#0b3d91", "#b34700", "#00695c", "#6a1b9a", "#a1000f", "#37474f"];
  const SYMBOLS = ["circle", "rect", "triangle", "diamond", "pin", "arrow"];

  function chartDefinitions() {
    return [
      {
        id: "institutions",
        title: "机构登记与关停",
        axes: [{ name: "登记 / 关停（家）" }, { name: "月末在册（家）" }],
        series: [
          { name: "新登记", type: "bar", get: (m) => m.institutionsRegistered },
          { name: "关停（取缔、退出）", type: "bar", get: (m) => m.institutionsClosed },
          { name: "月末在册", type: "line", axis: 1, get: (m) => m.atMonthEnd.institutionsActive },
        ],
      },
      {
        id: "rates",
        title: "压减率与整改率（月末）",
        axes: [{ name: "%", percent: true }],
        series: [
          {
            name: "压减率",
            type: "line",
            percent: true,
            get: (m) => m.atMonthEnd.subjectCompressionRate,
          },
          {
            name: "整改率",
            type: "line",
            percent: true,
            get: (m) => m.atMonthEnd.rectificationRate,
          },
        ],
      },
      {
        id: "inspections",
        title: "检查执法与投诉",
        axes: [{ name: "次 / 个 / 件" }],
        series: [
          { name: "检查批次", type: "bar", get: (m) => m.inspections },
          { name: "发现问题", type: "bar", get: (m) => m.findings },
          { name: "新开整改", type: "bar", get: (m) => m.rectificationsOpened },
          { name: "完成整改", type: "bar", get: (m) => m.rectificationsClosed },
          { name: "投诉举报", type: "line", get: (m) => m.complaints },
        ],
      },
      {
        id: "money",
        title: "预收费资金（万元）",
        axes: [{ name: "万元" }],
        series: [
          { name: "收取", type: "bar", money: true, get: (m) => wan(m.orderAmount) },
          { name: "拨付", type: "bar", money: true, get: (m) => wan(m.released) },
          { name: "退费", type: "bar", money: true, get: (m) => wan(m.refunded) },
          {
            name: "月末监管余额",
            type: "line",
            money: true,
            get: (m) => wan(m.atMonthEnd.escrowBalance),
          },
        ],
      },
      { id: "findingTypes", title: "发现问题类型（近 12 个月合计）", byType: true, series: [] },
    ];
  }

  const valueText = (series, value) =>
    value === null || value === undefined
      ? "—"
      : series.percent
        ? pct(value)
        : series.money
          ? fmtWan.format(value)
          : int(value);

  function seriesOption(series, index, values, labelBars) {
    const base = {
      name: series.name,
      type: series.type,
      data: values,
      symbol: SYMBOLS[index % SYMBOLS.length],
      symbolSize: 10,
      yAxisIndex: series.axis || 0,
      label: {
        show: labelBars,
        position: "top",
        fontSize: 13,
        color: "#111827",
        formatter: (p) => (p.value ? valueText(series, p.value) : ""),
      },
    };
    if (series.type === "line") {
      // A line on the right-hand axis has no end label: it would sit on that axis's own
      // labels. The legend and the axis name it; the data table has its values.
      const onRight = Boolean(series.axis);
      return {
        ...base,
        lineStyle: { width: 3, type: ["solid", "dashed", "dotted"][index % 3] },
        label: { ...base.label, show: false },
        labelLayout: { moveOverlap: "shiftY" },
        endLabel: {
          show: !onRight,
          fontSize: 14,
          color: "#111827",
          formatter: (p) => `${series.name} ${valueText(series, p.value)}`,
        },
      };
    }
    return { ...base, barMaxWidth: 28 };
  }

  function valueAxis(axis, index) {
    return {
      type: "value",
      name: axis.name,
      position: index === 0 ? "left" : "right",
      nameTextStyle: { fontSize: 14, color: "#111827", align: index === 0 ? "left" : "right" },
      min: 0,
      max: axis.percent ? 1 : null,
      minInterval: axis.percent ? 0 : 1,
      splitLine: { show: index === 0 },
      axisLabel: {
        fontSize: 14,
        color: "#111827",
        formatter: (v) => (axis.percent ? pct(v) : fmtWan.format(v)),
      },
    };
  }

  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

  /**
   * Plain lines of text, no markup of ECharts' own: its coloured markers are inline style
   * attributes, which the page's Content-Security-Policy refuses (and say nothing the
   * series' names do not). The box itself is styled through the DOM, which CSP allows.
   */
  function tooltip(value) {
    return {
      trigger: "axis",
      textStyle: { fontFamily: FONT, fontSize: 16, color: "#111827" },
      formatter: (params) => {
        const items = Array.isArray(params) ? params : [params];
        const heading = String(items.length ? items[0].axisValue : "").replace("\n", " ");
        const lines = [heading, ...items.map((p) => `${p.seriesName}：${value(p)}`)];
        return lines.map(escapeHtml).join("<br>");
      },
    };
  }

  function trendOption(def, history, months) {
    const labels = months.map(axisMonth);
    // Values on the bars when they are few; the data table has them all.
    const labelBars = def.series.filter((s) => s.type === "bar").length <= 2;
    return {
      animation: false,
      color: PALETTE,
      textStyle: { fontFamily: FONT, fontSize: 15, color: "#111827" },
      aria: { enabled: true, label: { enabled: false }, decal: { show: true } },
      legend: { top: 0, itemWidth: 30, itemHeight: 16, textStyle: { fontSize: 15 } },
      tooltip: tooltip((p) => valueText(def.series[p.seriesIndex], p.value)),
      grid: {
        left: 12,
        right: def.series.some((s) => s.type === "line" && !s.axis) ? 150 : 24,
        top: 72,
        bottom: 8,
        containLabel: true,
      },
      xAxis: {
        type: "category",
        data: labels,
        axisLabel: { fontSize: 14, color: "#111827", lineHeight: 18 },
      },
      yAxis: def.axes.map(valueAxis),
      series: def.series.map((series, index) =>
        seriesOption(
          series,
          index,
          history.map((month) => series.get(month) ?? null),
          labelBars,
        ),
      ),
    };
  }

  function typeTotals(history) {
    const totals = new Map(Object.keys(FINDING).map((type) => [type, 0]));
    for (const month of history) {
      for (const item of month.findingsByType || [])
        totals.set(item.type, (totals.get(item.type) || 0) + item.count);
    }
    return [...totals.entries()].filter(([, count]) => count > 0).sort((a, b) => a[1] - b[1]);
  }

  function typeOption(history) {
    const totals = typeTotals(history);
    const names = totals.map(([type]) => FINDING[type] || type);
    const widest = Math.max(4, ...names.map((name) => name.length));
    return {
      animation: false,
      color: PALETTE,
      textStyle: { fontFamily: FONT, fontSize: 15, color: "#111827" },
      aria: { enabled: true, label: { enabled: false }, decal: { show: true } },
      tooltip: tooltip((p) => int(p.value)),
      grid: { left: 24 + widest * 16, right: 56, top: 16, bottom: 32 },
      xAxis: { type: "value", minInterval: 1, axisLabel: { fontSize: 14, color: "#111827" } },
      yAxis: {
        type: "category",
        data: names,
        axisLabel: { fontSize: 15, color: "#111827" },
      },
      series: [
        {
          name: "发现问题",
          type: "bar",
          data: totals.map(([, count]) => count),
          barMaxWidth: 26,
          label: {
            show: true,
            position: "right",
            fontSize: 14,
            color: "#111827",
            formatter: (p) => int(p.value),
          },
        },
      ],
    };
  }

  function dataTable(def, history, months) {
    if (def.byType) {
      const totals = typeTotals(history).reverse();
      return h(
        "table",
        {},
        h("caption", { class: "visually-hidden" }, def.title),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "问题类型"),
            h("th", { scope: "col", class: "num" }, "个数"),
          ),
        ),
        h(
          "tbody",
          {},
          totals.length
            ? totals.map(([type, count]) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, FINDING[type] || type),
                  h("td", { class: "num" }, int(count)),
                ),
              )
            : h("tr", {}, h("td", { colspan: 2 }, "近 12 个月没有发现问题。")),
        ),
      );
    }
    return h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, def.title),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "月份"),
          def.series.map((s) => h("th", { scope: "col", class: "num" }, s.name)),
        ),
      ),
      h(
        "tbody",
        {},
        history.map((month, index) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, monthLabel(months[index], 0)),
            def.series.map((s) => h("td", { class: "num" }, valueText(s, s.get(month) ?? null))),
          ),
        ),
      ),
    );
  }

  /** The served font, before a canvas draws text with it (canvas text does not swap). */
  function fontsReady() {
    if (!state.fontsReady) {
      const wanted = Promise.all([
        document.fonts.load(`400 16px "Shuangjian Sans"`, "双减数据看板"),
        document.fonts.load(`700 16px "Shuangjian Sans"`, "双减数据看板"),
      ]).catch(() => null);
      state.fontsReady = Promise.race([
        wanted,
        new Promise((resolve) => setTimeout(resolve, 4000)),
      ]);
    }
    return state.fontsReady;
  }

  function destroyCharts() {
    for (const { chart, observer } of state.charts.values()) {
      observer.disconnect();
      chart.dispose();
    }
    state.charts.clear();
  }

  async function renderCharts(history, months) {
    const box = $("charts");
    if (!history) {
      destroyCharts();
      box.replaceChildren(h("p", { class: "empty" }, "趋势数据暂不可用。"));
      return;
    }
    $("trend-note").textContent =
      `${monthLabel(months[0], 0)} 至 ${monthLabel(months[months.length - 1], 0)}，按业务发生时间统计。`;
    await fontsReady();
    const defs = chartDefinitions();
    const wanted = new Set(defs.map((def) => def.id));
    for (const [id, entry] of state.charts) {
      if (!wanted.has(id)) {
        entry.observer.disconnect();
        entry.chart.dispose();
        state.charts.delete(id);
      }
    }
    const figures = defs.map((def) => {
      let figure = document.getElementById(`chart-${def.id}`);
      if (!figure) {
        const canvas = h("div", {
          class: "chart",
          role: "img",
          "aria-label": `${def.title}图表，数据见下方数据表`,
        });
        figure = h(
          "figure",
          { class: "chart-card", id: `chart-${def.id}` },
          h("figcaption", {}, def.title),
          canvas,
          h(
            "details",
            {},
            h("summary", {}, `查看“${def.title}”数据表`),
            h("div", { class: "table-wrap" }),
          ),
        );
      }
      figure.querySelector(".table-wrap").replaceChildren(dataTable(def, history, months));
      return figure;
    });
    // The same figures in the same order stay put: moving them would drop the focus.
    const current = [...box.children];
    if (current.length !== figures.length || current.some((node, i) => node !== figures[i])) {
      box.replaceChildren(...figures);
    }
    if (typeof window.echarts === "undefined") {
      box.prepend(h("p", { class: "empty" }, "图表组件未能加载，请查看各图下方的数据表。"));
      return;
    }
    for (const def of defs) {
      const figure = document.getElementById(`chart-${def.id}`);
      let entry = state.charts.get(def.id);
      if (!entry) {
        const node = figure.querySelector(".chart");
        const chart = window.echarts.init(node, null, { renderer: "canvas", locale: "ZH" });
        const observer = new ResizeObserver(() => chart.resize());
        observer.observe(node);
        entry = { chart, observer };
        state.charts.set(def.id, entry);
      }
      entry.chart.setOption(def.byType ? typeOption(history) : trendOption(def, history, months), {
        notMerge: true,
      });
      // ECharts writes its own label; the figure's caption and table say it in Chinese.
      figure
        .querySelector(".chart")
        .setAttribute("aria-label", `${def.title}图表，数据见下方数据表`);
    }
  }

  // --- child regions ------------------------------------------------------------------------------

  function renderChildren(view) {
    const box = $("children");
    const children = view.children || [];
    $("children-title").textContent = view.code === NATION ? "各省级地区" : "下级地区";
    if (!children.length) {
      $("children-note").textContent = "";
      box.replaceChildren(h("p", { class: "empty" }, `${view.name}没有下级地区。`));
      return;
    }
    $("children-note").textContent = "选择地区名称查看其下一级（回车或空格键亦可）。";
    const quiet = children.filter((child) => !hasFigures(child.stats));
    const hideQuiet = children.length > 12 && quiet.length > 0 && !state.showAllRows;
    const rows = (hideQuiet ? children.filter((child) => hasFigures(child.stats)) : children).map(
      (child) => {
        const s = child.stats;
        const link = h(
          "a",
          {
            href: regionHref(child.code),
            onclick: () => (state.focusAfterLoad = true),
            onkeydown: (event) => {
              if (event.key === " ") {
                event.preventDefault();
                event.currentTarget.click();
              }
            },
          },
          child.name,
        );
        return h(
          "tr",
          {
            class: "drill",
            dataset: { code: child.code },
            onclick: (event) => {
              if (!(event.target instanceof HTMLAnchorElement)) link.click();
            },
          },
          h("th", { scope: "row" }, link),
          h("td", { class: "num" }, int(s.institutions.active)),
          h("td", { class: "num" }, pct(s.institutions.subjectCompressionRate)),
          h("td", { class: "num" }, int(s.inspections.inspections)),
          h("td", { class: "num" }, pct(s.inspections.rectificationRate)),
          h("td", { class: "num" }, int(s.inspections.rectificationsOverdue)),
          h("td", { class: "num" }, money(s.finance.orderAmount)),
          h("td", { class: "num" }, int(s.finance.riskRed)),
        );
      },
    );
    const table = h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, `${view.fullName}的下级地区`),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "地区"),
          h("th", { scope: "col", class: "num" }, "在册机构"),
          h("th", { scope: "col", class: "num" }, "压减率"),
          h("th", { scope: "col", class: "num" }, "检查批次"),
          h("th", { scope: "col", class: "num" }, "整改率"),
          h("th", { scope: "col", class: "num" }, "逾期未整改"),
          h("th", { scope: "col", class: "num" }, "预收费金额（元）"),
          h("th", { scope: "col", class: "num" }, "红色风险机构"),
        ),
      ),
      h("tbody", {}, rows),
    );
    const more = hideQuiet
      ? h(
          "p",
          { class: "empty" },
          `另有 ${quiet.length} 个地区暂无数据。 `,
          h(
            "button",
            {
              type: "button",
              onclick: () => {
                state.showAllRows = true;
                renderChildren(view);
              },
            },
            "显示全部",
          ),
        )
      : null;
    const focused = document.activeElement;
    const focusedCode = box.contains(focused) ? focused.closest("tr")?.dataset.code : undefined;
    box.replaceChildren(table, more || "");
    // A live refresh redraws the rows: the focus stays on the same region's row.
    if (focusedCode) box.querySelector(`tr[data-code="${focusedCode}"] a`)?.focus();
  }

  // --- watchlists ------------------------------------------------------------------------------------

  function shown(connection, noun) {
    const total = connection.totalCount;
    const listed = connection.edges.length;
    if (!total) return `当前没有${noun}。`;
    return listed < total
      ? `共 ${int(total)} 项，显示前 ${int(listed)} 项。`
      : `共 ${int(total)} 项。`;
  }

  function renderWatchlists(data) {
    const red = data.red;
    $("red-note").textContent = shown(red, "红色风险机构");
    $("red").replaceChildren(
      red.edges.length
        ? h(
            "table",
            {},
            h("caption", { class: "visually-hidden" }, "红色风险机构"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "机构"),
                h("th", { scope: "col" }, "地区"),
                h("th", { scope: "col" }, "状态"),
                h("th", { scope: "col" }, "风险等级"),
              ),
            ),
            h(
              "tbody",
              {},
              red.edges.map(({ node }) =>
                h(
                  "tr",
                  { dataset: { id: node.id } },
                  h("th", { scope: "row" }, node.name),
                  h("td", {}, node.region.name),
                  h("td", {}, INSTITUTION_STATUS[node.status] || node.status),
                  h("td", {}, riskTag(node.riskLevel)),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "当前没有红色风险机构。"),
    );

    const overdue = data.overdue;
    $("overdue-note").textContent = shown(overdue, "逾期未整改的整改单");
    $("overdue").replaceChildren(
      overdue.edges.length
        ? h(
            "table",
            {},
            h("caption", { class: "visually-hidden" }, "逾期未整改"),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, "机构"),
                h("th", { scope: "col" }, "地区"),
                h("th", { scope: "col" }, "问题类型"),
                h("th", { scope: "col" }, "整改期限"),
                h("th", { scope: "col" }, "状态"),
              ),
            ),
            h(
              "tbody",
              {},
              overdue.edges.map(({ node }) =>
                h(
                  "tr",
                  { dataset: { id: node.id } },
                  h(
                    "th",
                    { scope: "row" },
                    node.institution ? node.institution.name : "（未登记场所）",
                  ),
                  h("td", {}, node.region.name),
                  h(
                    "td",
                    {},
                    [...new Set(node.findings.map((f) => FINDING[f.type] || f.type))].join("、"),
                  ),
                  h("td", {}, node.deadline),
                  h("td", {}, RECTIFICATION_STATUS[node.status] || node.status),
                ),
              ),
            ),
          )
        : h("p", { class: "empty" }, "当前没有逾期未整改的整改单。"),
    );
  }

  function riskTag(level) {
    const name = RISK[level] || level;
    return h("span", { class: `tag tag-${String(level).toLowerCase()}` }, `${name}风险`);
  }

  // --- live updates ----------------------------------------------------------------------------------

  /** One graphql-transport-ws connection; subscriptions to the regions being looked at. */
  class LiveFeed {
    constructor({ onEvent, onState, onAuthFailure, onReconnected, onError }) {
      this.handlers = { onEvent, onState, onAuthFailure, onReconnected, onError };
      this.regions = [];
      this.active = new Map(); // id -> region
      this.socket = null;
      this.closed = false;
      this.backoff = 1000;
      this.serial = 0;
      this.timer = 0;
      this.pinger = 0;
      this.everConnected = false;
      this.connect();
    }

    url() {
      const url = new URL(ENDPOINT, location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      return url.href;
    }

    connect() {
      if (this.closed) return;
      this.handlers.onState(this.everConnected ? "down" : "connecting");
      let socket;
      try {
        socket = new WebSocket(this.url(), "graphql-transport-ws");
      } catch {
        this.retry();
        return;
      }
      this.socket = socket;
      socket.addEventListener("open", () => {
        socket.send(
          JSON.stringify({
            type: "connection_init",
            payload: { Authorization: `Bearer ${state.token}` },
          }),
        );
      });
      socket.addEventListener("message", (message) => this.receive(socket, message));
      socket.addEventListener("close", (event) => {
        if (socket !== this.socket) return;
        clearInterval(this.pinger);
        this.socket = null;
        this.active.clear();
        if (this.closed) return;
        if (event.code === 4401 || event.code === 4403) {
          this.closed = true;
          this.handlers.onAuthFailure();
          return;
        }
        this.retry();
      });
    }

    retry() {
      this.handlers.onState("down");
      clearTimeout(this.timer);
      const wait = this.backoff * (0.75 + Math.random() / 2);
      this.backoff = Math.min(this.backoff * 2, 30000);
      this.timer = setTimeout(() => this.connect(), wait);
    }

    receive(socket, message) {
      let body;
      try {
        body = JSON.parse(message.data);
      } catch {
        return;
      }
      if (body.type === "connection_ack") {
        this.backoff = 1000;
        clearInterval(this.pinger);
        this.pinger = setInterval(() => {
          if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ping" }));
        }, PING_MS);
        const again = this.everConnected;
        this.everConnected = true;
        this.handlers.onState("live");
        this.subscribeAll();
        if (again) this.handlers.onReconnected(); // events may have been missed meanwhile
      } else if (body.type === "ping") {
        socket.send(JSON.stringify({ type: "pong" }));
      } else if (body.type === "next") {
        if (body.payload && body.payload.data && body.payload.data.events) {
          this.handlers.onEvent(body.payload.data.events);
        }
      } else if (body.type === "error") {
        this.active.delete(body.id);
        this.handlers.onError(new GraphQLFailure(body.payload || []));
      } else if (body.type === "complete") {
        // The gateway ended the stream (a subscriber that fell behind): start again.
        const region = this.active.get(body.id);
        this.active.delete(body.id);
        if (region && this.regions.includes(region)) {
          setTimeout(() => this.subscribe(region), 1000);
          this.handlers.onReconnected();
        }
      }
    }

    watch(regions) {
      const wanted = [...new Set(regions)].sort();
      if (wanted.join() === this.regions.join()) return;
      this.regions = wanted;
      if (this.socket && this.socket.readyState === WebSocket.OPEN && this.everConnected) {
        for (const id of [...this.active.keys()]) {
          this.socket.send(JSON.stringify({ id, type: "complete" }));
          this.active.delete(id);
        }
        this.subscribeAll();
      }
    }

    subscribeAll() {
      for (const region of this.regions) this.subscribe(region);
    }

    subscribe(region) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
      this.serial += 1;
      const id = `events-${this.serial}`;
      this.active.set(id, region);
      this.socket.send(
        JSON.stringify({
          id,
          type: "subscribe",
          payload: { query: SUBSCRIPTION, variables: { region }, operationName: "DashboardEvents" },
        }),
      );
    }

    close() {
      this.closed = true;
      clearTimeout(this.timer);
      clearInterval(this.pinger);
      if (this.socket) this.socket.close(1000, "signed out");
      this.socket = null;
    }
  }

  function liveRegions(view) {
    return view.code === NATION ? view.children.map((province) => province.code) : [view.code];
  }

  const LIVE_TEXT = {
    connecting: "正在连接实时更新…",
    live: "实时",
    down: "实时连接中断，正在重连…",
    unavailable: "实时更新不可用",
  };

  function setLiveState(kind) {
    const node = $("live-state");
    node.dataset.state = kind;
    node.textContent = LIVE_TEXT[kind];
  }

  function scheduleRefresh() {
    const now = Date.now();
    if (!state.pendingSince) state.pendingSince = now;
    clearTimeout(state.refreshTimer);
    clearTimeout(state.settleTimer);
    const wait = now - state.pendingSince >= MAX_WAIT_MS ? 0 : DEBOUNCE_MS;
    state.refreshTimer = setTimeout(() => {
      state.pendingSince = 0;
      load({ quiet: true });
    }, wait);
    state.settleTimer = setTimeout(() => load({ quiet: true }), SETTLE_MS);
  }

  function startLive() {
    stopLive();
    state.live = new LiveFeed({
      onEvent: scheduleRefresh,
      onState: setLiveState,
      onAuthFailure: () => authFailed(null),
      onReconnected: scheduleRefresh,
      onError: (failure) => {
        // A region out of scope is already said by the queries; other errors are news.
        if (failure.codes.includes("FORBIDDEN")) return;
        setLiveState("unavailable");
        showAlert(failure);
      },
    });
  }

  function stopLive() {
    clearTimeout(state.refreshTimer);
    clearTimeout(state.settleTimer);
    if (state.live) state.live.close();
    state.live = null;
  }

  // --- wiring --------------------------------------------------------------------------------------------

  function wire() {
    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = cleanToken($("token-input").value);
      if (!token) {
        $("sign-in-message").textContent = "请输入令牌。";
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      state.token = token;
      state.code = null;
      enter();
    });
    $("sign-out").addEventListener("click", signOut);
    $("picker").addEventListener("submit", (event) => {
      event.preventDefault();
      const code = $("region-select").value;
      state.focusAfterLoad = true;
      if (location.hash === regionHref(code)) load({ quiet: false });
      else location.hash = regionHref(code);
    });
    window.addEventListener("hashchange", route);
  }

  function start() {
    wire();
    takeTokenFromAddress();
    state.token = sessionStorage.getItem(TOKEN_KEY);
    if (!state.token) {
      showSignIn("");
      return;
    }
    enter();
  }

  start();
})();
