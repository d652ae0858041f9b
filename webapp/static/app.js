// The Mini App's screens: the map of deals and its list, a deal, my orders (Pay link, pickup code
// and QR), the business dashboard and the admin's pending verifications. Every sentence comes from
// /api/me (translated on the server); user text is only ever set as text, never as HTML.
"use strict";

(function () {
  const screen = document.getElementById("screen");
  let me = null;
  let T = {};
  let here = null; // {lat, lon}: where the customer shared their location (in the chat, or here)
  let filters = null; // the /deals filters, as /api/me and /api/filters give them
  let map = null;
  let current = "map";

  function t(key, values) {
    let text = T[key] || key;
    for (const [name, value] of Object.entries(values || {})) text = text.split("{" + name + "}").join(String(value));
    return text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "onclick") node.addEventListener("click", value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function requestId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(path, options) {
    const response = await fetch(path, {
      ...(options || {}),
      headers: { "Authorization": "tma " + Bridge.initData(), "Content-Type": "application/json",
        ...((options || {}).headers || {}) },
    });
    if (!(response.headers.get("content-type") || "").startsWith("application/json")) { // a picture, a CSV
      if (!response.ok) throw new Error(t("error"));
      return response.blob();
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(data.message || t("error"));
      error.field = data.field; // the form field it is about, if any
      throw error;
    }
    return data;
  }

  function post(path, body) {
    return api(path, { method: "POST", body: JSON.stringify({ request_id: requestId(), ...(body || {}) }) });
  }

  function show(...nodes) {
    if (map) { map.remove(); map = null; }
    Bridge.hideMain();
    screen.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
  }

  function problem(error) {
    return el("p", { class: "note error", role: "alert" }, error.message || t("error"));
  }

  function window_(start, end, timezone) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: timezone || undefined };
    const a = new Date(start), b = new Date(end);
    const format = new Intl.DateTimeFormat(me.language, options);
    return format.format(a) + "–" + format.format(b);
  }

  // ------------------------------------------------------------------ tabs

  function tabs() {
    const nav = document.getElementById("tabs");
    const entries = [["map", "tab_map"], ["orders", "tab_orders"]];
    if (me.roles.includes("business")) entries.push(["business", "tab_business"]);
    if (me.roles.includes("admin")) entries.push(["admin", "tab_admin"]);
    nav.replaceChildren(...entries.map(([name, key]) =>
      el("button", { "data-tab": name, class: name === current ? "active" : "", onclick: () => open(name) }, t(key))));
    nav.hidden = false;
  }

  function open(name) {
    current = name;
    Bridge.hideBack();
    tabs();
    ({ map: showMap, orders: showOrders, business: showBusiness, admin: showAdmin })[name]();
  }

  // ------------------------------------------------------------------ customers: map and list

  // The filters of the chat's /deals (category, diet, allergens to avoid, pickup time, distance,
  // maximum price, words), the same ones: /api/me gives the customer's current choice and what
  // can be chosen; "Show deals" saves a new choice where the chat keeps it too.
  function cleared(name) {
    return Array.isArray(filters[name]) ? [] : (name === "words" ? "" : null);
  }

  function hasFilter(values, name) {
    const value = values[name];
    return Array.isArray(value) ? value.length > 0 : value !== null && value !== undefined && value !== "";
  }

  function activeFilters() {
    return Object.keys(filters).filter((name) => hasFilter(filters, name));
  }

  function label(name, code) {
    const choice = me.filter_choices[name].find((c) => c.code === code);
    return choice ? choice.label : String(code);
  }

  function filterSummary() {
    const parts = [];
    if (filters.words) parts.push("“" + filters.words + "”");
    if (filters.category) parts.push(label("category", filters.category));
    if (filters.diet.length) parts.push("🌱 " + filters.diet.map((c) => label("diet", c)).join(", "));
    if (filters.avoid.length) parts.push(t("without", { allergens: filters.avoid.map((c) => label("avoid", c)).join(", ") }));
    if (filters.when) parts.push("🕒 " + label("when", filters.when));
    if (filters.max_price_minor) parts.push("💶 " + label("max_price_minor", filters.max_price_minor));
    if (filters.radius_km) parts.push("📍 ≤ " + filters.radius_km + " km");
    return parts.join(" · ");
  }

  function dealsQuery() {
    const query = new URLSearchParams();
    if (here) { query.set("lat", here.lat); query.set("lon", here.lon); }
    for (const name of activeFilters()) {
      query.set(name, Array.isArray(filters[name]) ? filters[name].join(",") : String(filters[name]));
    }
    const text = query.toString();
    return text ? "?" + text : "";
  }

  async function showMap() {
    const mapBox = el("div", { id: "map" });
    const list = el("div", { id: "deals" }, el("p", { class: "note" }, "…"));
    const count = activeFilters().length;
    const nearMe = el("button", { id: "near-me", onclick: locate }, t("near_me"));
    const filterButton = el("button", { id: "filters-button", onclick: showFilters },
      count ? t("filters_count", { count }) : t("filters"));
    const summary = count ? el("p", { class: "hint", id: "filter-summary" }, t("active_filters", { filters: filterSummary() })) : null;
    show(mapBox, el("div", { class: "row" }, el("h2", {}, t(here ? "list" : "newest")), nearMe, filterButton), summary, list);
    map = L.map(mapBox, { zoomControl: true, attributionControl: true }).setView([52.52, 13.405], 12);
    if (me.map.tile_url) {
      L.tileLayer(me.map.tile_url, { maxZoom: 19, attribution: me.map.attribution }).addTo(map);
    }
    let found;
    try {
      found = await api("/api/deals" + dealsQuery());
    } catch (error) {
      list.replaceChildren(problem(error));
      return;
    }
    if (!map) return; // another screen was opened meanwhile
    const points = [];
    if (here) {
      L.circleMarker([here.lat, here.lon], { radius: 6, color: "#2a7ae2" }).addTo(map);
      points.push([here.lat, here.lon]);
    }
    for (const deal of found.deals) {
      const b = deal.business;
      if (b.latitude !== null && b.longitude !== null) {
        const pin = L.circleMarker([b.latitude, b.longitude], { radius: 9, color: "#2a9d54", fillOpacity: 0.8 });
        pin.bindTooltip(deal.title + " · " + deal.price.text);
        pin.on("click", () => showDeal(deal.id));
        pin.addTo(map);
        points.push([b.latitude, b.longitude]);
      }
    }
    if (points.length) map.fitBounds(points, { padding: [30, 30], maxZoom: 15 });
    if (found.deals.length) {
      list.replaceChildren(...found.deals.map(dealCard),
        ...(found.has_more ? [el("p", { class: "hint" }, t(here ? "more_nearest" : "more_newest", { count: found.deals.length }))] : []));
    } else {
      list.replaceChildren(...nothingFound(found));
    }
  }

  // Nothing to show: why, in the chat's words, and the one filter to drop when that would help.
  function nothingFound(found) {
    if (found.loosen) {
      const name = me.filter_choices.names[found.loosen] || found.loosen;
      const status = el("div", {});
      return [el("p", { class: "note" }, t("nothing_loosen", { filter: name })),
        el("button", { id: "drop-filter", onclick: async () => {
          const failed = await changeFilters({ ...filters, [found.loosen]: cleared(found.loosen) });
          if (failed) status.replaceChildren(problem(failed));
        } }, t("without_filter", { filter: name })), status];
    }
    if (activeFilters().length) return [el("p", { class: "note" }, t("nothing_filters"))];
    return [el("p", { class: "note" }, here ? t("no_deals_near", { km: filters.radius_km || me.filter_choices.nearby_km }) : t("no_deals"))];
  }

  async function changeFilters(chosen) {
    try {
      filters = (await post("/api/filters", { filters: chosen })).filters;
    } catch (error) {
      return error;
    }
    open("map");
    return null;
  }

  function locate() {
    if (!navigator.geolocation) return;
    navigator.geolocation.getCurrentPosition((position) => {
      here = { lat: position.coords.latitude.toFixed(5), lon: position.coords.longitude.toFixed(5) };
      showMap();
    });
  }

  // The filter screen: tap to choose, tap again to clear; Telegram's MainButton shows the deals
  // with the choice (and keeps it), its BackButton leaves without changing anything.
  function showFilters() {
    const draft = JSON.parse(JSON.stringify(filters));
    const status = el("div", { id: "filters-status" });

    function chips(name, single) {
      return el("div", { class: "chips", "data-filter": name }, ...me.filter_choices[name].map((choice) => {
        const on = single ? draft[name] === choice.code : draft[name].includes(choice.code);
        return el("button", { class: "chip" + (on ? " on" : ""), "aria-pressed": String(on), "data-value": choice.code,
          onclick: () => {
            if (single) draft[name] = draft[name] === choice.code ? null : choice.code;
            else draft[name] = draft[name].includes(choice.code) ? draft[name].filter((c) => c !== choice.code)
              : me.filter_choices[name].map((c) => c.code).filter((c) => c === choice.code || draft[name].includes(c));
            draw();
          } }, choice.label);
      }));
    }

    const words = el("input", { id: "filter-words", type: "search", maxlength: "200", placeholder: t("search_placeholder"),
      autocomplete: "off" });
    words.value = draft.words;
    words.addEventListener("input", () => { draft.words = words.value; });

    function draw() {
      show(el("h2", {}, t("filters")),
        el("p", { class: "hint" }, t("filters_hint")),
        el("h3", {}, t("search_heading")), words,
        el("h3", {}, t("category_heading")), chips("category", true),
        el("h3", {}, t("diet_heading")), chips("diet", false),
        el("h3", {}, t("avoid_heading")), el("p", { class: "hint" }, t("avoid_hint")), chips("avoid", false),
        el("h3", {}, t("when_heading")), chips("when", true),
        el("h3", {}, t("distance_heading")), here ? null : el("p", { class: "hint" }, t("distance_needs_location")),
        chips("radius_km", true),
        el("h3", {}, t("price_heading")), chips("max_price_minor", true),
        el("div", { class: "row" }, el("button", { id: "clear-filters", onclick: () => {
          for (const name of Object.keys(draft)) draft[name] = cleared(name);
          words.value = "";
          draw();
        } }, t("clear_all"))),
        status);
      Bridge.showBack(t("back"), () => open("map"));
      Bridge.showMain(t("show_deals"), apply);
    }

    async function apply() {
      const failed = await changeFilters(draft);
      if (failed) {
        status.replaceChildren(problem(failed));
        Bridge.showMain(t("show_deals"), apply);
      }
    }
    draw();
  }

  function dealCard(deal) {
    return el("div", { class: "card deal", "data-offer": deal.id, onclick: () => showDeal(deal.id) },
      el("h3", {}, deal.title),
      el("div", {}, el("span", { class: "price" }, deal.price.text), el("span", { class: "was" }, deal.original_price.text),
        deal.rating ? el("span", { class: "rating" }, deal.rating.text) : null),
      el("div", { class: "hint" }, deal.business.name + " · " + t("pickup", {
        window: window_(deal.pickup_start, deal.pickup_end, deal.business.timezone) }) + " · " +
        t("left", { count: deal.units_left }) +
        (deal.distance_km !== null ? " · " + t("km", { km: deal.distance_km.toFixed(1) }) : "")),
      el("div", { class: "hint tags" }, kinds(deal) ? el("div", {}, kinds(deal)) : null,
        contains(deal) ? el("div", { class: "allergens" }, contains(deal)) : null));
  }

  // What a deal is: category and diet on one line, its allergens on the next (as the chat's card says).
  function kinds(deal) {
    return [deal.category ? deal.category.label : null,
      deal.diet.length ? "🌱 " + deal.diet.map((d) => d.label).join(", ") : null].filter(Boolean).join(" · ");
  }

  function contains(deal) {
    return deal.allergens.length ? t("contains", { allergens: deal.allergens.map((a) => a.label).join(", ") }) : "";
  }

  async function showDeal(id) {
    show(el("p", { class: "note" }, "…"));
    Bridge.showBack(t("back"), () => open("map"));
    let deal;
    try {
      deal = await api("/api/deals/" + id + (here ? "?lat=" + here.lat + "&lon=" + here.lon : ""));
    } catch (error) {
      show(problem(error));
      Bridge.showBack(t("back"), () => open("map"));
      return;
    }
    let quantity = 1;
    const amount = el("span", {});
    const setLabel = () => Bridge.showMain(t("order", { count: quantity, total: money(deal.price, quantity) }), order);
    const minus = el("button", { onclick: () => { if (quantity > 1) { quantity--; draw(); } } }, "−");
    const plus = el("button", { onclick: () => { if (quantity < deal.max_per_order) { quantity++; draw(); } } }, "+");
    const draw = () => { amount.textContent = String(quantity); setLabel(); };
    const status = el("div", { id: "order-status" });
    // The photo is fetched with the initData (as the QR is) and shown from memory.
    const photo = deal.photo_url ? el("img", { class: "photo", alt: t("photo_of", { title: deal.title }) }) : null;
    show(photo, el("div", { class: "card", id: "deal" },
      el("h3", {}, deal.title),
      el("div", {}, el("span", { class: "price" }, deal.price.text),
        el("span", { class: "was" }, t("instead_of", { price: deal.original_price.text }))),
      el("p", {}, deal.description),
      kinds(deal) ? el("div", { class: "hint" }, kinds(deal)) : null,
      el("div", { class: "allergens", id: "deal-allergens" }, contains(deal) || t("no_allergens")),
      el("div", { class: "hint" }, deal.business.name + ", " + deal.business.address),
      el("div", { class: "rating", id: "deal-rating" }, deal.rating ? deal.rating.text : t("not_rated")),
      el("div", { class: "hint" }, t("pickup", { window: window_(deal.pickup_start, deal.pickup_end,
        deal.business.timezone) }) + " · " + t("left", { count: deal.units_left }) +
        (deal.distance_km !== null ? " · " + t("km", { km: deal.distance_km.toFixed(1) }) : ""))),
    deal.orderable ? el("div", { class: "row qty" }, minus, amount, plus) : el("p", { class: "note" }, t("not_orderable")),
    status);
    Bridge.showBack(t("back"), () => open("map"));
    if (deal.orderable) draw();
    if (photo) api(deal.photo_url).then((blob) => { photo.src = URL.createObjectURL(blob); }).catch(() => { photo.remove(); });

    async function order() {
      try {
        await post("/api/orders", { offer_id: deal.id, quantity });
      } catch (error) {
        status.replaceChildren(problem(error));
        setLabel();
        return;
      }
      Bridge.hideMain();
      status.replaceChildren(el("p", { class: "note" }, t("reserving")));
      setTimeout(() => open("orders"), 600);
    }
  }

  function money(price, quantity) {
    return new Intl.NumberFormat(me.language, { style: "currency", currency: price.currency })
      .format(price.minor * quantity / 10 ** fractionDigits(price.currency));
  }

  function fractionDigits(currency) {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  }

  // ------------------------------------------------------------------ customers: my orders

  async function showOrders(attempt) {
    attempt = attempt || 0;
    let data;
    try {
      data = await api("/api/orders");
    } catch (error) {
      show(problem(error));
      return;
    }
    if (current !== "orders") return;
    const cards = data.current.map(orderCard);
    const waiting = data.current.some((o) => o.status === "held" && !o.checkout_url);
    show(...(cards.length ? cards : [el("p", { class: "note" }, t("no_orders"))]),
      ...(data.past.length ? [el("h2", {}, t("earlier")), ...data.past.map(orderCard)] : []));
    if (waiting && attempt < 40) setTimeout(() => { if (current === "orders") showOrders(attempt + 1); }, 1000);
  }

  function orderCard(order) {
    const card = el("div", { class: "card order", "data-order": order.id },
      el("h3", {}, order.quantity + " × " + order.offer.title),
      el("div", { class: "hint" }, order.business.name + " · " + order.amount.text + " · " + t(order.status)));
    if (order.status === "held") {
      card.append(order.checkout_url
        ? el("a", { class: "pay", href: order.checkout_url, target: "_blank", rel: "noopener",
          onclick: (event) => { event.preventDefault(); Bridge.openLink(order.checkout_url); } },
        t("pay", { amount: order.amount.text }))
        : el("p", { class: "hint" }, t("preparing_payment")));
    }
    if (order.pickup_code) {
      const image = el("img", { class: "qr", alt: order.pickup_code });
      card.append(el("div", { class: "code" }, t("pickup_code", { code: order.pickup_code })),
        el("div", { class: "hint" }, t("show_qr")), image);
      api(order.qr_url).then((blob) => { image.src = URL.createObjectURL(blob); }).catch(() => {});
    }
    return card;
  }

  // ------------------------------------------------------------------ businesses and admins (dashboard.js)

  function dashboardKit() {
    return { el, api, post, t, show, problem, window_, fractionDigits, me };
  }

  function showBusiness() { Dashboard.business(dashboardKit()); }

  function showAdmin() { Dashboard.admin(dashboardKit()); }

  // ------------------------------------------------------------------ start

  async function start() {
    Bridge.start();
    try {
      // Opened outside Telegram (no initData), this is refused, and the refusal says where to open
      // the app, in the browser's language.
      me = await api("/api/me");
    } catch (error) {
      screen.replaceChildren(problem(error));
      return;
    }
    T = me.texts;
    filters = me.filters;
    if (me.location) here = { lat: me.location.lat.toFixed(5), lon: me.location.lon.toFixed(5) };
    document.documentElement.lang = me.language;
    document.getElementById("title").textContent = t("title");
    document.title = t("title");
    open("map");
  }

  start();
})();
