// The report's behaviour (inlined into index.html): tag and time filters, order, the photo viewer, and the
// review: the model's answer corrected per photo, kept in localStorage under the run's id, exported as
// reviewed.csv (the seed's CSV, as labels.csv) and review.json. Plain DOM, no network; text from the run's
// files (and from storage) is only ever moved as DOM nodes or set as textContent, never parsed as HTML.
(function () {
  "use strict";
  var main = document.getElementById("cards");
  var cards = Array.prototype.slice.call(main.querySelectorAll(".card"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".tag[data-tag]"));
  var from = document.getElementById("from");
  var to = document.getElementById("to");
  var untimed = document.getElementById("untimed");
  var unreviewed = document.getElementById("unreviewed");
  var sort = document.getElementById("sort");
  var shown = document.getElementById("shown");
  var selected = new Set();

  function all(root, selector) { return Array.prototype.slice.call(root.querySelectorAll(selector)); }
  function tagsOf(card) { return (card.dataset.tags || "").split(" ").filter(Boolean); }

  // --- the review's state: path -> {model, codes, reviewed, changes}; a Map, so that no photo name is special
  var data = document.getElementById("review-data");
  var runId = data.dataset.run;
  var header = JSON.parse(data.dataset.header);
  var keys = JSON.parse(data.dataset.keys);
  var storageKey = "lizaalert-review:" + runId;
  var toggles = all(document, "#review .toggle");
  var choices = all(document, "#review .choice");
  var storageState = document.getElementById("storage-state");
  var modelChips = new Map();
  var allowed = {};
  toggles.forEach(function (t) { allowed[t.dataset.key] = [0, 1]; });
  choices.forEach(function (g) {
    allowed[g.dataset.key] = all(g, "[data-code]").map(function (b) { return Number(b.dataset.code); });
  });
  var kept = new Map();  // stored entries this page cannot use (another spec): written back untouched
  var reviews = load();

  function now() { return new Date().toISOString(); }

  function modelCodes(card) {
    var list = JSON.parse(card.dataset.codes), out = {};
    keys.forEach(function (k, i) { out[k] = list[i]; });
    return out;
  }

  function ordered(codes) {  // the spec's order, whatever order storage kept
    var out = {};
    keys.forEach(function (k) { out[k] = codes[k]; });
    return out;
  }

  function usable(entry) {
    return !!entry && typeof entry === "object" && !!entry.codes && typeof entry.reviewed === "string" &&
      Array.isArray(entry.changes) && keys.every(function (k) { return allowed[k].indexOf(entry.codes[k]) >= 0; });
  }

  function warnStorage(text) {
    storageState.hidden = !text;
    storageState.textContent = text || "";
  }

  function load() {
    var stored = null, out = new Map();
    kept = new Map();
    try {
      stored = JSON.parse(window.localStorage.getItem(storageKey) || "null");
    } catch (e) {
      warnStorage("сохранённые исправления не прочитаны (" + e.name + ")");
    }
    var photos = stored && typeof stored.photos === "object" ? stored.photos : null;
    if (photos) {
      Object.keys(photos).forEach(function (path) {
        (usable(photos[path]) ? out : kept).set(path, photos[path]);
      });
    }
    return out;
  }

  function save() {
    var photos = {};  // defineProperty: a photo named "__proto__" is a key like any other
    [kept, reviews].forEach(function (map) {
      map.forEach(function (entry, path) { Object.defineProperty(photos, path, {value: entry, enumerable: true, configurable: true}); });
    });
    try {
      window.localStorage.setItem(storageKey, JSON.stringify({version: 1, run: runId, photos: photos}));
      warnStorage("");
    } catch (e) {
      warnStorage("браузер не сохраняет исправления (" + e.name + "): экспортируйте их до закрытия страницы");
    }
  }

  function changedKeys(card, entry) {
    var model = modelCodes(card);
    return keys.filter(function (k) { return entry.codes[k] !== model[k]; });
  }

  // the control that shows one attribute's value: its toggle, or the button of its value
  function control(key, code) {
    var toggle = toggles.filter(function (t) { return t.dataset.key === key; })[0];
    if (toggle) return code ? toggle : null;
    var group = choices.filter(function (g) { return g.dataset.key === key; })[0];
    return all(group, "[data-code]").filter(function (b) { return Number(b.dataset.code) === code; })[0];
  }

  // --- the grid: a reviewed photo shows its mark and the reviewed tags (filters and counts follow them) ---
  function refreshCard(card) {
    var entry = reviews.get(card.dataset.path);
    var mark = card.querySelector(".mark"), chips = card.querySelector(".chips");
    var fixed = entry ? changedKeys(card, entry) : [], wasReviewed = card.classList.contains("reviewed");
    card.classList.toggle("reviewed", !!entry);
    card.classList.toggle("corrected", fixed.length > 0);
    mark.hidden = !entry;
    mark.textContent = !entry ? "" : fixed.length ? "✓ исправлено: " + fixed.length : "✓ проверено";
    if (!entry && !wasReviewed) return;  // the model's chips and tags, as the page was made
    var codes = entry ? entry.codes : modelCodes(card), tokens = [];
    while (chips.firstChild) chips.removeChild(chips.firstChild);
    if (!entry) {
      Array.from(modelChips.get(card).children).forEach(function (chip) { chips.appendChild(chip.cloneNode(true)); });
    }
    keys.forEach(function (k) {
      var button = control(k, codes[k]);
      if (!button || !button.dataset.token) return;
      tokens.push(button.dataset.token);
      if (!entry) return;
      var chip = document.createElement("span");
      chip.className = "chip" + (button.classList.contains("toggle") ? " object" : "") + (fixed.indexOf(k) >= 0 ? " fixed" : "");
      chip.title = button.dataset.en + (fixed.indexOf(k) >= 0 ? " · исправлено" : "");
      chip.textContent = button.dataset.ru;
      chips.appendChild(chip);
    });
    if (entry && !tokens.length) {
      var none = document.createElement("span");
      none.className = "chip none";
      none.textContent = "ничего";
      chips.appendChild(none);
    }
    card.dataset.tags = tokens.join(" ");
  }

  function refreshCounts() {
    var counts = {}, done = 0;
    cards.forEach(function (card) {
      tagsOf(card).forEach(function (t) { counts[t] = (counts[t] || 0) + 1; });
      if (reviews.has(card.dataset.path)) done += 1;
    });
    buttons.forEach(function (b) {
      var n = counts[b.dataset.tag] || 0;
      b.querySelector(".n").textContent = String(n);
      b.classList.toggle("empty", n === 0);
    });
    document.getElementById("reviewed-count").textContent = String(done);
    document.getElementById("export").disabled = done === 0;
  }

  // A photo is shown when it has any selected tag (or none is selected), its capture time (local time, as
  // the camera wrote it) is inside the interval (without a time only with "без времени"), and, with
  // "не проверенные", it is not reviewed yet.
  function apply() {
    var lo = from.value, hi = to.value, count = 0;
    refreshCounts();
    cards.forEach(function (card) {
      var ok = selected.size === 0 || tagsOf(card).some(function (t) { return selected.has(t); });
      if (ok && (lo || hi)) {
        var t = (card.dataset.time || "").slice(0, 16);
        if (!t) ok = untimed.checked;
        else ok = (!lo || t >= lo) && (!hi || t <= hi);
      }
      if (ok && unreviewed.checked) ok = !reviews.has(card.dataset.path);
      card.hidden = !ok;
      if (ok) count += 1;
    });
    shown.textContent = "показано " + count + " из " + cards.length;
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      var tag = button.dataset.tag;
      if (selected.has(tag)) selected.delete(tag); else selected.add(tag);
      button.setAttribute("aria-pressed", selected.has(tag) ? "true" : "false");
      apply();
    });
  });
  [from, to, untimed, unreviewed].forEach(function (input) { input.addEventListener("change", apply); });
  document.getElementById("reset").addEventListener("click", function () {
    selected.clear();
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    from.value = ""; to.value = ""; untimed.checked = false; unreviewed.checked = false;
    apply();
  });

  // "сначала неуверенные": the smallest decision margin first (the report computed it from the served scores)
  sort.addEventListener("change", function () {
    var key = sort.value;
    var sorted = cards.slice().sort(function (a, b) {
      if (key === "order") return a.dataset.order - b.dataset.order;
      if (key === "uncertain") return (a.dataset.margin - b.dataset.margin) || (a.dataset.order - b.dataset.order);
      var x = key === "time" ? (a.dataset.time || "\uffff") : a.dataset.path;
      var y = key === "time" ? (b.dataset.time || "\uffff") : b.dataset.path;
      return x < y ? -1 : x > y ? 1 : a.dataset.order - b.dataset.order;
    });
    sorted.forEach(function (card) { main.appendChild(card); });
  });

  // --- the viewer: the larger preview, the review controls, the card's details and (when RUN_DIR/explanations/
  // has one for the photo) an overlay that the "объяснение" button shows over it
  var viewer = document.getElementById("viewer");
  var img = document.getElementById("viewer-img");
  var overlay = document.getElementById("viewer-overlay");
  var explain = document.getElementById("explain");
  var info = document.getElementById("viewer-info");
  var path = document.getElementById("viewer-path");
  var reviewState = document.getElementById("review-state");
  var current = null;

  function refreshPanel() {
    if (!current) return;
    var model = modelCodes(current), scores = JSON.parse(current.dataset.scores);
    var entry = reviews.get(current.dataset.path), codes = entry ? entry.codes : model;
    toggles.forEach(function (t) {
      var k = t.dataset.key, score = scores[keys.indexOf(k)];
      var present = score === null ? null : model[k] ? score : 1 - score;  // the score is the decision's
      t.setAttribute("aria-pressed", codes[k] ? "true" : "false");
      t.classList.toggle("changed", codes[k] !== model[k]);
      t.querySelector(".p").textContent = present === null ? "" : present.toFixed(2);
      t.title = t.dataset.en + (present === null ? "" : " · p = " + present.toFixed(2) + ", порог " + t.dataset.threshold);
    });
    choices.forEach(function (g) {
      var k = g.dataset.key, score = scores[keys.indexOf(k)];
      g.classList.toggle("changed", codes[k] !== model[k]);
      all(g, "[data-code]").forEach(function (b) {
        var code = Number(b.dataset.code), chosen = model[k] === code;
        b.setAttribute("aria-checked", codes[k] === code ? "true" : "false");
        b.classList.toggle("model", chosen);
        b.querySelector(".p").textContent = chosen && score !== null ? score.toFixed(2) : "";
        b.title = b.dataset.en + (chosen ? " · ответ модели" + (score === null ? "" : ", p = " + score.toFixed(2)) : "");
      });
    });
    var fixed = entry ? changedKeys(current, entry).length : 0;
    reviewState.textContent = !entry ? "не проверено" :
      "проверено " + new Date(entry.reviewed).toLocaleString("ru-RU") + (fixed ? " · исправлено: " + fixed : " · без исправлений");
  }

  function open(card) {
    current = card;
    img.src = card.dataset.preview || "";
    img.alt = card.dataset.path;
    path.textContent = card.dataset.path;
    var over = card.dataset.overlay;
    explain.hidden = !over;
    overlay.hidden = true;
    explain.setAttribute("aria-pressed", "false");
    if (over) overlay.src = over; else overlay.removeAttribute("src");
    while (info.firstChild) info.removeChild(info.firstChild);
    info.appendChild(card.querySelector(".meta").cloneNode(true));
    refreshPanel();
    if (!viewer.open) viewer.showModal();
  }

  // The next (or previous) shown photo in the grid's order, from where the current one is, even when it has
  // just been hidden (reviewed under "не проверенные"); none left: the viewer closes.
  function step(delta) {
    var list = all(main, ".card"), i = list.indexOf(current);
    for (var d = 1; d <= list.length; d++) {
      var card = list[((i + delta * d) % list.length + list.length) % list.length];
      if (!card.hidden) { if (card !== current) open(card); return; }
    }
    viewer.close();
  }

  function commit(card) {
    save();
    refreshCard(card);
    refreshPanel();
    apply();
  }

  function entryFor(card) {
    var entry = reviews.get(card.dataset.path);
    if (!entry) {
      var model = modelCodes(card);
      entry = {model: model, codes: ordered(model), reviewed: now(), changes: []};
      reviews.set(card.dataset.path, entry);
      kept.delete(card.dataset.path);  // an unusable stored entry of this photo gives way to the new review
    }
    return entry;
  }

  // A correction marks the photo reviewed and is logged: attribute, before -> after, when.
  function setCode(key, code) {
    if (!current) return;
    var entry = entryFor(current), before = entry.codes[key], at = now();
    if (before !== code) {
      entry.codes[key] = code;
      entry.changes.push({attribute: key, before: before, after: code, at: at});
    }
    entry.reviewed = at;
    commit(current);
  }

  function toggle(button) { setCode(button.dataset.key, entryFor(current).codes[button.dataset.key] ? 0 : 1); }

  function accept() {  // "всё верно": the answer as it stands is the reviewer's; on to the next photo
    if (!current) return;
    entryFor(current).reviewed = now();
    commit(current);
    step(1);
  }

  function undo() {  // back to the model's answer, not reviewed
    if (!current || !reviews.delete(current.dataset.path)) return;
    commit(current);
  }

  toggles.forEach(function (t) { t.addEventListener("click", function () { toggle(t); }); });
  choices.forEach(function (g) {
    all(g, "[data-code]").forEach(function (b) {
      b.addEventListener("click", function () { setCode(g.dataset.key, Number(b.dataset.code)); });
    });
  });
  document.getElementById("accept").addEventListener("click", accept);
  document.getElementById("undo").addEventListener("click", undo);

  cards.forEach(function (card) {
    card.querySelector(".thumb").addEventListener("click", function () { open(card); });
  });
  explain.addEventListener("click", function () {
    overlay.hidden = !overlay.hidden;
    explain.setAttribute("aria-pressed", overlay.hidden ? "false" : "true");
  });
  document.getElementById("prev").addEventListener("click", function () { step(-1); });
  document.getElementById("next").addEventListener("click", function () { step(1); });
  document.getElementById("close").addEventListener("click", function () { viewer.close(); });
  // Keys anywhere while the viewer is open (a click on the photo leaves the focus outside the dialog):
  // arrows, 1..9 for the objects in the spec's order, Enter "всё верно", Backspace the model's answer.
  document.addEventListener("keydown", function (e) {
    if (!viewer.open || !current || e.altKey || e.ctrlKey || e.metaKey) return;
    var digit = /^[1-9]$/.test(e.key) ? toggles[Number(e.key) - 1] : null;
    if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
    else if (e.key === "Enter") accept();
    else if (e.key === "Backspace") undo();
    else if (digit) toggle(digit);
    else return;
    e.preventDefault();  // Enter must not also press the focused button
  });
  viewer.addEventListener("click", function (e) { if (e.target === viewer) viewer.close(); });

  // Another tab of the same report saved: take its state, so that neither overwrites the other's work.
  window.addEventListener("storage", function (e) {
    if (e.key !== storageKey) return;
    reviews = load();
    cards.forEach(refreshCard);
    refreshPanel();
    apply();
  });

  // --- export: reviewed.csv exactly as Python's csv module writes labels.csv (';', '\n', minimal quoting;
  // rows by file name in code-point order, as Python sorts), and review.json with every change
  function csvCell(value) {
    var text = String(value);
    return /[;"\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function byCodePoint(a, b) {
    var x = Array.from(a), y = Array.from(b);
    for (var i = 0; i < Math.min(x.length, y.length); i++) {
      var d = x[i].codePointAt(0) - y[i].codePointAt(0);
      if (d) return d;
    }
    return x.length - y.length;
  }

  function download(name, text, type) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function exportReview() {
    var paths = cards.map(function (c) { return c.dataset.path; }).filter(function (p) { return reviews.has(p); });
    paths.sort(byCodePoint);
    var lines = [header.map(csvCell).join(";")];
    paths.forEach(function (p) {
      var codes = reviews.get(p).codes;
      lines.push([p].concat(keys.map(function (k) { return codes[k]; })).map(csvCell).join(";"));
    });
    var photos = paths.map(function (p) {
      var entry = reviews.get(p);
      return {path: p, reviewed: entry.reviewed, model: ordered(entry.model || {}), codes: ordered(entry.codes),
              changes: entry.changes};
    });
    var log = {format: "lizaalert-review", version: 1, run: runId, run_name: data.dataset.runName,
               model: data.dataset.model, exported: now(), columns: header, photos: photos};
    download("reviewed.csv", lines.join("\n") + "\n", "text/csv;charset=utf-8");
    download("review.json", JSON.stringify(log, null, 1) + "\n", "application/json");
  }
  document.getElementById("export").addEventListener("click", exportReview);

  cards.forEach(function (card) {
    var copy = document.createElement("div");
    Array.from(card.querySelector(".chips").children).forEach(function (chip) { copy.appendChild(chip.cloneNode(true)); });
    modelChips.set(card, copy);
    refreshCard(card);
  });
  apply();
})();
