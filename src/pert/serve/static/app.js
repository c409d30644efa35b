// The page of `pert serve`: one panel per loaded model, each calling the JSON API. No build step.
"use strict";

async function api(path, body) {
  const res = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                                 body: JSON.stringify(body)});
  const data = await res.json().catch(() => ({error: `HTTP ${res.status}`}));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

// Append `text` to `parent`, with the character spans [[a, b], ...] wrapped in <mark class=cls>.
function marked(parent, text, spans, cls) {
  parent.replaceChildren();
  let last = 0;
  for (const [a, b] of spans) {
    parent.append(text.slice(last, a));
    const m = document.createElement("mark");
    if (cls) m.className = cls;
    m.textContent = text.slice(a, b);
    parent.append(m);
    last = b;
  }
  parent.append(text.slice(last));
}

function guard(task, button, fn) {
  const error = document.getElementById(`${task}-error`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    error.hidden = true;
    try {
      await fn();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

const setup = {
  qa() {
    guard("qa", document.getElementById("qa-submit"), async () => {
      const question = document.getElementById("qa-question").value;
      const context = document.getElementById("qa-context").value;
      const {answers: [a]} = await api("/v1/qa", {question, context});
      document.getElementById("qa-answer").textContent = a.text || "(no answer)";
      document.getElementById("qa-score").textContent = a.score.toFixed(4);
      marked(document.getElementById("qa-highlight"), context, a.start >= 0 ? [[a.start, a.end]] : []);
      document.getElementById("qa-result").hidden = false;
    });
  },
  wor() {
    guard("wor", document.getElementById("wor-submit"), async () => {
      const sentence = document.getElementById("wor-input").value;
      const {restorations: [r]} = await api("/v1/restore", {sentences: [sentence]});
      marked(document.getElementById("wor-marked"), r.input, r.input_moved, "moved");
      marked(document.getElementById("wor-output"), r.text, r.moved);
      document.getElementById("wor-result").hidden = false;
    });
  },
  perlm() {
    guard("perlm", document.getElementById("perlm-submit"), async () => {
      const sentence = document.getElementById("perlm-input").value;
      const seed = parseInt(document.getElementById("perlm-seed").value, 10) || 0;
      const ratio = parseFloat(document.getElementById("perlm-ratio").value);
      const r = await api("/v1/perlm", {sentence, top_k: 3, shuffle: {seed, select_ratio: ratio,
                                                                     max_predictions: sentence.length + 2}});
      const movedSpans = r.shuffled_spans.filter((_, k) => r.permutation[k] !== k);
      marked(document.getElementById("perlm-shuffled"), r.shuffled_text, movedSpans, "moved");
      const pct = (x) => (100 * x).toFixed(1) + "%";
      document.getElementById("perlm-summary").textContent =
        `${r.moved} of ${r.tokens.length} tokens moved; the top guess is right for ` +
        (r.moved ? pct(r.moved_accuracy) + " of the moved tokens and " : "") + pct(r.accuracy) + " of all.";
      const body = document.querySelector("#perlm-table tbody");
      body.replaceChildren();
      r.positions.forEach((p, i) => {
        const tr = document.createElement("tr");
        if (p.moved) tr.className = "moved";
        const guesses = p.guesses.map((g) => `${g.token}@${g.position} ${pct(g.probability)}`).join(", ");
        for (const [text, cls] of [[i, ""], [p.token, ""], [p.truth, ""], [guesses, "guesses"],
                                   [p.correct ? "✓" : "✗", p.correct ? "ok" : "bad"]]) {
          const td = document.createElement("td");
          td.textContent = text;
          if (cls) td.className = cls;
          tr.append(td);
        }
        body.append(tr);
      });
      document.getElementById("perlm-result").hidden = false;
    });
  },
};

async function main() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/v1/models");
    const {models} = await res.json();
    const panels = document.getElementById("panels");
    for (const m of models) {
      const node = document.getElementById(`tpl-${m.task}`).content.cloneNode(true);
      node.querySelector(".model").textContent = m.name;
      panels.append(node);
      setup[m.task]();
    }
    status.textContent = `${models.length} model(s) loaded: ` + models.map((m) => `${m.task} (${m.name})`).join(", ");
    document.body.dataset.ready = "1";
  } catch (e) {
    status.textContent = `could not list the models: ${e.message}`;
  }
}

main();
