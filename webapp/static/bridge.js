// The Telegram Mini App bridge, in plain JS (no SDK, nothing from a CDN).
//
// * window.Telegram.WebApp, when Telegram's own script put one on the page, is used as it is.
// * Otherwise the app speaks Telegram's Mini App protocol itself: the launch parameters are in the
//   page's address (#tgWebAppData=…&tgWebAppThemeParams=…); methods go to the Telegram client
//   (window.TelegramWebviewProxy.postEvent in the mobile and desktop apps, postMessage to the parent
//   frame in the web apps) and events come back (window.Telegram.WebView.receiveEvent, or a message
//   from the parent frame): https://core.telegram.org/api/web-events. The sandbox's web chat is
//   such a parent frame.
// * Opened in a tab of its own, the page draws its own Back and Main buttons.
"use strict";

window.Bridge = (function () {
  const sdk = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData
    ? window.Telegram.WebApp : null;
  const launch = new URLSearchParams(window.location.hash.slice(1));
  const native = !sdk && !!launch.get("tgWebAppData") && (!!window.TelegramWebviewProxy || window.parent !== window);
  const handlers = { back: null, main: null, qr: null };
  let theme = {};

  function initData() {
    return sdk ? sdk.initData : (launch.get("tgWebAppData") || "");
  }

  function postEvent(eventType, eventData) {
    if (window.TelegramWebviewProxy) {
      window.TelegramWebviewProxy.postEvent(eventType, JSON.stringify(eventData === undefined ? {} : eventData));
    } else {
      window.parent.postMessage(JSON.stringify({ eventType, eventData }), "*");
    }
  }

  function receiveEvent(eventType, eventData) {
    if (eventType === "back_button_pressed" && handlers.back) handlers.back();
    else if (eventType === "main_button_pressed") pressMain();
    else if (eventType === "theme_changed" && eventData && eventData.theme_params) applyTheme(eventData.theme_params);
    else if (eventType === "qr_text_received" && eventData && typeof eventData.data === "string") qrRead(eventData.data);
    else if (eventType === "scan_qr_popup_closed") handlers.qr = null;
  }

  function applyTheme(params) {
    theme = params || {};
    const style = document.documentElement.style;
    for (const [key, value] of Object.entries(theme)) {
      if (typeof value === "string" && /^#[0-9a-fA-F]{3,8}$/.test(value)) {
        style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), value);
      }
    }
  }

  function launchTheme() {
    if (sdk) return sdk.themeParams || {};
    try { return JSON.parse(launch.get("tgWebAppThemeParams") || "{}"); } catch (e) { return {}; }
  }

  // ------------------------------------------------------------------ BackButton

  function showBack(label, handler) {
    handlers.back = handler;
    if (sdk && sdk.BackButton) sdk.BackButton.show();
    else if (native) postEvent("web_app_setup_back_button", { is_visible: true });
    else { const button = document.getElementById("back"); button.textContent = label; button.hidden = false; }
  }

  function hideBack() {
    handlers.back = null;
    if (sdk && sdk.BackButton) sdk.BackButton.hide();
    else if (native) postEvent("web_app_setup_back_button", { is_visible: false });
    else document.getElementById("back").hidden = true;
  }

  // ------------------------------------------------------------------ MainButton

  function setMain(text, active) {
    if (sdk && sdk.MainButton) {
      sdk.MainButton.setText(text);
      sdk.MainButton.show();
      if (active) sdk.MainButton.enable(); else sdk.MainButton.disable();
    } else if (native) {
      postEvent("web_app_setup_main_button", { is_visible: true, is_active: active, is_progress_visible: !active,
        text, color: theme.button_color, text_color: theme.button_text_color });
    } else {
      const button = document.getElementById("main-button");
      button.textContent = text;
      button.disabled = !active;
      document.getElementById("main-button-bar").hidden = false;
    }
  }

  let mainText = "";
  function showMain(text, handler) {
    handlers.main = handler;
    mainText = text;
    setMain(text, true);
  }

  function hideMain() {
    handlers.main = null;
    if (sdk && sdk.MainButton) sdk.MainButton.hide();
    else if (native) postEvent("web_app_setup_main_button", { is_visible: false });
    else document.getElementById("main-button-bar").hidden = true;
  }

  function pressMain() {
    const handler = handlers.main;
    if (!handler) return;
    setMain(mainText, false); // one press, one action: the handler sets the button again
    handler();
  }

  // ------------------------------------------------------------------ QR scanner (Bot API 6.4+)

  // Telegram's own scanner: Telegram.WebApp.showScanQrPopup, or the web_app_open_scan_qr_popup event;
  // every code it reads comes back (qrTextReceived / qr_text_received) until `onText` returns true,
  // which closes it. It came with Bot API 6.4 and only Telegram's phone apps have it: Telegram Web
  // (web, weba, webk) and the desktop apps (tdesktop, macos) open no camera, so there the app does
  // not offer it (the page asks for the typed code instead). A page in a tab of its own has none.
  const SCANNER_PLATFORMS = ["android", "android_x", "ios"];

  function versionAtLeast(wanted) {
    if (sdk && typeof sdk.isVersionAtLeast === "function") return sdk.isVersionAtLeast(wanted);
    const have = String(launch.get("tgWebAppVersion") || "6.0").split(".").map(Number);
    const need = wanted.split(".").map(Number);
    for (let i = 0; i < Math.max(have.length, need.length); i++) {
      const a = have[i] || 0, b = need[i] || 0;
      if (a !== b) return a > b;
    }
    return true;
  }

  function platform() {
    return (sdk ? sdk.platform : launch.get("tgWebAppPlatform")) || "unknown";
  }

  function canScanQr() {
    if (!sdk && !native) return false;
    return versionAtLeast("6.4") && SCANNER_PLATFORMS.includes(platform());
  }

  function qrRead(text) {
    const handler = handlers.qr;
    if (handler && handler(text) === true) closeScanQr();
  }

  function scanQr(text, onText) {
    handlers.qr = onText;
    if (sdk) {
      sdk.showScanQrPopup({ text }, (read) => {
        const done = onText(read) === true;
        if (done) handlers.qr = null;
        return done; // true closes Telegram's scanner
      });
    }
    else if (native) postEvent("web_app_open_scan_qr_popup", { text });
  }

  function closeScanQr() {
    handlers.qr = null;
    if (sdk) sdk.closeScanQrPopup();
    else if (native) postEvent("web_app_close_scan_qr_popup");
  }

  function openLink(url) {
    if (sdk && sdk.openLink) sdk.openLink(url);
    else if (native) postEvent("web_app_open_link", { url });
    else window.open(url, "_blank", "noopener");
  }

  function start() {
    applyTheme(launchTheme());
    document.getElementById("back").addEventListener("click", () => handlers.back && handlers.back());
    document.getElementById("main-button").addEventListener("click", pressMain);
    if (sdk) {
      sdk.ready();
      sdk.expand();
      if (sdk.BackButton) sdk.BackButton.onClick(() => handlers.back && handlers.back());
      if (sdk.MainButton) sdk.MainButton.onClick(pressMain);
      if (sdk.onEvent) sdk.onEvent("themeChanged", () => applyTheme(sdk.themeParams));
      if (sdk.onEvent) sdk.onEvent("scanQrPopupClosed", () => { handlers.qr = null; });
    } else if (native) {
      window.Telegram = window.Telegram || {};
      window.Telegram.WebView = { receiveEvent };
      window.addEventListener("message", (event) => {
        if (event.source !== window.parent) return;
        let message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message && typeof message.eventType === "string") receiveEvent(message.eventType, message.eventData);
      });
      postEvent("web_app_ready");
      postEvent("web_app_expand");
    }
  }

  return { initData, start, showBack, hideBack, showMain, hideMain, openLink, canScanQr, scanQr, closeScanQr };
})();
