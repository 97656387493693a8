// The chat UI: a sidebar of the user's threads and one conversation, streamed over SSE.
// Everything lives on the server (PostgreSQL); the page keeps only the selected thread id,
// in the URL hash, so a reload or a server restart shows the same conversation.
// Helpers are in common.js, reading an answer's stream (and resuming it) in stream.js, tool
// calls and a thread's answers in tools.js, the memory panel in memory.js.
"use strict";

// `painter`: the answer being streamed (stream.js), which the Stop button cancels.
const state = { threadId: null, threads: [], nextCursor: null, busy: false, painter: null };

function threadPath(id) {
  return `/api/threads/${encodeURIComponent(id)}`;
}

// --- sidebar -----------------------------------------------------------------------------

async function loadThreads(append = false) {
  const banner = $("chat-error");
  try {
    const params = new URLSearchParams({ limit: "30" });
    if (append && state.nextCursor) params.set("cursor", state.nextCursor);
    const page = await api(`/api/threads?${params}`);
    state.threads = append ? state.threads.concat(page.threads) : page.threads;
    state.nextCursor = page.next_cursor;
    banner.hidden = true;
  } catch (error) {
    banner.replaceChildren(
      el("span", { text: `Couldn't load your chats: ${error.message}` }),
      el("button", { type: "button", text: "Retry", onclick: () => loadThreads() }),
    );
    banner.hidden = false;
  }
  renderThreads();
}

function renderThreads() {
  const list = $("chat-list");
  list.replaceChildren(...state.threads.map(threadItem));
  $("more-chats").hidden = !state.nextCursor;
}

function threadItem(thread) {
  const item = el("li", { class: "chat-item", "data-thread-id": thread.id });
  if (thread.id === state.threadId) item.classList.add("active");
  const open = el("button", { type: "button", class: "open", title: thread.title,
    text: thread.title, onclick: () => selectThread(thread.id) });
  const rename = el("button", { type: "button", class: "icon rename", title: "Rename",
    "aria-label": "Rename", onclick: () => startRename(item, thread) }, [icon("pencil")]);
  const remove = el("button", { type: "button", class: "icon delete", title: "Delete",
    "aria-label": "Delete", onclick: () => deleteThread(thread) }, [icon("trash")]);
  item.append(open, rename, remove);
  return item;
}

function startRename(item, thread) {
  const input = el("input", { type: "text", value: thread.title, "aria-label": "Chat title",
    maxlength: "200" });
  let done = false;
  const finish = async (save) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (save && title && title !== thread.title) {
      try {
        await api(threadPath(thread.id), { method: "PATCH", body: JSON.stringify({ title }) });
        if (thread.id === state.threadId) $("chat-title").textContent = title;
      } catch (error) {
        alert(`Rename failed: ${error.message}`);
      }
    }
    await loadThreads();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); finish(true); }
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  item.replaceChildren(input);
  input.focus();
  input.select();
}

async function deleteThread(thread) {
  if (!confirm(`Delete "${thread.title}"? Its memory is erased too.`)) return;
  try {
    await api(threadPath(thread.id), { method: "DELETE" });
  } catch (error) {
    if (error.status !== 404) { alert(`Delete failed: ${error.message}`); return; }
  }
  if (thread.id === state.threadId) newChat();
  await loadThreads();
}

// --- conversation ------------------------------------------------------------------------

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("scrim").hidden = !(open || document.body.classList.contains("memory-open"));
}

function newChat() {
  state.threadId = null;
  history.replaceState(null, "", "#");
  $("chat-title").textContent = "New chat";
  $("messages").replaceChildren($("empty") || emptyNote());
  renderThreads();
  setSidebar(false);
  $("input").focus();
}

function emptyNote() {
  return el("div", { id: "empty", class: "empty" },
    [el("p", { text: "Ask anything. Every message is kept in PostgreSQL." })]);
}

async function selectThread(id) {
  state.threadId = id;
  history.replaceState(null, "", `#/chat/${encodeURIComponent(id)}`);
  renderThreads();
  setSidebar(false);
  const box = $("messages");
  try {
    const thread = await api(threadPath(id));
    $("chat-title").textContent = thread.title;
    box.replaceChildren(...threadViews(thread.messages));
    const active = thread.active_response;
    if (active && !state.busy && state.threadId === id) reattach(id, active);
  } catch (error) {
    if (error.status === 404) { newChat(); return; }
    box.replaceChildren(errorView(`Couldn't open this chat: ${error.message}`,
      () => selectThread(id)));
  }
  box.scrollTop = box.scrollHeight;
}

function messageView(role, text, saved = null) {
  const bubble = el("div", { class: "bubble" });
  const view = el("div", { class: `msg ${role}` }, [bubble]);
  if (role === "assistant") renderMarkdown(bubble, text);
  else bubble.textContent = text;
  if (role === "assistant" && saved && saved.id) view.append(voteButtons(saved));
  return view;
}

function voteButtons(message, threadId = state.threadId) {
  const up = el("button", { type: "button", class: "vote-up", title: "Good answer",
    "aria-label": "Good answer" }, [icon("up")]);
  const down = el("button", { type: "button", class: "vote-down", title: "Bad answer",
    "aria-label": "Bad answer" }, [icon("down")]);
  const show = (vote) => {
    up.setAttribute("aria-pressed", String(vote === true));
    down.setAttribute("aria-pressed", String(vote === false));
  };
  const cast = async (value) => {
    const next = message.vote === value ? null : value;
    const path = `${threadPath(threadId)}/messages/${encodeURIComponent(message.id)}/vote`;
    try {
      if (next === null) await api(path, { method: "DELETE" });
      else await api(path, { method: "PUT", body: JSON.stringify({ up: next }) });
      message.vote = next;
      show(next);
    } catch (error) {
      alert(`Vote failed: ${error.message}`);
    }
  };
  up.addEventListener("click", () => cast(true));
  down.addEventListener("click", () => cast(false));
  show(message.vote);
  return el("div", { class: "actions" }, [up, down]);
}

function errorView(message, retry) {
  const box = el("div", { class: "error", role: "alert" }, [el("span", { text: message })]);
  if (retry) box.append(el("button", { type: "button", class: "retry", text: "Retry",
    onclick: () => { box.remove(); retry(); } }));
  return box;
}

// --- sending -----------------------------------------------------------------------------

async function send(text) {
  if (state.busy || !text.trim()) return;
  $("empty")?.remove();
  const box = $("messages");
  box.append(messageView("user", text));
  await answer(text);
}

function answerView() {
  const box = $("messages");
  const view = el("div", { class: "msg assistant streaming" }, [el("div", { class: "bubble" })]);
  view.dataset.deltas = "0";
  box.append(view);
  box.scrollTop = box.scrollHeight;
  return view;
}

function setBusy(painter) {
  state.busy = painter !== null;
  state.painter = painter;
  $("send").disabled = state.busy;
  $("send").hidden = state.busy;
  $("stop").hidden = !state.busy;
}

function failAnswer(view, message, retry) {
  view.classList.remove("streaming");
  view.querySelectorAll(".tool-call").forEach(settleToolView);
  for (const bubble of view.querySelectorAll(".bubble")) {
    if (!bubble.textContent) bubble.remove();
  }
  view.append(errorView(message, retry));
}

async function answer(text) {
  const view = answerView();
  const sentFrom = state.threadId;
  const painter = answerPainter(view, (threadId) => {
    // A new chat learns its id from the stream; a user who opened another chat meanwhile
    // stays where they are.
    if (state.threadId === sentFrom && threadId !== sentFrom) {
      state.threadId = threadId;
      history.replaceState(null, "", `#/chat/${encodeURIComponent(threadId)}`);
    }
  });
  setBusy(painter);
  const retry = () => { view.remove(); answer(text); };
  try {
    // In the background: the answer goes on without this connection, which may be resumed.
    const body = { input: [{ role: "user", content: text }], stream: true, background: true };
    if (state.threadId) body.custom_inputs = { thread_id: state.threadId };
    const response = await fetch("/responses", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) throw await errorFrom(response);
    await settleAnswer(view, painter, await followAnswer(painter, response), retry);
  } catch (error) {
    const message = error instanceof TypeError
      ? `Network error: the server did not answer (${error.message}).` : error.message;
    failAnswer(view, message, retry);
  } finally {
    setBusy(null);
    refreshMemories(); // the turn may have saved or forgotten a memory, even if it failed
  }
}

// A chat opened (or the page reloaded) while its answer runs: show the answer from its
// first event, and the rest as it comes.
async function reattach(threadId, active) {
  // The turn's question: the thread has it only once the answer is saved.
  for (const item of active.input || []) {
    const text = typeof item.content === "string" ? item.content
      : (item.content || []).map((part) => part.text).join("");
    $("messages").append(messageView("user", text));
  }
  const view = answerView();
  const painter = answerPainter(view, () => {});
  painter.progress.responseId = active.id;
  setBusy(painter);
  const retry = () => { view.remove(); selectThread(threadId); };
  try {
    await settleAnswer(view, painter, await followAnswer(painter, null), retry);
  } finally {
    setBusy(null);
    refreshMemories();
  }
}

async function settleAnswer(view, painter, outcome, retry) {
  if (outcome.error) { failAnswer(view, outcome.error, retry); return; }
  view.querySelectorAll(".tool-call").forEach(settleToolView);
  view.classList.remove("streaming");
  const bubbles = view.querySelectorAll(".bubble");
  const lastBubble = bubbles[bubbles.length - 1];
  if (bubbles.length > 1 && !lastBubble.textContent) lastBubble.remove();
  if (outcome.cancelled) view.append(el("div", { class: "stopped", text: "Stopped." }));
  const { messageId, threadId } = painter.progress;
  // The stream names the saved answer's id (`message_id`): votes need nothing else, so the
  // conversation is not read back.
  if (messageId) view.append(voteButtons({ id: messageId, vote: null }, threadId));
  await loadThreads();
  const saved = state.threads.find((thread) => thread.id === threadId);
  if (saved && state.threadId === threadId) $("chat-title").textContent = saved.title;
}

// --- start -------------------------------------------------------------------------------

function threadFromHash() {
  const match = location.hash.match(/^#\/chat\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

document.addEventListener("DOMContentLoaded", async () => {
  const input = $("input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim() || state.busy) return;
    input.value = "";
    input.style.height = "";
    send(text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    input.style.height = "";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
  });
  $("stop").addEventListener("click", () => state.painter && cancelAnswer(state.painter));
  $("new-chat").addEventListener("click", newChat);
  $("more-chats").addEventListener("click", () => loadThreads(true));
  $("toggle-sidebar").addEventListener("click", () => setSidebar(true));
  $("scrim").addEventListener("click", () => { setSidebar(false); setMemoryPanel(false); });
  api("/api/me").then((me) => { $("whoami").textContent = me.user; }).catch(() => {});
  window.addEventListener("hashchange", () => {
    const id = threadFromHash();
    if (id && id !== state.threadId) selectThread(id);
    else if (!id && state.threadId) newChat();
  });
  await loadThreads();
  const id = threadFromHash();
  if (id) await selectThread(id);
  input.focus();
});
