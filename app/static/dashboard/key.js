// Batchline dashboard, the API key: asked for once in a small form, kept in this tab's
// sessionStorage and sent as `Authorization: Bearer` by api() (draw.js); a 401 asks again.
"use strict";

// The API key lives in this tab's sessionStorage only: never in a URL, a cookie or the page's text.
const KEY_STORAGE = "batchline.apiKey";

function storedKey() {
  try { return window.sessionStorage.getItem(KEY_STORAGE); } catch (_) { return null; }
}

function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
    else window.sessionStorage.removeItem(KEY_STORAGE);
  } catch (_) { /* storage disabled: the key is asked for again */ }
}

function askForKey(detail) {
  // Called on a 401: forget the refused key, hide what the last key showed and stop polling until a key is entered.
  const refused = storedKey();
  storeKey(null);
  state.needKey = true;
  clearTimeout(state.timer);
  $("content").hidden = true;
  // What the last key showed is not for whoever enters the next one.
  state.selected = null;
  $("detail").hidden = true;
  for (const id of ["running", "recent"]) $(id).replaceChildren();
  $("dead").tBodies[0].replaceChildren();
  $("forget-key").hidden = true;
  $("updated").textContent = "API key needed";
  showError(null);
  $("key-note").textContent = refused ? `That API key was refused: ${detail}` : detail;
  $("key-form").hidden = false;
  $("key-input").focus();
}

function useKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  $("key-input").value = "";  // the key stays out of the page once it is in session storage
  if (!key) return;
  storeKey(key);
  state.needKey = false;
  $("key-form").hidden = true;
  $("updated").textContent = "loading…";
  act(async () => {});
}

function failed(error) {
  if (error instanceof HttpError && error.status === 401) askForKey(error.message);
  else { showError(error.message); $("content").hidden = false; }
}

