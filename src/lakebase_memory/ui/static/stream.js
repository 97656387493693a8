// An answer's events, painted into its view as they arrive. Every turn the page starts runs
// in the background on the server (`background: true`), so an answer is never tied to one
// connection: a cut stream is picked up again where it stopped (`GET /responses/{id}?stream=
// true&starting_after=N`), and a reloaded page reattaches to a chat's running answer
// (`active_response` of GET /api/threads/{id}) and replays it from its first event.
"use strict";

const RESUME_ATTEMPTS = 5; // a cut stream is resumed this many times, a second apart at most

function responsePath(id) {
  return `/responses/${encodeURIComponent(id)}`;
}

// The painter keeps what it has shown (text, tool calls, the last event's number) across
// every stream it reads for one answer.
function answerPainter(view, adopt) {
  const progress = { responseId: null, lastSequence: -1, threadId: null, messageId: null };
  let bubble = view.querySelector(".bubble"); // the text being streamed
  let text = "";
  let pending = false;
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
  // One event; a result object ends the answer.
  const apply = (event) => {
    if (typeof event.sequence_number === "number") {
      if (event.sequence_number <= progress.lastSequence) return null; // seen before a cut
      progress.lastSequence = event.sequence_number;
    }
    const response = event.response;
    if (response?.id && !progress.responseId) progress.responseId = response.id;
    const threadId = event.custom_outputs?.thread_id ?? response?.custom_outputs?.thread_id;
    if (threadId && threadId !== progress.threadId) {
      progress.threadId = threadId;
      adopt(threadId);
    }
    if (event.type === "error") return { error: event.error };
    if (event.type === "response.failed") {
      return { error: response?.error?.message || "The answer failed." };
    }
    if (event.type === "response.cancelled") return { cancelled: true };
    const item = event.item;
    if (event.type === "response.output_item.done" && item?.type === "message") {
      progress.messageId = item.message_id ?? progress.messageId;
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
      view.dataset.deltas = String(Number(view.dataset.deltas || "0") + 1);
      if (!pending) { pending = true; requestAnimationFrame(paint); }
    }
    return null;
  };
  // Reads one SSE stream: a result on [DONE] or an ending event; null if it was cut.
  const read = async (response) => {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let ended = null;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (_) {
        break; // the connection broke
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!frame.startsWith("data: ")) continue;
        const data = frame.slice(6);
        if (data === "[DONE]") {
          paint();
          return ended || { done: true };
        }
        ended = ended || apply(JSON.parse(data));
      }
    }
    paint();
    return ended;
  };
  return { progress, read, paint };
}

// Reads `first` (a stream's response), then, while the answer is unfinished, resumes it from
// its last event. The result: { done | cancelled | error }, with the painter's progress.
async function followAnswer(painter, first) {
  let response = first;
  for (let attempt = 0; ; attempt += 1) {
    if (!response) {
      const id = painter.progress.responseId;
      if (!id || attempt > RESUME_ATTEMPTS) {
        return { error: "The answer was cut off: the connection ended early." };
      }
      if (first || attempt > 1) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 100 * 2 ** attempt)));
      }
      const params = new URLSearchParams({ stream: "true" });
      const seen = painter.progress.lastSequence;
      if (seen >= 0) params.set("starting_after", String(seen));
      try {
        response = await fetch(`${responsePath(id)}?${params}`);
        if (!response.ok) {
          const error = await errorFrom(response);
          if (error.status === 404) return { error: error.message };
          response = null;
          continue;
        }
      } catch (_) {
        response = null; // the server is not reachable yet: try again
        continue;
      }
    }
    const outcome = await painter.read(response);
    if (outcome) return outcome;
    response = null;
  }
}

// Stops the answer being streamed (POST /responses/{id}/cancel); its stream then ends with
// `response.cancelled`, and what was said so far stays.
async function cancelAnswer(painter) {
  const id = painter.progress.responseId;
  if (!id) return;
  try {
    await api(`${responsePath(id)}/cancel`, { method: "POST" });
  } catch (error) {
    if (error.status !== 409) alert(`Stop failed: ${error.message}`); // 409: already over
  }
}
