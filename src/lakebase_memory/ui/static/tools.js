// Tool calls in the conversation: one collapsed <details> per call, its summary the tool's
// name; opened, it shows the call's arguments and the tool's result. Built the same way from
// the stream (as the call arrives, app.js) and from a thread's history (`threadViews`).
"use strict";

function toolView(name, callId) {
  const args = el("pre", { class: "tool-args" });
  const output = el("pre", { class: "tool-output", text: "…" });
  const status = el("span", { class: "tool-status", text: "running…" });
  const view = el("details", { class: "tool-call", "data-call-id": callId || "",
    "data-state": "running" }, [
    el("summary", {}, [el("span", { class: "tool-name", text: name || "tool" }), status]),
    el("div", { class: "tool-label", text: "Arguments" }), args,
    el("div", { class: "tool-label", text: "Result" }), output,
  ]);
  return view;
}

// Arguments as the stream delivers them (pieces of JSON text), then whole: shown indented
// when they parse, verbatim otherwise.
function appendToolArguments(view, delta) {
  view.querySelector(".tool-args").textContent += delta;
}

function setToolArguments(view, args) {
  let text = typeof args === "string" ? args : JSON.stringify(args ?? {});
  try {
    text = JSON.stringify(JSON.parse(text), null, 2);
  } catch (_) { /* not JSON: shown as it came */ }
  view.querySelector(".tool-args").textContent = text;
}

function setToolOutput(view, output, failed = false) {
  view.querySelector(".tool-output").textContent = output ?? "";
  view.dataset.state = failed ? "error" : "done";
  view.querySelector(".tool-status").textContent = failed ? "failed" : "";
}

// A call the stream ended without a result for (a tool the client runs, or a cut-off answer).
function settleToolView(view) {
  if (view.dataset.state !== "running") return;
  view.dataset.state = "pending";
  view.querySelector(".tool-status").textContent = "no result";
  view.querySelector(".tool-output").textContent = "(no result in this answer)";
}

// A thread's messages as the conversation shows them: an answer is the model's messages of a
// turn together, their tool calls (each with its result) and texts in order, voted on as
// its last text. A model message starts a new answer unless the one before was a tool's.
function threadViews(messages) {
  const views = [];
  const answers = [];
  let answer = null;
  const start = () => {
    answer = { view: el("div", { class: "msg assistant" }), calls: new Map(), open: false,
      last: null };
    views.push(answer.view);
    answers.push(answer);
  };
  for (const m of messages) {
    if (m.role === "user") {
      answer = null;
      if (m.content) views.push(messageView("user", m.content));
    } else if (m.role === "assistant") {
      const calls = m.tool_calls || [];
      if (!m.content && !calls.length) continue;
      if (!answer || !answer.open) start();
      if (m.content) {
        const bubble = el("div", { class: "bubble" });
        renderMarkdown(bubble, m.content);
        answer.view.append(bubble);
        answer.last = m;
      }
      for (const call of calls) {
        const view = toolView(call.name, call.call_id);
        setToolArguments(view, call.arguments);
        answer.view.append(view);
        answer.calls.set(call.call_id, view);
      }
      answer.open = calls.length > 0;
    } else if (m.role === "tool") {
      if (!answer) start();
      let view = answer.calls.get(m.call_id);
      if (!view) {
        view = toolView(m.name, m.call_id);
        answer.view.append(view);
      }
      setToolOutput(view, m.content, m.status === "error");
      answer.open = true; // after a tool's result the model goes on in the same answer
    }
  }
  for (const done of answers) {
    done.view.querySelectorAll(".tool-call").forEach(settleToolView);
    if (done.last && done.last.id) done.view.append(voteButtons(done.last));
  }
  return views;
}
