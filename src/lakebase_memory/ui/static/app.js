// The chat UI: a sidebar of the user's threads and one conversation, streamed over SSE.
// Everything lives on the server (PostgreSQL); the page keeps only the selected thread id,
// in the URL hash, so a reload or a server restart shows the same conversation.
// Helpers are in common.js, tool calls and a thread's answers in tools.js, the memory panel
// in memory.js.
"use strict";

const state = { threadId: null, threads: [], nextCursor: null, busy: false };

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

async function answer(text) {
  state.busy = true;
  $("send").disabled = true;
  const box = $("messages");
  const view = el("div", { class: "msg assistant streaming" }, [el("div", { class: "bubble" })]);
  view.dataset.deltas = "0";
  box.append(view);
  box.scrollTop = box.scrollHeight;
  const fail = (message) => {
    view.classList.remove("streaming");
    for (const bubble of view.querySelectorAll(".bubble")) {
      if (!bubble.textContent) bubble.remove();
    }
    view.append(errorView(message, () => { view.remove(); answer(text); }));
  };
  try {
    const body = { input: [{ role: "user", content: text }], stream: true };
    if (state.threadId) body.custom_inputs = { thread_id: state.threadId };
    const response = await fetch("/responses", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) throw await errorFrom(response);
    const sentFrom = state.threadId;
    const outcome = await readStream(response, view, (threadId) => {
      // A new chat learns its id from the stream; a user who opened another chat meanwhile
      // stays where they are.
      if (state.threadId === sentFrom && threadId !== sentFrom) {
        state.threadId = threadId;
        history.replaceState(null, "", `#/chat/${encodeURIComponent(threadId)}`);
      }
    });
    view.querySelectorAll(".tool-call").forEach(settleToolView);
    if (outcome.error) fail(outcome.error);
    else {
      view.classList.remove("streaming");
      const bubbles = view.querySelectorAll(".bubble");
      const lastBubble = bubbles[bubbles.length - 1];
      if (bubbles.length > 1 && !lastBubble.textContent) lastBubble.remove();
      // The stream names the saved answer's id (`message_id`): votes need nothing else, so
      // the conversation is not read back.
      if (outcome.messageId) {
        view.append(voteButtons({ id: outcome.messageId, vote: null }, outcome.threadId));
      }
      await loadThreads();
      const saved = state.threads.find((thread) => thread.id === outcome.threadId);
      if (saved && state.threadId === outcome.threadId) $("chat-title").textContent = saved.title;
    }
  } catch (error) {
    const message = error instanceof TypeError
      ? `Network error: the server did not answer (${error.message}).` : error.message;
    fail(message);
  } finally {
    state.busy = false;
    $("send").disabled = false;
    refreshMemories(); // the turn may have saved or forgotten a memory, even if it failed
  }
}

async function readStream(response, view, adopt) {
  let bubble = view.querySelector(".bubble"); // the text being streamed
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let text = "";
  let pending = false;
  let streamThread = null;
  let messageId = null; // the answer's id for votes, from its finished message item
  const calls = new Map(); // a tool call's view, by its item id and by its call id
  const paint = () => {
    pending = false;
    renderMarkdown(bubble, text);
    $("messages").scrollTop = $("messages").scrollHeight;
  };
  // A tool call goes before the text still to come; after text already shown, the text that
  // follows it gets a bubble of its own.
  const addCall = (item) => {
    const call = toolView(item.name, item.call_id);
    if (!text) bubble.before(call);
    else {
      paint();
      bubble.after(call);
      bubble = el("div", { class: "bubble" });
      call.after(bubble);
      text = "";
    }
    calls.set(item.id, call);
    calls.set(item.call_id, call);
    return call;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!frame.startsWith("data: ")) continue;
      const data = frame.slice(6);
      if (data === "[DONE]") {
        paint();
        return { threadId: streamThread, messageId };
      }
      const event = JSON.parse(data);
      const threadId = event.custom_outputs?.thread_id ?? event.response?.custom_outputs?.thread_id;
      if (threadId && threadId !== streamThread) {
        streamThread = threadId;
        adopt(threadId);
      }
      if (event.type === "error") return { error: event.error };
      const item = event.item;
      if (event.type === "response.output_item.done" && item?.type === "message") {
        messageId = item.message_id ?? messageId;
      }
      if (item?.type === "function_call") {
        const call = calls.get(item.id) || addCall(item);
        if (event.type === "response.output_item.done") setToolArguments(call, item.arguments);
      }
      if (event.type === "response.function_call_arguments.delta" && calls.has(event.item_id)) {
        appendToolArguments(calls.get(event.item_id), event.delta);
      }
      if (event.type === "response.function_call_arguments.done" && calls.has(event.item_id)) {
        setToolArguments(calls.get(event.item_id), event.arguments);
      }
      if (item?.type === "function_call_output") {
        const call = calls.get(item.call_id) || addCall({ name: "tool", ...item, id: null });
        setToolOutput(call, item.output);
      }
      if (event.type === "response.output_text.delta") {
        text += event.delta;
        view.dataset.deltas = String(Number(view.dataset.deltas) + 1);
        if (!pending) { pending = true; requestAnimationFrame(paint); }
      }
    }
  }
  paint();
  // The connection ended without [DONE]: the answer was cut off.
  return { error: "The answer was cut off: the connection ended early." };
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
