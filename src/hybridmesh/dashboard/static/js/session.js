// The API token of this tab. sessionStorage: it is gone when the tab closes, is not shared
// with other tabs, and is never sent by the browser on its own (unlike a cookie).

const KEY = "hybridmesh.token";

export function getToken() {
  return sessionStorage.getItem(KEY);
}

export function setToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
}
