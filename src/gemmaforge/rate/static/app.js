// The rating page. Responses are untrusted model output: they are rendered by building DOM nodes
// with createElement and text nodes only (this file never parses text as HTML), so markup in a
// response shows as text and nothing in it can run.
"use strict";

// --- a small, safe markdown renderer: fenced code, headings, lists, quotes, paragraphs, inline code,
// bold and italic. Links and images are left as their literal text.
// (underscores inside words, as in snake_case or __dunder__ names, are text, as in CommonMark)
const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*]+)\*\*|(?<!\w)__([^_]+)__(?!\w)|\*([^*\s][^*]*)\*|(?<!\w)_([^_\s][^_]*)_(?!\w)/;

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function inline(parent, text) {
  while (text) {
    const m = INLINE.exec(text);
    if (!m) { parent.append(document.createTextNode(text)); return; }
    if (m.index) parent.append(document.createTextNode(text.slice(0, m.index)));
    if (m[1]) parent.append(el("code", null, m[2]));
    else if (m[3] || m[4]) inline(parent.appendChild(el("strong")), m[3] || m[4]);
    else inline(parent.appendChild(el("em")), m[5] || m[6]);
    text = text.slice(m.index + m[0].length);
  }
}

function renderMarkdown(container, text) {
  container.replaceChildren();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let i = 0, para = [], list = null;
  const flush = () => {
    if (para.length) inline(container.appendChild(el("p")), para.join("\n"));
    para = [];
    list = null;
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+#.-]*)/.exec(line);
    if (fence) {
      flush();
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      const pre = container.appendChild(el("pre"));
      const code = pre.appendChild(el("code", null, body.join("\n")));
      if (fence[2]) { code.dataset.lang = fence[2]; pre.dataset.lang = fence[2]; }
      i++;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line);
    const quote = /^\s*>\s?(.*)$/.exec(line);
    if (!line.trim()) flush();
    else if (heading) { flush(); inline(container.appendChild(el("h" + Math.min(6, heading[1].length + 2))), heading[2]); }
    else if (item) {
      const tag = /\d/.test(item[1]) ? "ol" : "ul";
      if (para.length) { inline(container.appendChild(el("p")), para.join("\n")); para = []; }
      if (!list || list.tagName.toLowerCase() !== tag) list = container.appendChild(el(tag));
      inline(list.appendChild(el("li")), item[2]);
    } else if (quote) { flush(); inline(container.appendChild(el("blockquote")), quote[1]); }
    else if (list && /^\s+\S/.test(line)) inline(list.lastChild, " " + line.trim());
    else { list = null; para.push(line); }
    i++;
  }
  flush();
  if (!container.childNodes.length) container.append(el("p", "empty", "(empty response)"));
}

// --- the page -------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const state = { rater: "", pair: null, busy: false };

function status(text, isError) {
  $("status").textContent = text || "";
  $("status").className = isError ? "error" : "";
}

function showProgress(p) {
  $("count").textContent = `${p.rated} / ${p.total} rated`;
  $("fill").style.width = p.total ? `${(100 * p.rated) / p.total}%` : "0";
}

function showPrompt(pair) {
  const box = $("prompt");
  box.replaceChildren(el("h2", null, "Prompt"));
  const turns = pair.messages || [{ role: "user", content: pair.prompt }];
  for (const t of turns) {
    const turn = box.appendChild(el("div", "turn " + t.role));
    if (turns.length > 1) turn.append(el("span", "role", t.role));
    renderMarkdown(turn.appendChild(el("div", "md")), t.content);
  }
}

async function call(url, options) {
  const res = await fetch(url, options);
  const body = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(body.error || `HTTP ${res.status}`);
  return body;
}

async function next() {
  const body = await call(`/api/next?rater=${encodeURIComponent(state.rater)}`);
  state.pair = body.pair;
  showProgress(body.progress);
  $("undo").hidden = !body.progress.rated;
  $("task").hidden = !body.pair;
  $("done").hidden = !!body.pair;
  if (!body.pair) return;
  showPrompt(body.pair);
  renderMarkdown($("left"), body.pair.left);
  renderMarkdown($("right"), body.pair.right);
  $("reason").value = "";
  window.scrollTo(0, 0);
}

async function choose(choice) {
  if (!state.pair || state.busy) return;
  state.busy = true;
  document.body.classList.add("busy");
  try {
    await call("/api/rate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater: state.rater, pair_id: state.pair.pair_id, choice, reason: $("reason").value }),
    });
    status("");
    await next();
  } catch (e) {
    status(e.message, true);
    if (/already rated/.test(e.message)) await next();
  } finally {
    state.busy = false;
    document.body.classList.remove("busy");
  }
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    await call("/api/undo", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ rater: state.rater }),
    });
    status("Your last rating was withdrawn: rate that pair again.");
    await next();
  } catch (e) {
    status(e.message, true);
  } finally {
    state.busy = false;
  }
}

async function start(name) {
  state.rater = name.trim();
  if (!state.rater) { status("Enter your name to start.", true); return; }
  localStorage.setItem("gemmaforge-rater", state.rater);
  history.replaceState(null, "", `?rater=${encodeURIComponent(state.rater)}`);
  status("");
  try { await next(); } catch (e) { status(e.message, true); }
}

const KEYS = { "1": "left", a: "left", "2": "right", b: "right", "3": "tie", t: "tie", "4": "both_bad", x: "both_bad" };

document.addEventListener("DOMContentLoaded", () => {
  $("who").addEventListener("submit", (e) => { e.preventDefault(); start($("rater").value); });
  for (const b of document.querySelectorAll("#choices button")) b.addEventListener("click", () => choose(b.dataset.choice));
  for (const id of ["undo", "undo-done"]) $(id).addEventListener("click", undo);
  document.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    if (e.key === "Escape" && typing) { e.target.blur(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key.toLowerCase() === "r" && state.pair) { e.preventDefault(); $("reason").focus(); return; }
    if (e.key.toLowerCase() === "u" && state.rater) { e.preventDefault(); undo(); return; }
    const choice = KEYS[e.key.toLowerCase()];
    if (choice) { e.preventDefault(); choose(choice); }
  });
  const name = new URLSearchParams(location.search).get("rater") || localStorage.getItem("gemmaforge-rater") || "";
  $("rater").value = name;
  if (name) start(name);
});
