// The Mini App's screens: the map of deals and its list, a deal, my orders (Pay link, pickup code
// and QR), the business dashboard and the admin's pending verifications. Every sentence comes from
// /api/me (translated on the server); user text is only ever set as text, never as HTML.
"use strict";

(function () {
  const screen = document.getElementById("screen");
  let me = null;
  let T = {};
  let here = null; // {lat, lon} once the customer shared it
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
    screen.replaceChildren(...nodes);
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

  async function showMap() {
    const mapBox = el("div", { id: "map" });
    const list = el("div", { id: "deals" }, el("p", { class: "note" }, "…"));
    const nearMe = el("button", { onclick: locate }, t("near_me"));
    show(mapBox, el("div", { class: "row" }, el("h2", {}, t(here ? "list" : "newest")), nearMe), list);
    map = L.map(mapBox, { zoomControl: true, attributionControl: true }).setView([52.52, 13.405], 12);
    if (me.map.tile_url) {
      L.tileLayer(me.map.tile_url, { maxZoom: 19, attribution: me.map.attribution }).addTo(map);
    }
    let found;
    try {
      const query = here ? "?lat=" + here.lat + "&lon=" + here.lon : "";
      found = await api("/api/deals" + query);
    } catch (error) {
      list.replaceChildren(problem(error));
      return;
    }
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
    list.replaceChildren(...(found.deals.length ? found.deals.map(dealCard)
      : [el("p", { class: "note" }, t("no_deals"))]));
  }

  function locate() {
    if (!navigator.geolocation) return;
    navigator.geolocation.getCurrentPosition((position) => {
      here = { lat: position.coords.latitude.toFixed(5), lon: position.coords.longitude.toFixed(5) };
      showMap();
    });
  }

  function dealCard(deal) {
    return el("div", { class: "card deal", "data-offer": deal.id, onclick: () => showDeal(deal.id) },
      el("h3", {}, deal.title),
      el("div", {}, el("span", { class: "price" }, deal.price.text), el("span", { class: "was" }, deal.original_price.text)),
      el("div", { class: "hint" }, deal.business.name + " · " + t("pickup", {
        window: window_(deal.pickup_start, deal.pickup_end, deal.business.timezone) }) + " · " +
        t("left", { count: deal.units_left }) +
        (deal.distance_km !== null ? " · " + t("km", { km: deal.distance_km.toFixed(1) }) : "")));
  }

  async function showDeal(id) {
    show(el("p", { class: "note" }, "…"));
    Bridge.showBack(t("back"), () => open("map"));
    let deal;
    try {
      deal = await api("/api/deals/" + id + (here ? "?lat=" + here.lat + "&lon=" + here.lon : ""));
    } catch (error) {
      show(problem(error));
      return;
    }
    let quantity = 1;
    const amount = el("span", {});
    const setLabel = () => Bridge.showMain(t("order", { count: quantity, total: money(deal.price, quantity) }), order);
    const minus = el("button", { onclick: () => { if (quantity > 1) { quantity--; draw(); } } }, "−");
    const plus = el("button", { onclick: () => { if (quantity < deal.max_per_order) { quantity++; draw(); } } }, "+");
    const draw = () => { amount.textContent = String(quantity); setLabel(); };
    const status = el("div", { id: "order-status" });
    show(el("div", { class: "card" },
      el("h3", {}, deal.title),
      el("div", {}, el("span", { class: "price" }, deal.price.text),
        el("span", { class: "was" }, t("instead_of", { price: deal.original_price.text }))),
      el("p", {}, deal.description),
      el("div", { class: "hint" }, deal.business.name + ", " + deal.business.address),
      el("div", { class: "hint" }, t("pickup", { window: window_(deal.pickup_start, deal.pickup_end,
        deal.business.timezone) }) + " · " + t("left", { count: deal.units_left }))),
    deal.orderable ? el("div", { class: "row qty" }, minus, amount, plus) : el("p", { class: "note" }, t("no_deals")),
    status);
    Bridge.showBack(t("back"), () => open("map"));
    if (deal.orderable) draw();

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
    if (!Bridge.initData()) {
      screen.replaceChildren(el("p", { class: "note error" }, "Open this app from the bot's chat in Telegram."));
      return;
    }
    try {
      me = await api("/api/me");
    } catch (error) {
      screen.replaceChildren(problem(error));
      return;
    }
    T = me.texts;
    document.documentElement.lang = me.language;
    document.getElementById("title").textContent = t("title");
    document.title = t("title");
    open("map");
  }

  start();
})();
