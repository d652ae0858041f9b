// The business dashboard and the admin's view of the Mini App (app.js opens them with its kit:
// el, api, post, t, show, problem, window_, fractionDigits, me). A business confirms pickups by code
// or by scanning the customer's pickup pass (Telegram's QR scanner, through Bridge.scanQr), creates
// an offer with a photo from the phone (uploaded, then made into the deal card by the same images
// task as a photo sent in the chat: the page waits for it), publishes, edits what /myoffers edits,
// and sees its earnings. An admin sees the figures of /admin and the businesses waiting for review.
// Every sentence comes from /api/me; user text is only ever set as text, never as HTML.
"use strict";

window.Dashboard = (function () {
  let kit = null;
  let screenNumber = 0; // a poll belongs to the screen it was started on
  const POLL_MS = 1000;
  const POLL_TRIES = 90;

  function t(key, values) { return kit.t(key, values); }
  function el(...args) { return kit.el(...args); }

  function show(...nodes) {
    screenNumber++;
    kit.show(...nodes);
    return screenNumber;
  }

  // A sentence of the chat's with <b>…</b> in it (and nothing else that is markup), shown as such.
  function rich(text) {
    const parts = String(text).split(/<\/?b>/);
    return el("span", {}, ...parts.map((part, i) => (i % 2 ? el("strong", {}, part) : part)));
  }

  function decimal(price) {
    const digits = kit.fractionDigits(price.currency);
    return (price.minor / 10 ** digits).toFixed(digits);
  }

  function showImage(image, url) {
    kit.api(url).then((blob) => { image.src = URL.createObjectURL(blob); }).catch(() => { image.hidden = true; });
  }

  // ------------------------------------------------------------------ the dashboard

  // `pickupAnswer`: the answer to the code just confirmed, kept on the reloaded dashboard so that the
  // person at the counter still reads "valid: hand over …" after the list below it updates.
  async function business(given, pickupAnswer) {
    kit = given;
    let today, mine;
    try {
      [today, mine] = await Promise.all([kit.api("/api/business/today"), kit.api("/api/business/offers")]);
    } catch (error) {
      show(kit.problem(error));
      return;
    }
    const todays = today.offers.filter((o) => o.orders.length);
    const earnings = el("div", { id: "earnings" });
    show(
      el("h2", {}, today.business.name),
      pickupCard(pickupAnswer),
      el("h2", {}, t("today")),
      ...(todays.length ? todays.map((offer) => el("div", { class: "card" }, el("h3", {}, offer.title),
        ...offer.orders.map((o) => el("div", { class: "hint" }, "#" + o.id + " · " + o.quantity + " × · " +
          o.amount.text + " · " + t(o.status))))) : [el("p", { class: "note" }, t("no_orders_today"))]),
      el("div", { class: "row spread" }, el("h2", {}, t("your_offers")),
        el("button", { id: "new-offer", onclick: () => offerForm() }, t("new_offer"))),
      ...mine.offers.map(ownOfferCard),
      earnings);
    showEarnings(earnings);
  }

  function pickupCard(kept) {
    const input = el("input", { id: "pickup-code", placeholder: t("code_placeholder"), maxlength: "16",
      autocomplete: "off" });
    const answer = el("div", { id: "pickup-answer" }, ...(kept ? kept.childNodes : []));
    const confirm = async (body) => {
      try {
        const result = await kit.post("/api/business/pickups", body);
        const values = { code: result.code, quantity: result.order ? result.order.quantity : "",
          title: result.order ? result.order.offer.title : "" };
        const key = { collected: "collected_ok", already_collected: "already_collected", not_paid: "not_paid" }[
          result.outcome] || "unknown_code";
        answer.replaceChildren(el("p", { class: "note" }, t(key, values)));
        if (result.outcome === "collected") {
          input.value = "";
          const shown = screenNumber;
          setTimeout(() => { if (shown === screenNumber) business(kit, answer); }, 1500);
        }
      } catch (error) { answer.replaceChildren(kit.problem(error)); }
    };
    const card = el("div", { class: "card" }, el("h3", {}, t("confirm_code")), el("div", { class: "row" }, input),
      el("button", { class: "primary", onclick: () => confirm({ code: input.value }) }, t("confirm")));
    if (Bridge.canScanQr()) {
      card.append(el("button", { id: "scan-pass", class: "primary secondary", onclick: () => {
        // The first code read closes the scanner; its answer shows like a typed code's.
        Bridge.scanQr(t("scan_hint"), (text) => { confirm({ scanned: text }); return true; });
      } }, t("scan_qr")));
    } else {
      card.append(el("p", { class: "hint", id: "scan-unavailable" }, t("scan_unavailable")));
    }
    card.append(answer);
    return card;
  }

  function status(offer) {
    return t("status_" + offer.status);
  }

  function ownOfferCard(offer) {
    const card = el("div", { class: "card own-offer", "data-own-offer": offer.id });
    if (offer.photo.card_url) {
      const image = el("img", { class: "thumb", alt: "" });
      showImage(image, offer.photo.card_url);
      card.append(image);
    }
    card.append(el("h3", {}, offer.title),
      el("div", { class: "hint" }, offer.price.text + " · " + t("left", { count: offer.units_left }) + " · " +
        status(offer)));
    const act = (action) => async () => {
      try { await kit.post("/api/business/offers/" + offer.id + "/" + action); business(kit); }
      catch (error) { card.append(kit.problem(error)); }
    };
    const row = el("div", { class: "row" });
    if (offer.can_pause) row.append(el("button", { onclick: act("pause") }, t("pause")));
    if (offer.can_resume) row.append(el("button", { onclick: act("resume") }, t("resume")));
    row.append(el("button", { class: "manage", onclick: () => offerScreen(offer.id) }, t("manage")));
    card.append(row);
    return card;
  }

  // ------------------------------------------------------------------ earnings

  async function showEarnings(box) {
    let data;
    try { data = await kit.api("/api/business/earnings"); } catch (error) { box.replaceChildren(kit.problem(error)); return; }
    const period = (heading, figures) => el("div", { class: "period" }, rich(heading), el("br"),
      t("sales_line", { gross: figures.gross.text, refunds: figures.refunds.text, fee: figures.fee.text }), el("br"),
      rich(t("net_line", { net: figures.net.text, paid_out: figures.paid_out.text })));
    const chart = el("img", { class: "chart", id: "earnings-chart", alt: t("chart_alt", { month: data.month.name }) });
    showImage(chart, data.chart_url);
    const csv = el("button", { id: "statement-csv", onclick: async () => {
      try {
        const blob = await kit.api(data.csv_url);
        const link = el("a", { href: URL.createObjectURL(blob), download: "statement.csv" });
        document.body.append(link);
        link.click();
        link.remove();
      } catch (error) { box.append(kit.problem(error)); }
    } }, t("statement_csv"));
    box.replaceChildren(el("h2", {}, t("earnings")), el("div", { class: "card" },
      period(t("this_week", { day: data.week.since }), data.week),
      period(t("this_month", { month: data.month.name }), data.month),
      el("p", { class: "hint" }, t(data.connected ? "paid_by_stripe" : "paid_by_transfer")), chart, csv));
  }

  // ------------------------------------------------------------------ a new offer

  function field(name, label, input, hint) {
    return el("label", { class: "field", "data-field": name }, el("span", {}, label), input,
      hint ? el("span", { class: "hint" }, hint) : null, el("span", { class: "field-error error", role: "alert" }));
  }

  function fieldError(form, name, message) {
    const error = form.querySelector('[data-field="' + name + '"] .field-error');
    if (error) error.textContent = message;
    return !!error;
  }

  function clearErrors(form) {
    for (const error of form.querySelectorAll(".field-error")) error.textContent = "";
  }

  function ticks(name, pairs, chosen) {
    return el("div", { class: "ticks", "data-ticks": name }, ...pairs.map(([code, label]) => el("label", { class: "tick" },
      el("input", { type: "checkbox", value: code, ...(chosen.includes(code) ? { checked: "" } : {}) }), label)));
  }

  function ticked(form, name) {
    return Array.from(form.querySelectorAll('[data-ticks="' + name + '"] input:checked'), (box) => box.value);
  }

  function categorySelect(current) {
    return el("select", { name: "category" }, el("option", { value: "" }, t("no_category")),
      ...T("categories").map(([code, label]) => el("option", { value: code, ...(code === current ? { selected: "" } : {}) },
        label)));
  }

  function T(key) { return kit.me.texts[key] || []; }

  // A photo chosen on the phone is uploaded at once, so a file that can't be used is refused at once.
  function photoPicker(onUploaded) {
    const preview = el("img", { class: "thumb", alt: "", hidden: "" });
    const state = el("span", { class: "hint", id: "photo-state" });
    const input = el("input", { type: "file", accept: "image/*", id: "offer-photo" });
    input.addEventListener("change", async () => {
      const file = input.files && input.files[0];
      if (!file) return;
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
      state.textContent = t("photo_uploading");
      state.classList.remove("error");
      onUploaded(null);
      try {
        const answer = await kit.api("/api/business/photos", { method: "POST", body: file,
          headers: { "Content-Type": file.type || "application/octet-stream" } });
        state.textContent = t("photo_received");
        onUploaded(answer.photo);
      } catch (error) {
        state.textContent = error.message;
        state.classList.add("error");
        preview.hidden = true;
      }
    });
    return el("div", { class: "photo-picker" }, el("label", { class: "file-button" }, t("choose_photo"), input),
      preview, state);
  }

  function offerForm() {
    let photo = null;
    const input = (name, attrs) => el("input", { name, autocomplete: "off", ...(attrs || {}) });
    const zone = kit.me.business ? kit.me.business.timezone : "";
    const form = el("form", { id: "offer-form", class: "card form", novalidate: "" },
      el("h3", {}, t("new_offer")),
      field("title", t("field_title"), input("title", { maxlength: "80", placeholder: t("title_hint") })),
      field("description", t("field_description"), el("textarea", { name: "description", maxlength: "400", rows: "2" })),
      el("div", { class: "row two" },
        field("price", t("field_price"), input("price", { inputmode: "decimal", placeholder: "4.50" })),
        field("original_price", t("field_original_price"), input("original_price", { inputmode: "decimal",
          placeholder: "12.00" }))),
      field("quantity", t("field_quantity"), input("quantity", { inputmode: "numeric", value: "5" })),
      field("day", t("field_day"), el("select", { name: "day" }, el("option", { value: "today" }, t("today_word")),
        el("option", { value: "tomorrow" }, t("tomorrow_word")))),
      field("window", t("field_window", { zone }), el("div", { class: "row" },
        input("window_start", { type: "time", value: "18:00" }), "–", input("window_end", { type: "time", value: "19:00" }))),
      field("category", t("field_category"), categorySelect(null)),
      field("diet", t("field_diet"), ticks("diet", T("diets"), [])),
      field("allergens", t("field_allergens"), ticks("allergens", T("allergens"), [])),
      field("photo", t("field_photo"), photoPicker((uploaded) => { photo = uploaded; })));
    const status = el("div", { id: "offer-form-status" });
    show(form, status);
    Bridge.showBack(t("back"), () => business(kit));
    form.addEventListener("submit", (event) => { event.preventDefault(); create(); });
    Bridge.showMain(t("create_offer"), create);

    async function create() {
      clearErrors(form);
      status.replaceChildren(el("p", { class: "note" }, t("creating")));
      const value = (name) => form.elements[name].value;
      try {
        const offer = await kit.post("/api/business/offers", {
          title: value("title"), description: value("description"), price: value("price"),
          original_price: value("original_price"), quantity: value("quantity"), day: value("day"),
          window: value("window_start") + "-" + value("window_end"), category: value("category") || null,
          diet: ticked(form, "diet"), allergens: ticked(form, "allergens"), photo: photo || "" });
        offerScreen(offer.id);
      } catch (error) {
        status.replaceChildren();
        if (!error.field || !fieldError(form, error.field, error.message)) status.replaceChildren(kit.problem(error));
        const first = form.querySelector(".field-error:not(:empty)");
        if (first) first.scrollIntoView({ block: "center" });
        Bridge.showMain(t("create_offer"), create);
      }
    }
  }

  // ------------------------------------------------------------------ one offer: its card, publish, edit

  async function offerScreen(id, note) {
    let offer;
    try { offer = await kit.api("/api/business/offers/" + id); } catch (error) { show(kit.problem(error)); return; }
    const box = el("div", { class: "card offer-screen", "data-offer-screen": offer.id },
      el("h3", {}, offer.title),
      el("div", { class: "hint" }, offer.price.text + " · " + status(offer) + " · " + t("sold_held", {
        sold: offer.units_sold, held: offer.units_held, left: offer.units_left })));
    const shown = show(...(note ? [el("p", { class: "note", id: "offer-note" }, note)] : []), box);
    Bridge.showBack(t("back"), () => business(kit));
    if (offer.photo.status === "processing") {
      box.append(el("p", { class: "note", id: "card-progress" }, t("card_processing")));
      waitForCard(offer.id, note, shown, 0);
    } else if (offer.photo.card_url) {
      const card = el("img", { class: "deal-card", id: "deal-card", alt: offer.title });
      showImage(card, offer.photo.card_url);
      box.append(card);
      if (offer.is_draft) box.append(el("p", { class: "hint" }, t("card_in_chat")));
    }
    if (offer.photo.problem) box.append(el("p", { class: "note error", role: "alert" }, offer.photo.problem));
    if (offer.is_draft) draftActions(offer, box);
    if (offer.can_edit || offer.can_edit_tags) box.append(editForm(offer));
    if (offer.can_cancel) box.append(cancelArea(offer));
  }

  // The chat's "🗑 Cancel offer": asked first, in the chat's words; then a worker does it as the chat
  // does (reservations released, paid orders refunded, every customer told in their chat), and the
  // page watches the offer until it is cancelled.
  function cancelArea(offer) {
    const area = el("div", { class: "cancel-area", id: "cancel-area" });
    const start = () => area.replaceChildren(el("button", { id: "cancel-offer", onclick: ask }, t("cancel_offer")));
    const ask = () => {
      const yes = el("button", { class: "danger", id: "cancel-yes", onclick: async () => {
        yes.disabled = true;
        try { await kit.post("/api/business/offers/" + offer.id + "/cancel"); }
        catch (error) { yes.disabled = false; area.append(kit.problem(error)); return; }
        area.replaceChildren(el("p", { class: "note", id: "cancel-progress" }, t("cancelling")));
        waitForCancel(offer.id, area, screenNumber, 0);
      } }, t("cancel_yes"));
      area.replaceChildren(el("p", { class: "note question", id: "cancel-question" },
        rich(t("cancel_ask", { title: offer.title }))),
        el("div", { class: "row" }, yes, el("button", { id: "cancel-no", onclick: start }, t("cancel_no"))));
    };
    start();
    return area;
  }

  function waitForCancel(id, area, shown, tries) {
    setTimeout(async () => {
      if (shown !== screenNumber) return;
      let offer;
      try { offer = await kit.api("/api/business/offers/" + id); } catch (error) { offer = null; }
      if (shown !== screenNumber) return;
      if (offer && offer.status === "cancelled") offerScreen(id, t("cancelled_ok"));
      else if (tries + 1 >= POLL_TRIES) area.replaceChildren(el("p", { class: "note" }, t("cancel_later")));
      else waitForCancel(id, area, shown, tries + 1);
    }, POLL_MS);
  }

  // The images task makes the card (and sends it to the chat as the preview): asked every second
  // until it is there, or could not be made, while this screen is shown.
  function waitForCard(id, note, shown, tries) {
    if (tries >= POLL_TRIES) return;
    setTimeout(async () => {
      if (shown !== screenNumber) return;
      let offer;
      try { offer = await kit.api("/api/business/offers/" + id); } catch (error) { offer = null; }
      if (shown !== screenNumber) return;
      if (offer && offer.photo.status !== "processing") offerScreen(id, note);
      else waitForCard(id, note, shown, tries + 1);
    }, POLL_MS);
  }

  function draftActions(offer, box) {
    const act = async (action) => {
      try { return await kit.post("/api/business/offers/" + offer.id + "/" + action); }
      catch (error) { box.append(kit.problem(error)); return null; }
    };
    if (offer.can_publish) {
      const publish = async () => {
        if (await act("publish")) offerScreen(offer.id, t("published_ok"));
        else Bridge.showMain(t("publish"), publish);
      };
      Bridge.showMain(t("publish"), publish);
    }
    let photo = null;
    const change = el("button", { id: "change-photo", hidden: "", onclick: async () => {
      try {
        await kit.post("/api/business/offers/" + offer.id + "/photo", { photo });
        offerScreen(offer.id);
      } catch (error) { box.append(kit.problem(error)); }
    } }, t("change_photo"));
    box.append(el("div", { class: "field" }, photoPicker((uploaded) => { photo = uploaded; change.hidden = !uploaded; })),
      change,
      el("button", { id: "discard", onclick: async () => {
        if (await act("discard")) show(el("p", { class: "note" }, t("discarded")));
      } }, t("discard")));
  }

  function editForm(offer) {
    const form = el("form", { class: "form", id: "edit-form", novalidate: "" }, el("h3", {}, t("edit")));
    if (offer.can_edit) {
      form.append(el("div", { class: "row two" },
        field("price", t("field_price"), el("input", { name: "price", inputmode: "decimal", value: decimal(offer.price) })),
        field("quantity", t("field_quantity"), el("input", { name: "quantity", inputmode: "numeric",
          value: String(offer.quantity) }))));
    }
    if (offer.can_edit_tags) {
      form.append(field("category", t("field_category"), categorySelect(offer.category)),
        field("diet", t("field_diet"), ticks("diet", T("diets"), offer.diet)),
        field("allergens", t("field_allergens"), ticks("allergens", T("allergens"), offer.allergens)));
    }
    const status = el("div", { class: "edit-status" });
    form.append(el("button", { class: "primary", type: "submit" }, t("save")), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const changes = {};
      if (offer.can_edit) {
        if (form.elements.price.value !== decimal(offer.price)) changes.price = form.elements.price.value;
        if (form.elements.quantity.value !== String(offer.quantity)) changes.quantity = form.elements.quantity.value;
      }
      if (offer.can_edit_tags) {
        Object.assign(changes, { category: form.elements.category.value || null, diet: ticked(form, "diet"),
          allergens: ticked(form, "allergens") });
      }
      try {
        await kit.post("/api/business/offers/" + offer.id + "/edit", changes);
        offerScreen(offer.id, t("saved") + ("price" in changes ? " " + t("card_updating") : ""));
      } catch (error) {
        if (!error.field || !fieldError(form, error.field, error.message)) status.replaceChildren(kit.problem(error));
      }
    });
    return form;
  }

  // ------------------------------------------------------------------ admins

  async function admin(given) {
    kit = given;
    let stats, pending;
    try {
      [stats, pending] = await Promise.all([kit.api("/api/admin/stats"), kit.api("/api/admin/businesses/pending")]);
    } catch (error) { show(kit.problem(error)); return; }
    const queues = Object.entries(stats.queues).map(([name, length]) => name + " " + (length === null ? "?" : length));
    const figures = el("div", { class: "card", id: "admin-stats" }, rich(t("stats")),
      ...[t("active_offers", { count: stats.active_offers }),
        t("orders_today", { count: stats.orders_today, paid: stats.paid_today }),
        t("revenue_today", { amount: stats.revenue_today.map((m) => m.text).join(", ") || "0" }),
        t("waiting_review", { count: stats.pending_businesses }),
        t("queues", { queues: queues.join(" · ") })].map((line) => el("div", {}, line)));
    show(figures, el("h2", {}, t("pending")), ...(pending.businesses.length ? pending.businesses.map((b) => {
      const card = el("div", { class: "card", "data-business": b.id }, el("h3", {}, b.name),
        el("div", { class: "hint" }, b.address + " · " + b.phone));
      card.append(el("button", { class: "primary", onclick: async () => {
        try {
          const done = await kit.post("/api/admin/businesses/" + b.id + "/verify");
          card.replaceChildren(el("p", { class: "note" }, t("verified", { name: done.name })));
        } catch (error) { card.append(kit.problem(error)); }
      } }, t("verify")));
      return card;
    }) : [el("p", { class: "note" }, t("no_pending"))]));
  }

  return { business, admin };
})();
