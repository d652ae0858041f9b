// The Telegram Mini App bridge, in plain JS: window.Telegram.WebApp when Telegram's client provides
// it, else the launch parameters Telegram puts in the page's address (#tgWebAppData=…&
// tgWebAppThemeParams=…), which is also how the sandbox's web chat opens the app.
"use strict";

window.Bridge = (function () {
  const tg = window.Telegram && window.Telegram.WebApp && window.Telegram.WebApp.initData
    ? window.Telegram.WebApp : null;
  const launch = new URLSearchParams(window.location.hash.slice(1));

  function initData() {
    return tg ? tg.initData : (launch.get("tgWebAppData") || "");
  }

  function themeParams() {
    if (tg) return tg.themeParams || {};
    try { return JSON.parse(launch.get("tgWebAppThemeParams") || "{}"); } catch (e) { return {}; }
  }

  function applyTheme() {
    const theme = themeParams();
    const style = document.documentElement.style;
    for (const [key, value] of Object.entries(theme)) {
      if (typeof value === "string" && /^#[0-9a-fA-F]{3,8}$/.test(value)) {
        style.setProperty("--tg-theme-" + key.replace(/_/g, "-"), value);
      }
    }
  }

  // BackButton: Telegram's when there is one, else the page's own "⬅️ Back" in the header.
  let backHandler = null;
  const pageBack = () => document.getElementById("back");
  function showBack(label, handler) {
    backHandler = handler;
    if (tg && tg.BackButton) { tg.BackButton.show(); return; }
    const button = pageBack();
    button.textContent = label;
    button.hidden = false;
  }
  function hideBack() {
    backHandler = null;
    if (tg && tg.BackButton) { tg.BackButton.hide(); return; }
    pageBack().hidden = true;
  }
  function onBack() { if (backHandler) backHandler(); }

  // MainButton: Telegram's when there is one, else a button fixed at the bottom of the page.
  let mainHandler = null;
  function showMain(text, handler) {
    mainHandler = handler;
    if (tg && tg.MainButton) { tg.MainButton.setText(text); tg.MainButton.show(); tg.MainButton.enable(); return; }
    const button = document.getElementById("main-button");
    button.textContent = text;
    button.disabled = false;
    document.getElementById("main-button-bar").hidden = false;
  }
  function hideMain() {
    mainHandler = null;
    if (tg && tg.MainButton) { tg.MainButton.hide(); return; }
    document.getElementById("main-button-bar").hidden = true;
  }
  function onMain() {
    const handler = mainHandler;
    if (!handler) return;
    if (tg && tg.MainButton) tg.MainButton.disable(); else document.getElementById("main-button").disabled = true;
    handler();
  }

  function openLink(url) {
    if (tg && tg.openLink) tg.openLink(url); else window.open(url, "_blank", "noopener");
  }

  function start() {
    applyTheme();
    document.getElementById("back").addEventListener("click", onBack);
    document.getElementById("main-button").addEventListener("click", onMain);
    if (tg) {
      tg.ready();
      tg.expand();
      if (tg.BackButton) tg.BackButton.onClick(onBack);
      if (tg.MainButton) tg.MainButton.onClick(onMain);
      if (tg.onEvent) tg.onEvent("themeChanged", applyTheme);
    }
  }

  return { initData, start, showBack, hideBack, showMain, hideMain, openLink, inTelegram: !!tg };
})();
