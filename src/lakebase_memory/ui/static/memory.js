// The memory panel, "What I remember": what the agent keeps about the user across chats
// (GET /api/memories), searchable, each memory with a button that forgets it. Read again
// when the panel opens and after every answer (the agent may have saved or forgotten one).
"use strict";

const memory = { open: false, nextOffset: null, items: [], timer: null, loading: 0 };
const MEMORY_PAGE = 50;

// Open or closed, the panel stays so across reloads (on a wide screen: on a phone it covers
// the chat, so it starts closed).
const MEMORY_OPEN_KEY = "lakebase-memory.memory-panel-open";
const WIDE = "(min-width: 721px)";

function setMemoryPanel(open) {
  memory.open = open;
  try { localStorage.setItem(MEMORY_OPEN_KEY, open ? "1" : "0"); } catch (_) { /* private */ }
  $("memory-panel").hidden = !open;
  $("toggle-memory").setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("memory-open", open);
  $("scrim").hidden = !(open || document.body.classList.contains("sidebar-open"));
  if (open) loadMemories();
}

// Only while the panel is open: a closed panel is read when it opens.
function refreshMemories() {
  if (memory.open) return loadMemories();
  return Promise.resolve();
}

async function loadMemories(append = false) {
  const ticket = ++memory.loading; // a slower, older answer never overwrites a newer one
  const banner = $("memory-error");
  const params = new URLSearchParams({ limit: String(MEMORY_PAGE) });
  const query = $("memory-search").value.trim();
  if (query) params.set("query", query);
  if (append && memory.nextOffset !== null) params.set("offset", String(memory.nextOffset));
  try {
    const page = await api(`/api/memories?${params}`);
    if (ticket !== memory.loading) return;
    memory.items = append ? memory.items.concat(page.memories) : page.memories;
    memory.nextOffset = page.next_offset;
    banner.hidden = true;
  } catch (error) {
    if (ticket !== memory.loading) return;
    banner.replaceChildren(
      el("span", { text: `Couldn't load what I remember: ${error.message}` }),
      el("button", { type: "button", text: "Retry", onclick: () => loadMemories() }),
    );
    banner.hidden = false;
  }
  renderMemories(query);
}

function renderMemories(query) {
  $("memory-list").replaceChildren(...memory.items.map(memoryItem));
  $("more-memories").hidden = memory.nextOffset === null;
  const empty = $("memory-empty");
  empty.textContent = query
    ? "No memory matches this search."
    : "Nothing yet. Tell me something to keep, e.g. “Remember that I prefer short answers.”";
  empty.hidden = memory.items.length > 0 || !$("memory-error").hidden;
  $("forget-all").hidden = memory.items.length === 0 || Boolean(query);
}

// A value of one text field (what the agent saves: {"fact": "…"}) shows as that text; any
// other as its fields, one a line.
function memoryText(value) {
  const entries = Object.entries(value || {});
  if (entries.length === 1 && typeof entries[0][1] === "string") return entries[0][1];
  return entries
    .map(([field, v]) => `${field}: ${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("\n");
}

function memoryItem(item) {
  const forget = el("button", { type: "button", class: "icon forget", title: "Forget this",
    "aria-label": `Forget ${item.key}`, onclick: () => forgetMemory(item) }, [icon("trash")]);
  return el("li", { class: "memory-item", "data-key": item.key }, [
    el("div", { class: "memory-text" }, [
      el("div", { class: "memory-key", text: item.key }),
      el("div", { class: "memory-value", text: memoryText(item.value) }),
    ]),
    forget,
  ]);
}

function memoryPath(key) {
  return `/api/memories/${encodeURIComponent(key)}`;
}

async function forgetMemory(item) {
  if (!confirm(`Forget "${item.key}"?`)) return;
  try {
    await api(memoryPath(item.key), { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) { alert(`Couldn't forget it: ${error.message}`); return; }
  }
  await loadMemories();
}

async function forgetEverything() {
  if (!confirm("Forget everything I remember about you? This cannot be undone.")) return;
  try {
    await api("/api/memories?confirm=all", { method: "DELETE" });
  } catch (error) {
    alert(`Couldn't forget: ${error.message}`);
  }
  await loadMemories();
}

document.addEventListener("DOMContentLoaded", () => {
  $("toggle-memory").addEventListener("click", () => setMemoryPanel(!memory.open));
  $("close-memory").addEventListener("click", () => setMemoryPanel(false));
  $("more-memories").addEventListener("click", () => loadMemories(true));
  $("forget-all").addEventListener("click", forgetEverything);
  $("memory-search").addEventListener("input", () => {
    clearTimeout(memory.timer);
    memory.timer = setTimeout(() => loadMemories(), 250);
  });
  let remembered = null;
  try { remembered = localStorage.getItem(MEMORY_OPEN_KEY); } catch (_) { /* private */ }
  if (remembered === "1" && window.matchMedia(WIDE).matches) setMemoryPanel(true);
});
