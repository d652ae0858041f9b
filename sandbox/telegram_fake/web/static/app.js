/* The sandbox's web chat. Plain JavaScript, no dependencies.
 *
 * It only uses the Telegram fake's public user-side API (/_sandbox/...) and its event stream, so
 * everything it shows is what a Telegram client would see: the bot's messages with their
 * entities, photos, documents and keyboards, edits and deletions in place, callback answers,
 * chat actions. Untrusted text is only ever put into the page as text nodes, never as HTML.
 */
"use strict";

const AVATAR_COLOURS = ["#e17076", "#7bc862", "#65aadd", "#a695e7", "#ee7aae", "#6ec9cb", "#faa774"];
const CALLBACK_ANSWER_TIMEOUT_MS = 15000;
const TYPING_MS = 5500;
const ACTION_LABELS = {
  typing: "typing", upload_photo: "sending a photo", upload_document: "sending a file",
  find_location: "choosing a location", record_video: "recording a video", upload_video: "sending a video",
  record_voice: "recording a voice message", upload_voice: "sending a voice message",
  choose_sticker: "choosing a sticker", record_video_note: "recording a video", upload_video_note: "sending a video",
};
const SAFE_PROTOCOLS = new Set(["http:", "https:", "tg:", "mailto:", "tel:"]);
// Telegram's limits, counted in UTF-16 code units as Telegram (and JavaScript's String.length) count them.
const MAX_TEXT_LENGTH = 4096;
const MAX_CAPTION_LENGTH = 1024;

const $ = (id) => document.getElementById(id);
const app = {
  config: null,
  bot: null,
  personas: [],
  active: null,
  chats: new Map(),     // persona id -> {messages: Map, replyKeyboard, unread, typingUntil, keyboardHidden}
  pending: new Map(),   // callback_query_id -> {button, timer}
  commands: [],
  menuButton: {type: "commands"},  // the active chat's, as /_sandbox/menu_button gives it
  commandIndex: 0,
  panelTab: "updates",
  panelTimer: null,
  grid: {center: null, lat: null, lon: null},
  pinned: true,         // the chat is scrolled to the bottom: keep it there as content grows
};

// ------------------------------------------------------------------------------------ helpers

async function api(path, options = {}) {
  const response = await fetch("/_sandbox" + path, options);
  let body = {};
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok || body.ok === false) {
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function post(path, payload) {
  return api(path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(payload)});
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function safeUrl(value) {
  try {
    const url = new URL(value, window.location.href);
    return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
  } catch (_) {
    return null;
  }
}

// Times are shown as the bot writes them ("pay by 19:07"): 24-hour, in the businesses' time zone
// (the fake's web config, Europe/Berlin by default), not in the browser's zone or 12-hour style.
const formats = {};

function useTimeZone(zone) {
  const base = {timeZone: zone, hourCycle: "h23"};
  formats.zone = zone;
  formats.time = new Intl.DateTimeFormat("en-GB", {...base, hour: "2-digit", minute: "2-digit"});
  formats.clock = new Intl.DateTimeFormat("en-GB", {...base, hour: "2-digit", minute: "2-digit", second: "2-digit"});
  formats.day = new Intl.DateTimeFormat("en-GB", {...base, weekday: "long", day: "numeric", month: "long"});
  formats.full = new Intl.DateTimeFormat("en-GB", {...base, dateStyle: "full", timeStyle: "long"});
  formats.zoneName = new Intl.DateTimeFormat("en-GB", {...base, timeZoneName: "short"});
}
useTimeZone("Europe/Berlin");

function timeOf(seconds) {
  return formats.time.format(new Date(seconds * 1000));
}

function clock(seconds) {
  return formats.clock.format(new Date(seconds * 1000));
}

function dayOf(seconds) {
  return formats.day.format(new Date(seconds * 1000));
}

function zoneOf(seconds) {  // "CET" or "CEST" for Europe/Berlin, "GMT-5" where English has no abbreviation
  const part = formats.zoneName.formatToParts(new Date(seconds * 1000)).find((p) => p.type === "timeZoneName");
  return part ? part.value : formats.zone;
}

function fullTimeOf(seconds) {
  return `${formats.full.format(new Date(seconds * 1000))} (${formats.zone})`;
}

function toast(text, kind = "") {
  const node = el("div", {class: "toast " + kind, role: "status", text});
  $("toasts").append(node);
  setTimeout(() => node.remove(), kind === "warn" ? 6000 : 3500);
}

function showAlert(text) {
  $("alert-text").textContent = text;
  const dialog = $("alert-dialog");
  if (!dialog.open) dialog.showModal();
}

function fail(error) {
  console.error(error);
  toast("⚠️ " + (error.message || error), "warn");
}

function colourFor(id) {
  return AVATAR_COLOURS[Math.abs(Number(id)) % AVATAR_COLOURS.length];
}

function personaName(persona) {
  return [persona.first_name, persona.last_name].filter(Boolean).join(" ");
}

function chatOf(id) {
  let chat = app.chats.get(id);
  if (!chat) {
    chat = {messages: new Map(), replyKeyboard: null, unread: 0, typingUntil: 0, typingLabel: "", keyboardHidden: false};
    app.chats.set(id, chat);
  }
  return chat;
}

function textOf(message) {
  return message.text || message.caption || (message.photo ? "🖼 Photo" : message.document ? "📄 " + (message.document.file_name || "File")
    : message.venue ? "📍 " + message.venue.title : message.location ? "📍 Location" : "");
}

// ------------------------------------------------------------------------------------ entities

function renderEntities(text, entities) {
  const fragment = document.createDocumentFragment();
  // JavaScript strings are UTF-16, like Telegram's entity offsets: indexes match directly.
  const sorted = (entities || []).filter((e) => e.length > 0)
    .slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
  build(fragment, text, 0, text.length, sorted);
  return fragment;
}

function build(parent, text, start, end, entities) {
  let position = start;
  let index = 0;
  while (index < entities.length) {
    const entity = entities[index];
    const entityEnd = entity.offset + entity.length;
    const inner = [];
    let next = index + 1;
    while (next < entities.length && entities[next].offset < entityEnd) inner.push(entities[next++]);
    const from = Math.max(entity.offset, position);
    const to = Math.min(entityEnd, end);
    if (from > position) parent.append(text.slice(position, from));
    if (to > from) {
      const node = entityNode(entity, text.slice(entity.offset, entityEnd));
      build(node.inner || node, text, from, to, inner);
      parent.append(node.outer || node);
      position = to;
    }
    index = next;
  }
  if (position < end) parent.append(text.slice(position, end));
}

function entityNode(entity, covered) {
  switch (entity.type) {
    case "bold": return el("b");
    case "italic": return el("i");
    case "underline": return el("u");
    case "strikethrough": return el("s");
    case "code": return el("code");
    case "pre": {
      const code = el("code", {"data-language": entity.language || null});
      return {outer: el("pre", {}, code), inner: code};
    }
    case "spoiler": {
      const node = el("span", {class: "spoiler", title: "Spoiler: click to reveal"});
      node.addEventListener("click", () => node.classList.toggle("revealed"));
      return node;
    }
    case "blockquote": case "expandable_blockquote": return el("blockquote");
    case "text_link": case "url": {
      const href = safeUrl(entity.type === "url" && !/^[a-z]+:/i.test(covered) ? "http://" + covered
        : entity.type === "url" ? covered : entity.url);
      return href ? el("a", {href, target: "_blank", rel: "noopener noreferrer"}) : el("span");
    }
    case "email": return el("a", {href: "mailto:" + covered});
    case "phone_number": return el("a", {href: "tel:" + covered.replace(/[^+\d]/g, "")});
    case "bot_command": {
      const node = el("a", {class: "bot-command", href: "#", title: "Send this command"});
      node.addEventListener("click", (event) => { event.preventDefault(); sendText(covered); });
      return node;
    }
    case "mention": case "text_mention": return el("span", {class: "mention"});
    case "hashtag": case "cashtag": return el("span", {class: "hashtag"});
    default: return el("span");
  }
}

// ------------------------------------------------------------------------------------ messages

function renderMessage(message) {
  const mine = message.sender === "user";
  const wrap = el("div", {class: "msg-wrap " + (mine ? "out" : "in"), "data-id": message.message_id,
                          "data-seq": message.seq});
  const bubble = el("div", {class: "bubble"});
  if (message.reply_to_message) {
    bubble.append(el("div", {class: "reply-quote", text: textOf(message.reply_to_message)}));
  }
  if (message.via_bot) bubble.append(el("div", {class: "via-bot muted small", text: "via @" + message.via_bot.username}));
  if (message.photo && message.photo.length) {
    const largest = message.photo[message.photo.length - 1];
    const src = "/_sandbox/files/" + encodeURIComponent(largest.file_id);
    bubble.classList.add("has-photo");
    bubble.append(el("img", {class: "photo", src, alt: message.caption || "Photo",
                             width: largest.width, height: largest.height,
                             onload: () => { if (app.pinned) scrollToBottom(); },
                             onclick: () => window.open(src, "_blank", "noopener")}));
  }
  if (message.document) {
    const doc = message.document;
    const size = doc.file_size ? ` · ${(doc.file_size / 1024).toFixed(doc.file_size < 10240 ? 1 : 0)} KB` : "";
    bubble.append(el("a", {class: "document", href: "/_sandbox/files/" + encodeURIComponent(doc.file_id),
                           download: doc.file_name || "file", title: "Download"},
      el("span", {class: "document-icon", text: "⬇"}),
      el("span", {}, el("div", {class: "document-name", text: doc.file_name || "file"}),
        el("div", {class: "muted small", text: (doc.mime_type || "file") + size}))));
  }
  if (message.venue) {
    const {title, address} = message.venue;
    bubble.append(el("div", {class: "location venue"}, el("span", {class: "location-pin", text: "📍"}),
      el("span", {}, el("b", {text: title}), el("div", {class: "muted small", text: address}))));
  } else if (message.location) {
    const {latitude, longitude} = message.location;
    bubble.append(el("div", {class: "location"}, el("span", {class: "location-pin", text: "📍"}),
      el("span", {}, el("b", {text: "Location"}),
        el("div", {class: "muted small", text: `${latitude.toFixed(5)}, ${longitude.toFixed(5)}`}))));
  }
  const body = message.text !== undefined ? [message.text, message.entities]
    : message.caption !== undefined ? [message.caption, message.caption_entities] : null;
  if (body) bubble.append(el("div", {class: "text"}, renderEntities(body[0], body[1])));
  if (!body && !message.photo && !message.document && !message.location) {
    bubble.append(el("div", {class: "text muted", text: "(unsupported message)"}));
  }
  bubble.append(el("div", {class: "meta-line"},
    message.edit_date ? el("span", {text: "edited"}) : null,
    el("time", {text: timeOf(message.date), title: fullTimeOf(message.date),
                datetime: new Date(message.date * 1000).toISOString()}),
    mine ? el("span", {text: "✓✓"}) : null));
  wrap.append(bubble);
  const keyboard = message.reply_markup && message.reply_markup.inline_keyboard;
  if (keyboard) wrap.append(renderInlineKeyboard(message, keyboard));
  return wrap;
}

function renderInlineKeyboard(message, rows) {
  const box = el("div", {class: "inline-keyboard"});
  for (const row of rows) {
    const line = el("div", {class: "inline-row"});
    for (const button of row) {
      const node = el("button", {type: "button", class: "inline-button" + (button.url || button.web_app ? " url" : ""),
                                 text: button.text, title: button.url || button.callback_data || ""});
      node.addEventListener("click", () => pressInline(message, button, node));
      line.append(node);
    }
    box.append(line);
  }
  return box;
}

async function pressInline(message, button, node) {
  if (button.web_app) {
    openMiniApp({message_id: message.message_id, text: button.text}, button.text);
    return;
  }
  if (button.url) {
    const start = botDeepLink(button.url);
    if (start !== null) { sendText(start ? "/start " + start : "/start"); return; }  // as Telegram opens the bot
    const href = safeUrl(button.url);
    if (href) window.open(href, "_blank", "noopener");
    return;
  }
  if (button.copy_text) {
    navigator.clipboard && navigator.clipboard.writeText(button.copy_text.text || "");
    toast("Copied to the clipboard");
    return;
  }
  if (button.callback_data === undefined) {
    toast("This kind of button does nothing in the sandbox");
    return;
  }
  node.classList.add("loading");
  try {
    const pressed = await post("/callbacks", {user_id: app.active, message_id: message.message_id,
                                              data: button.callback_data});
    const timer = setTimeout(() => {
      app.pending.delete(pressed.callback_query_id);
      node.classList.remove("loading");
      toast("⚠️ The bot did not answer this button press within 15 s", "warn");
    }, CALLBACK_ANSWER_TIMEOUT_MS);
    app.pending.set(pressed.callback_query_id, {node, timer});
  } catch (error) {
    node.classList.remove("loading");
    fail(error);
  }
}

function botDeepLink(url) {
  // t.me/<this bot>?start=<payload>: the payload ("" without one), or null for any other link.
  try {
    const parsed = new URL(url);
    if (parsed.hostname !== "t.me" || !app.bot || parsed.pathname.slice(1).toLowerCase()
        !== String(app.bot.username).toLowerCase()) return null;
    return parsed.searchParams.get("start") || "";
  } catch (_) {
    return null;
  }
}

// ------------------------------------------------------------------------------------ inline mode

const INLINE_WAIT_MS = 10000;  // Telegram drops an inline query the bot has not answered by then

function inlineQueryOf(value) {
  // "@<this bot> words": the words ("" for none); null for anything else.
  const match = /^@(\w+)(?:\s([\s\S]*))?$/.exec(value);
  if (!match || !app.bot || match[1].toLowerCase() !== String(app.bot.username).toLowerCase()) return null;
  return match[2] === undefined ? null : match[2];
}

let inlineTimer = null;
let inlineSeq = 0;

function scheduleInlineQuery() {
  clearTimeout(inlineTimer);
  const query = inlineQueryOf($("composer-input").value);
  if (query === null) { $("inline-results").hidden = true; return; }
  inlineTimer = setTimeout(() => runInlineQuery(query), 350);  // after a pause in typing, like the apps
}

async function runInlineQuery(query) {
  const seq = ++inlineSeq;
  const box = $("inline-results");
  try {
    const sent = await post("/inline_queries", {user_id: app.active, query});
    const deadline = Date.now() + INLINE_WAIT_MS;
    let answer = null;
    while (Date.now() < deadline && seq === inlineSeq) {
      answer = await api(`/inline_queries/${sent.inline_query_id}`);
      if (answer.answered) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    if (seq !== inlineSeq) return;  // a newer query replaced this one
    if (!answer || !answer.answered) {
      box.replaceChildren(el("div", {class: "inline-empty muted", text: "The bot did not answer in time."}));
    } else if (!answer.results.length) {
      box.replaceChildren(el("div", {class: "inline-empty muted", text: "No results."}));
    } else {
      box.replaceChildren(...answer.results.map((result) => el("div", {
        class: "inline-result", role: "option",
        onmousedown: (event) => { event.preventDefault(); chooseInlineResult(sent.inline_query_id, result.id); },
      }, el("b", {text: result.title}), el("span", {class: "muted small", text: result.description || ""}))));
    }
    box.hidden = false;
  } catch (error) {
    fail(error);
  }
}

async function chooseInlineResult(queryId, resultId) {
  inlineSeq++;
  $("inline-results").hidden = true;
  try {
    await post(`/inline_queries/${queryId}/choose`, {result_id: resultId});
    $("composer-input").value = "";
    autosize();
  } catch (error) {
    fail(error);
  }
}

// A web_app button (or the chat's menu button, when the bot made it open a Mini App): the fake
// signs initData for the bot and this persona, as Telegram's client gets it, and the app opens in
// a phone-sized panel beside the chat with it and the theme. The panel
// plays Telegram's side of the Mini App protocol (Telegram's "web events" page): the
// app's web_app_* methods arrive as messages from its frame; the Back and Main buttons it asks for
// are drawn here, and a press goes back to it as back_button_pressed / main_button_pressed.
const miniApp = {origin: null};

async function openMiniApp(tapped, title) {
  try {
    // ?platform=weba (or webk, tdesktop…) on this page's address: the app is told it runs there.
    const platform = new URLSearchParams(window.location.search).get("platform");
    const opened = await post("/web_apps", {user_id: app.active, ...tapped, ...(platform ? {platform} : {})});
    miniApp.origin = new URL(opened.url).origin;
    $("mini-app-title").textContent = title;
    $("mini-app-back").hidden = true;
    $("mini-app-main").hidden = true;
    $("mini-app-frame").src = opened.url;
    $("mini-app").hidden = false;
    $("app").classList.add("mini-app-open");
  } catch (error) {
    fail(error);
  }
}

function closeMiniApp() {
  closeScanner();
  $("mini-app").hidden = true;
  $("mini-app-frame").src = "about:blank";
  miniApp.origin = null;
  $("app").classList.remove("mini-app-open");
}

function toMiniApp(eventType, eventData = null) {
  if (miniApp.origin) $("mini-app-frame").contentWindow.postMessage(JSON.stringify({eventType, eventData}), miniApp.origin);
}

function fromMiniApp(event) {
  if (!miniApp.origin || event.source !== $("mini-app-frame").contentWindow || event.origin !== miniApp.origin) return;
  let message;
  try { message = JSON.parse(event.data); } catch (_) { return; }
  const data = (message && message.eventData) || {};
  switch (message && message.eventType) {
    case "web_app_setup_back_button":
      $("mini-app-back").hidden = !data.is_visible;
      break;
    case "web_app_setup_main_button": {
      const main = $("mini-app-main");
      main.hidden = !data.is_visible;
      if (typeof data.text === "string") main.textContent = data.text;
      main.disabled = data.is_active === false;
      if (data.color) main.style.background = data.color;
      if (data.text_color) main.style.color = data.text_color;
      break;
    }
    case "web_app_open_link": {
      const href = safeUrl(String(data.url || ""));
      if (href) window.open(href, "_blank", "noopener");
      break;
    }
    case "web_app_close":
      closeMiniApp();
      break;
    case "web_app_open_scan_qr_popup":
      openScanner(typeof data.text === "string" ? data.text : "");
      break;
    case "web_app_close_scan_qr_popup":
      closeScanner();
      break;
    default:  // web_app_ready, web_app_expand, …: nothing to do in a panel
  }
}

// Telegram's QR scanner (web_app_open_scan_qr_popup): a dialog in place of the camera. It lists the
// QR codes in photos the bot sent to the sandbox's chats (read by the fake with a real decoder), and
// takes typed text too; each one "scanned" goes to the app as qr_text_received, and the scanner stays
// open until the app closes it (web_app_close_scan_qr_popup) or the person does (scan_qr_popup_closed).
async function openScanner(text) {
  const dialog = $("qr-dialog");
  $("qr-app-text").textContent = text;
  $("qr-input").value = "";
  const list = $("qr-list");
  list.replaceChildren(el("div", {class: "muted small", text: "Looking for QR codes in the sandbox's chats…"}));
  if (!dialog.open) dialog.showModal();
  let found;
  try {
    found = await api("/web/qr_codes");
  } catch (error) {
    list.replaceChildren(el("div", {class: "muted small", text: "The camera can't see the chats: " + error.message}));
    return;
  }
  if (!found.codes.length) {
    list.replaceChildren(el("div", {class: "muted small", text: found.decoder ? "No QR code in the sandbox's chats yet."
      : "No QR decoder here (pip install zxing-cpp, a development requirement): type the text instead."}));
    return;
  }
  const names = new Map(app.personas.map((persona) => [persona.id, persona.first_name]));
  list.replaceChildren(...found.codes.map((code) => el("button", {
    type: "button", class: "qr-code", title: code.text, "data-qr-text": code.text,
    onclick: () => scanned(code.text),
  }, el("img", {src: "/_sandbox/files/" + encodeURIComponent(code.file_id), alt: ""}),
  el("span", {text: (names.get(code.chat_id) || code.name) + " · " + (code.caption || "QR code")}))));
}

function scanned(text) {
  if (text) toMiniApp("qr_text_received", {data: text});
}

function closeScanner() {
  if ($("qr-dialog").open) $("qr-dialog").close("app");
}

function callbackAnswered(event) {
  const record = event.callback_answer || {};
  const pending = app.pending.get(record.callback_query_id);
  if (pending) {
    clearTimeout(pending.timer);
    pending.node.classList.remove("loading");
    app.pending.delete(record.callback_query_id);
  }
  const answer = record.answer || {};
  if (event.chat_id !== app.active) return;
  if (answer.text) {
    if (answer.show_alert) showAlert(answer.text); else toast(answer.text);
  }
  if (answer.url) {
    const href = safeUrl(answer.url);
    if (href) window.open(href, "_blank", "noopener");
  }
}

function nearBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

function scrollToBottom() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
  app.pinned = true;
}

function renderChat() {
  const box = $("messages");
  box.replaceChildren();
  const chat = chatOf(app.active);
  const messages = [...chat.messages.values()].filter((m) => !m.deleted).sort((a, b) => a.message_id - b.message_id);
  if (!messages.length) {
    const persona = app.personas.find((p) => p.id === app.active);
    box.append(el("div", {class: "empty-chat"},
      el("div", {text: `No messages here yet. Say hello to the bot as ${persona ? persona.first_name : "this user"}.`}),
      el("button", {type: "button", text: "START", onclick: () => sendText("/start")})));
  }
  let lastDay = null;
  for (const message of messages) {
    const day = dayOf(message.date);
    if (day !== lastDay) { box.append(daySeparator(message.date)); lastDay = day; }
    box.append(renderMessage(message));
  }
  renderReplyKeyboard();
  scrollToBottom();
}

function daySeparator(seconds) {
  const zone = zoneOf(seconds);
  return el("div", {class: "day", "data-day": dayOf(seconds),
                    title: `Times are ${formats.zone} time (${zone}), as the bot writes them`},
    dayOf(seconds), el("span", {class: "zone", text: zone}));
}

function placeMessage(message, isNew) {
  const box = $("messages");
  const existing = box.querySelector(`.msg-wrap[data-id="${message.message_id}"]`);
  if (message.deleted) {
    if (existing) existing.remove();
    return;
  }
  const stick = app.pinned || message.sender === "user";
  const node = renderMessage(message);
  if (existing) {
    existing.replaceWith(node);
    node.classList.add("flash");
  } else {
    const empty = box.querySelector(".empty-chat");
    if (empty) { renderChat(); return; }
    const later = [...box.querySelectorAll(".msg-wrap")].find((n) => Number(n.dataset.id) > message.message_id);
    if (later) box.insertBefore(node, later);
    else {
      const days = box.querySelectorAll(".day");
      const lastDay = days.length ? days[days.length - 1].dataset.day : null;
      if (lastDay !== dayOf(message.date)) box.append(daySeparator(message.date));  // past midnight
      box.append(node);
    }
    if (isNew) node.classList.add("appear");
  }
  if (stick) scrollToBottom();
}

function upsert(chatId, message, kind) {
  const chat = chatOf(chatId);
  const known = chat.messages.get(message.message_id);
  if (known && known.seq >= message.seq) return;
  chat.messages.set(message.message_id, message);
  if (kind === "message_new") {
    const markup = message.reply_markup || {};
    if (message.sender === "bot") {
      if (markup.keyboard) { chat.replyKeyboard = markup; chat.keyboardHidden = false; }
      else if (markup.remove_keyboard) chat.replyKeyboard = null;
      chat.typingUntil = 0;
    } else if (chat.replyKeyboard && chat.replyKeyboard.one_time_keyboard) {
      chat.replyKeyboard = null;
    }
  }
  if (chatId === app.active) {
    if (kind === "message_new" && message.sender === "bot") loadMenuButton();  // it may have changed with it
    placeMessage(message, kind === "message_new");
    renderReplyKeyboard();
    renderStatus();
    schedulePanelRefresh();
  } else if (kind === "message_new" && message.sender === "bot") {
    chat.unread += 1;
  }
  renderPersonas();
}

// ------------------------------------------------------------------------------------ reply keyboard

function renderReplyKeyboard() {
  const chat = chatOf(app.active);
  const box = $("reply-keyboard");
  const toggle = $("keyboard-toggle");
  box.replaceChildren();
  const markup = chat.replyKeyboard;
  toggle.hidden = !markup;
  if (!markup || chat.keyboardHidden) { box.hidden = true; return; }
  for (const row of markup.keyboard) {
    const line = el("div", {class: "reply-row"});
    for (const button of row) {
      const spec = typeof button === "string" ? {text: button} : button;
      line.append(el("button", {type: "button", class: "reply-button", text: spec.text,
                                onclick: () => pressReply(spec)}));
    }
    box.append(line);
  }
  box.hidden = false;
}

function pressReply(button) {
  if (button.request_location) { openLocationDialog(); return; }
  if (button.request_contact || button.request_poll || button.request_users || button.request_chat) {
    toast("The sandbox cannot share that; type it instead");
    return;
  }
  sendText(button.text);
}

// ------------------------------------------------------------------------------------ sending

function count(number) {
  return number.toLocaleString("en-GB");
}

function showComposerNote(text) {
  // Said where the person is typing, like Telegram's apps do, instead of a toast that goes away.
  const note = $("composer-note");
  note.textContent = text || "";
  note.hidden = !text;
}

function textTooLong(text) {
  return text.length > MAX_TEXT_LENGTH
    ? `Messages can be at most ${count(MAX_TEXT_LENGTH)} characters (this one has ${count(text.length)}). `
      + "Shorten it or send it in parts."
    : "";
}

async function sendText(text) {
  if (!text.trim()) return false;
  const problem = textTooLong(text);
  if (problem) { showComposerNote(problem); return false; }
  try {
    await post("/messages", {user_id: app.active, text});
    return true;
  } catch (error) {
    fail(error);
    return false;
  }
}

const MAX_DOCUMENT_BYTES = 50 * 1024 * 1024;  // what the fake (like the Bot API) stores of a file
// 📎 sends these as photos, like Telegram's apps do by default; anything else goes as a file (a document).
const PHOTO_TYPES = new Set(["image/jpeg", "image/png", "image/webp", "image/bmp"]);

async function sendFile(file) {
  const input = $("composer-input");
  const caption = input.value.trim();
  if (caption.length > MAX_CAPTION_LENGTH) {
    showComposerNote(`Captions can be at most ${count(MAX_CAPTION_LENGTH)} characters (this one has `
      + `${count(caption.length)}). Send the file without it: empty the box, or send the text first.`);
    return;
  }
  if (file.size > MAX_DOCUMENT_BYTES) {
    showComposerNote(`Files can be at most ${count(MAX_DOCUMENT_BYTES / 1024 / 1024)} MB here `
      + `(this one has ${count(Math.ceil(file.size / 1024 / 1024))} MB).`);
    return;
  }
  showComposerNote("");
  const upload = (path, extra) => {
    const form = new FormData();
    form.append("user_id", String(app.active));
    if (caption) form.append("caption", caption);
    for (const [key, value] of Object.entries(extra)) form.append(key, value);
    form.append("file", file, file.name || "file");
    return api(path, {method: "POST", body: form});
  };
  const asDocument = () => upload("/documents", {file_name: file.name || "file",
                                                 ...(file.type ? {mime_type: file.type} : {})});
  try {
    if (PHOTO_TYPES.has(file.type)) {
      try {
        await upload("/photos", {});
      } catch (error) {
        // An image Telegram can't take as a photo (damaged, too big, too long and narrow): its apps
        // send it as a file then, and so does this page.
        if (error.status !== 400 && error.status !== 413) throw error;
        await asDocument();
      }
    } else {
      await asDocument();
    }
    input.value = "";
    autosize();
  } catch (error) {
    fail(error);
  }
}

async function sendLocation(latitude, longitude) {
  try {
    await post("/locations", {user_id: app.active, latitude, longitude});
  } catch (error) {
    fail(error);
  }
}

function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = Math.min(input.scrollHeight, 140) + "px";
}

// ------------------------------------------------------------------------------------ commands

// The button left of the message field: the bot's menu button for this chat (setChatMenuButton),
// as Telegram's clients draw it. One that opens a Mini App shows its text; otherwise "☰" opens
// the "/" menu.
async function loadMenuButton() {
  try {
    app.menuButton = (await api("/menu_button?" + new URLSearchParams({chat_id: app.active}))).menu_button;
  } catch (_) {
    app.menuButton = {type: "commands"};
  }
  const button = $("menu-button");
  const opensApp = app.menuButton.type === "web_app";
  button.textContent = opensApp ? app.menuButton.text : "☰";
  button.title = opensApp ? "Open the Mini App (the bot's menu button)" : "Commands";
  button.classList.toggle("web-app", opensApp);
}

async function loadCommands() {
  const persona = app.personas.find((p) => p.id === app.active);
  const query = new URLSearchParams({chat_id: app.active, language_code: (persona && persona.language_code) || ""});
  try {
    app.commands = (await api("/commands?" + query)).commands;
  } catch (_) {
    app.commands = [];
  }
}

function showCommands(all = false) {
  const popup = $("command-popup");
  const value = $("composer-input").value;
  const typed = value.startsWith("/") && !/\s/.test(value) ? value.slice(1).toLowerCase() : null;
  if (!all && typed === null) { popup.hidden = true; return; }
  const matches = app.commands.filter((c) => all || c.command.startsWith(typed));
  if (!matches.length) { popup.hidden = true; return; }
  app.commandIndex = Math.min(app.commandIndex, matches.length - 1);
  popup.replaceChildren(...matches.map((command, index) => el("div", {
    class: "command" + (index === app.commandIndex ? " selected" : ""), role: "option",
    onmousedown: (event) => { event.preventDefault(); chooseCommand(command); },
  }, el("b", {text: "/" + command.command}), el("span", {text: command.description}))));
  popup.hidden = false;
  popup.dataset.matches = JSON.stringify(matches.map((c) => c.command));
}

function chooseCommand(command) {
  $("composer-input").value = "";
  $("command-popup").hidden = true;
  autosize();
  sendText("/" + command.command);
}

// ------------------------------------------------------------------------------------ location

function openLocationDialog() {
  const list = $("place-list");
  list.replaceChildren(...app.config.places.map((place) => el("button", {
    type: "button", class: "place",
    onclick: (event) => { selectPlace(place, event.currentTarget); },
  }, place.name, el("small", {text: `${place.latitude.toFixed(4)}, ${place.longitude.toFixed(4)}`}))));
  const first = app.grid.center || app.config.places[0];
  setGrid(first, app.grid.lat ?? first.latitude, app.grid.lon ?? first.longitude);
  $("location-dialog").showModal();
}

function selectPlace(place, node) {
  for (const other of document.querySelectorAll(".place")) other.classList.toggle("selected", other === node);
  setGrid(place, place.latitude, place.longitude);
}

const GRID_SPAN = 0.036;  // degrees of latitude shown by the square (about 4 km)

function setGrid(center, lat, lon) {
  app.grid = {center, lat, lon};
  $("lat-input").value = lat.toFixed(5);
  $("lon-input").value = lon.toFixed(5);
  const lonSpan = GRID_SPAN / Math.cos(center.latitude * Math.PI / 180);
  const x = 0.5 + (lon - center.longitude) / lonSpan;
  const y = 0.5 - (lat - center.latitude) / GRID_SPAN;
  const marker = $("grid-marker");
  marker.hidden = x < 0 || x > 1 || y < 0 || y > 1;
  marker.style.left = (x * 100) + "%";
  marker.style.top = (y * 100) + "%";
}

function gridClick(event) {
  const rect = event.currentTarget.getBoundingClientRect();
  const center = app.grid.center || app.config.places[0];
  const lonSpan = GRID_SPAN / Math.cos(center.latitude * Math.PI / 180);
  const x = (event.clientX - rect.left) / rect.width;
  const y = (event.clientY - rect.top) / rect.height;
  setGrid(center, center.latitude + (0.5 - y) * GRID_SPAN, center.longitude + (x - 0.5) * lonSpan);
}

// ------------------------------------------------------------------------------------ personas

function renderPersonas() {
  const list = $("persona-list");
  list.replaceChildren(...app.personas.map((persona) => {
    const chat = chatOf(persona.id);
    const last = [...chat.messages.values()].filter((m) => !m.deleted).sort((a, b) => b.message_id - a.message_id)[0];
    return el("button", {type: "button", class: "persona" + (persona.id === app.active ? " active" : ""),
                         "data-persona": persona.id, title: `${personaName(persona)} · user id ${persona.id}`,
                         onclick: () => selectPersona(persona.id)},
      el("span", {class: "avatar", style: `background:${colourFor(persona.id)}`, text: persona.first_name[0]}),
      el("span", {class: "persona-text"},
        el("span", {class: "persona-name"}, el("span", {text: persona.first_name}),
          chat.unread ? el("span", {class: "unread", text: chat.unread})
            : el("span", {class: "persona-role", text: persona.role})),
        el("div", {class: "persona-preview muted", text: last ? textOf(last).split("\n")[0] : persona.description})));
  }));
}

function renderStatus() {
  const chat = chatOf(app.active);
  const status = $("chat-status");
  status.replaceChildren();
  if (chat.typingUntil > Date.now()) {
    status.className = "subtitle typing";
    status.append(chat.typingLabel, el("span", {class: "typing-dots"}, el("i"), el("i"), el("i")));
  } else {
    status.className = "subtitle";
    status.append("bot");
  }
}

async function selectPersona(id) {
  app.active = id;
  const chat = chatOf(id);
  chat.unread = 0;
  const persona = app.personas.find((p) => p.id === id);
  $("you-are").replaceChildren("You are ", el("b", {text: personaName(persona)}), el("br"),
    el("span", {class: "small", text: `${persona.role} · id ${persona.id}`}));
  const url = new URL(window.location.href);
  url.searchParams.set("persona", id);
  history.replaceState(null, "", url);
  renderPersonas();
  renderChat();
  renderStatus();
  renderPanelLinks();
  refreshPanel();
  await Promise.all([loadCommands(), loadMenuButton()]);
  $("composer-input").focus();
}

async function loadTranscript(id) {
  const body = await api(`/chats/${id}/messages`);
  const chat = chatOf(id);
  for (const message of body.messages) {
    const known = chat.messages.get(message.message_id);
    if (!known || known.seq < message.seq) chat.messages.set(message.message_id, message);
  }
  chat.replyKeyboard = body.reply_keyboard;
}

async function loadAll() {
  await Promise.all(app.personas.map((p) => loadTranscript(p.id)));
  renderPersonas();
  renderChat();
}

// ------------------------------------------------------------------------------------ live events

function connect() {
  const source = new EventSource("/_sandbox/events");
  source.addEventListener("open", () => {
    // (Re)connected: fetch the transcripts; events from now on are merged by their seq.
    loadAll().then(() => { document.body.dataset.live = "1"; }).catch(fail);
  });
  for (const kind of ["message_new", "message_edited", "message_deleted"]) {
    source.addEventListener(kind, (event) => {
      const data = JSON.parse(event.data);
      if (data.bot_id !== app.bot.id || !app.chats.has(data.chat_id)) return;
      upsert(data.chat_id, data.message, kind);
    });
  }
  source.addEventListener("callback_answer", (event) => callbackAnswered(JSON.parse(event.data)));
  source.addEventListener("chat_action", (event) => {
    const data = JSON.parse(event.data);
    if (!app.chats.has(data.chat_id)) return;
    const chat = chatOf(data.chat_id);
    chat.typingUntil = Date.now() + TYPING_MS;
    chat.typingLabel = ACTION_LABELS[data.action] || data.action;
    if (data.chat_id === app.active) {
      renderStatus();
      setTimeout(renderStatus, TYPING_MS + 50);
    }
  });
  source.addEventListener("reset", () => {
    toast("The sandbox was reset");
    for (const chat of app.chats.values()) { chat.messages.clear(); chat.replyKeyboard = null; }
    ensureUsers().then(loadAll).catch(fail);
  });
}

async function ensureUsers() {
  // Personas are Telegram users who have started the bot, so the bot may write to them first.
  await Promise.all(app.personas.map((p) => post("/users", {
    id: p.id, first_name: p.first_name, last_name: p.last_name, language_code: p.language_code, started: true,
  })));
}

// ------------------------------------------------------------------------------------ panel

function renderPanelLinks() {
  const links = $("panel-links");
  links.replaceChildren();
  if (app.config.flower_url) {
    links.append(el("a", {href: app.config.flower_url, target: "_blank", rel: "noopener", text: "🌸 Flower"}));
    links.append(el("a", {href: app.config.flower_url.replace(/\/$/, "") + "/tasks", target: "_blank",
                          rel: "noopener", text: "All tasks"}));
  }
  links.append(el("a", {href: `/_sandbox/chats/${app.active}/messages`, target: "_blank", rel: "noopener",
                        text: "Transcript (JSON)"}));
  links.append(el("a", {href: `?persona=${app.active}`, target: "_blank", rel: "noopener",
                        text: "Open in a new window"}));
}

function togglePanel(open) {
  const root = $("app");
  const next = open === undefined ? !root.classList.contains("panel-open") : open;
  root.classList.toggle("panel-open", next);
  $("panel-toggle").setAttribute("aria-expanded", String(next));
  localStorage.setItem("sandbox.panel", next ? "1" : "0");
  if (next) refreshPanel();
}

function schedulePanelRefresh() {
  if (!$("app").classList.contains("panel-open")) return;
  clearTimeout(app.panelTimer);
  app.panelTimer = setTimeout(refreshPanel, 400);
}

function entry(summary, details) {
  return el("details", {class: "entry"}, el("summary", {}, ...summary),
    el("pre", {text: JSON.stringify(details, null, 2)}));
}

function describeUpdate(u) {
  const body = u.update[u.kind] || {};
  if (u.kind === "callback_query") return `🔘 tap: ${body.data ?? "(no data)"}`;
  if (u.kind === "message" || u.kind === "edited_message") {
    const prefix = u.kind === "edited_message" ? "✏️ " : "💬 ";
    if (body.text !== undefined) return prefix + body.text;
    if (body.photo) return "🖼 photo" + (body.caption ? ": " + body.caption : "");
    if (body.location) return `📍 ${body.location.latitude}, ${body.location.longitude}`;
    if (body.document) return "📄 " + (body.document.file_name || "file");
  }
  return u.kind;
}

async function refreshPanel() {
  if (!$("app").classList.contains("panel-open") || app.active === null) return;
  const body = $("panel-body");
  const chatId = app.active;
  try {
    let nodes;
    if (app.panelTab === "updates") {
      const {updates} = await api(`/updates?chat_id=${chatId}&limit=40`);
      nodes = updates.reverse().map((u) => entry([
        el("span", {class: "pill " + (u.delivered ? "ok" : "wait"), text: u.delivered ? "taken" : "queued"}),
        el("span", {class: "grow", text: describeUpdate(u), title: `update_id ${u.update_id}`}),
        el("span", {class: "muted", text: clock(u.time)})], u.update));
      if (!nodes.length) nodes = [el("div", {class: "panel-note", text: "No updates for this chat yet."})];
      nodes.unshift(el("div", {class: "panel-note", text: "What Telegram handed to the bot (webhook or getUpdates), newest first."}));
    } else if (app.panelTab === "calls") {
      const {calls} = await api(`/calls?chat_id=${chatId}&limit=60`);
      nodes = calls.reverse().map((c) => entry([
        el("span", {class: "pill " + (c.ok ? "ok" : "bad"), text: c.status}),
        el("span", {class: "grow", text: c.method}),
        el("span", {class: "muted", text: clock(c.time)})],
        {params: c.params, result: c.result, description: c.description, duration_ms: Math.round(c.duration * 1000)}));
      if (!nodes.length) nodes = [el("div", {class: "panel-note", text: "The bot has not called the API for this chat yet."})];
      nodes.unshift(el("div", {class: "panel-note", text: "Bot API calls about this chat, newest first."}));
    } else {
      if (!app.config.flower_tasks) {
        nodes = [el("div", {class: "panel-note", text: "Flower is not connected to the sandbox here (make run connects it)."})];
      } else {
        const {tasks} = await api(`/web/tasks?chat_id=${chatId}`);
        const base = app.config.flower_url.replace(/\/$/, "");
        nodes = tasks.map((t) => el("div", {class: "entry"}, el("div", {class: "task-line"},
          el("span", {class: "pill " + (t.state === "SUCCESS" ? "ok" : t.state === "FAILURE" ? "bad" : "wait"), text: t.state}),
          el("a", {class: "grow", href: `${base}/task/${t.uuid}`, target: "_blank", rel: "noopener", text: t.name}),
          el("span", {class: "muted", text: t.runtime ? `${(t.runtime * 1000).toFixed(0)} ms` : (t.received ? clock(t.received) : "")}))));
        if (!nodes.length) nodes = [el("div", {class: "panel-note", text: "No tasks for this chat in Flower yet."})];
        nodes.unshift(el("div", {class: "panel-note", text: "Celery tasks of this chat's updates and what they started (from Flower), newest first."}));
      }
    }
    if (chatId === app.active) body.replaceChildren(...nodes);
  } catch (error) {
    body.replaceChildren(el("div", {class: "panel-note", text: "Could not load: " + error.message}));
  }
}

// ------------------------------------------------------------------------------------ demo

async function startDemo() {
  const button = $("demo-button");
  button.disabled = true;
  try {
    await post("/demo", {});
  } catch (error) {
    if (error.status !== 409) { fail(error); button.disabled = false; return; }
  }
  followDemo();
}

async function followDemo() {
  const button = $("demo-button");
  const log = $("demo-log");
  let status;
  try {
    status = await api("/demo");
  } catch (error) {
    button.disabled = false;
    return;
  }
  log.replaceChildren(...status.steps.map((step) => el("li", {text: step.text})));
  if (status.error) log.append(el("li", {class: "error", text: "Failed: " + status.error}));
  log.scrollTop = log.scrollHeight;
  const label = status.running ? "Demo running…" : "Play the demo";
  button.querySelector(".demo-icon").textContent = status.running ? "⏳" : "▶";
  button.querySelector(".demo-label").textContent = label;
  button.setAttribute("aria-label", label);
  button.title = label;
  if (status.running) {
    button.disabled = true;
    setTimeout(followDemo, 700);
  } else {
    button.disabled = false;
    if (status.finished && Date.now() / 1000 - status.finished < 3) {
      if (status.error) toast("The demo stopped: " + status.error, "warn"); else toast("Demo ready: try Alice's chat");
    }
  }
}

// ------------------------------------------------------------------------------------ wiring

function wire() {
  const input = $("composer-input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    $("command-popup").hidden = true;
    const problem = textTooLong(text);
    if (problem) { showComposerNote(problem); return; }  // nothing is sent, and the text stays
    showComposerNote("");
    input.value = "";
    autosize();
    sendText(text).then((sent) => {
      if (!sent && !input.value) { input.value = text; autosize(); }  // not lost when sending failed
    });
  });
  input.addEventListener("input", () => {
    app.commandIndex = 0;
    autosize();
    showCommands();
    scheduleInlineQuery();
    showComposerNote(textTooLong(input.value));
  });
  input.addEventListener("keydown", (event) => {
    const popup = $("command-popup");
    if (!popup.hidden) {
      const matches = JSON.parse(popup.dataset.matches || "[]");
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        app.commandIndex = (app.commandIndex + (event.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length;
        showCommands(!input.value.startsWith("/"));
        return;
      }
      if (event.key === "Tab" || (event.key === "Enter" && !event.shiftKey && matches.length)) {
        event.preventDefault();
        const chosen = app.commands.find((c) => c.command === matches[app.commandIndex]);
        if (event.key === "Tab") { input.value = "/" + chosen.command + " "; popup.hidden = true; }
        else chooseCommand(chosen);
        return;
      }
      if (event.key === "Escape") { popup.hidden = true; return; }
    }
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("blur", () => setTimeout(() => {
    $("command-popup").hidden = true;
    $("inline-results").hidden = true;
  }, 150));
  $("menu-button").addEventListener("click", async () => {
    await loadMenuButton();  // the bot may have changed it since (after /language, say)
    if (app.menuButton.type === "web_app") {
      openMiniApp({menu_button: true}, app.menuButton.text);
      return;
    }
    await loadCommands();
    if ($("command-popup").hidden) { app.commandIndex = 0; showCommands(true); } else $("command-popup").hidden = true;
  });
  $("attach-button").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) sendFile(file);
  });
  $("location-button").addEventListener("click", openLocationDialog);
  $("keyboard-toggle").addEventListener("click", () => {
    const chat = chatOf(app.active);
    chat.keyboardHidden = !chat.keyboardHidden;
    renderReplyKeyboard();
  });
  $("grid").addEventListener("click", gridClick);
  $("messages").addEventListener("scroll", () => { app.pinned = nearBottom(); }, {passive: true});
  for (const id of ["lat-input", "lon-input"]) {
    $(id).addEventListener("change", () => {
      const lat = Number($("lat-input").value), lon = Number($("lon-input").value);
      if (Number.isFinite(lat) && Number.isFinite(lon)) setGrid(app.grid.center || app.config.places[0], lat, lon);
    });
  }
  $("location-dialog").addEventListener("close", () => {
    if ($("location-dialog").returnValue !== "send") return;
    const lat = Number($("lat-input").value), lon = Number($("lon-input").value);
    if (Number.isFinite(lat) && Number.isFinite(lon)) sendLocation(lat, lon);
  });
  $("panel-toggle").addEventListener("click", () => togglePanel());
  $("mini-app-close").addEventListener("click", closeMiniApp);
  $("qr-scan-typed").addEventListener("click", () => scanned($("qr-input").value.trim()));
  $("qr-input").addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();  // Enter scans what was typed; it does not close the scanner
    scanned($("qr-input").value.trim());
  });
  $("qr-dialog").addEventListener("close", () => {
    if ($("qr-dialog").returnValue !== "app") toMiniApp("scan_qr_popup_closed");  // the person closed it
    $("qr-dialog").returnValue = "";
  });
  $("mini-app-back").addEventListener("click", () => toMiniApp("back_button_pressed"));
  $("mini-app-main").addEventListener("click", () => toMiniApp("main_button_pressed"));
  window.addEventListener("message", fromMiniApp);
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      app.panelTab = tab.dataset.tab;
      for (const other of document.querySelectorAll(".tab")) other.classList.toggle("active", other === tab);
      refreshPanel();
    });
  }
  setInterval(() => { if (app.panelTab === "tasks") refreshPanel(); }, 3000);
  $("demo-button").addEventListener("click", startDemo);
}

async function main() {
  wire();
  const config = await api("/web/config");
  app.config = config;
  app.bot = config.bot;
  app.personas = config.personas;
  if (config.time_zone) useTimeZone(config.time_zone);
  $("bot-name").textContent = config.bot.first_name;
  document.title = `${config.bot.first_name} · Telegram sandbox`;
  const params = new URLSearchParams(window.location.search);
  // ?user=<id>&name=<first name>&role=<label>: play any other Telegram user too.
  const extra = Number(params.get("user"));
  if (Number.isSafeInteger(extra) && extra > 0 && !app.personas.some((p) => p.id === extra)) {
    app.personas.push({id: extra, first_name: params.get("name") || `User ${extra}`, last_name: null,
                       role: params.get("role") || "guest", description: "Opened with ?user=" + extra,
                       language_code: params.get("lang") || "en"});
  }
  for (const persona of app.personas) chatOf(persona.id);
  await ensureUsers();
  const wanted = extra || Number(params.get("persona"));
  const first = app.personas.find((p) => p.id === wanted) || app.personas[0];
  if (localStorage.getItem("sandbox.panel") === "1" || params.has("panel")) togglePanel(true);
  await selectPersona(first.id);
  connect();
  followDemo();
}

main().catch(fail);
