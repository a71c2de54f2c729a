// The error banner under the top bar: one message at a time, until dismissed or replaced.

const banner = () => document.getElementById("banner");

/** Show `message` (and an optional list of details) in the banner. */
export function showBanner(message, details = []) {
  const node = banner();
  const text = document.getElementById("banner-text");
  text.replaceChildren(message);
  if (details.length) {
    const list = document.createElement("ul");
    for (const detail of details) {
      const item = document.createElement("li");
      item.textContent = detail;
      list.append(item);
    }
    text.append(list);
  }
  node.hidden = false;
}

export function clearBanner() {
  banner().hidden = true;
}

export function initBanner() {
  document.getElementById("banner-close").addEventListener("click", clearBanner);
}
