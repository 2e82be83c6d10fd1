// The report's behaviour (inlined into index.html): tag and time filters, order, the photo viewer.
// Plain DOM, no network; text from the run's files is only ever moved as DOM nodes, never parsed as HTML.
(function () {
  "use strict";
  var main = document.getElementById("cards");
  var cards = Array.prototype.slice.call(main.querySelectorAll(".card"));
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".tag[data-tag]"));
  var from = document.getElementById("from");
  var to = document.getElementById("to");
  var untimed = document.getElementById("untimed");
  var sort = document.getElementById("sort");
  var shown = document.getElementById("shown");
  var selected = new Set();

  function tagsOf(card) { return (card.dataset.tags || "").split(" ").filter(Boolean); }

  // A photo is shown when it has any selected tag (or none is selected) and its capture time
  // (local time, as the camera wrote it) is inside the interval; without a time only with "без времени".
  function apply() {
    var lo = from.value, hi = to.value, count = 0;
    cards.forEach(function (card) {
      var ok = selected.size === 0 || tagsOf(card).some(function (t) { return selected.has(t); });
      if (ok && (lo || hi)) {
        var t = (card.dataset.time || "").slice(0, 16);
        if (!t) ok = untimed.checked;
        else ok = (!lo || t >= lo) && (!hi || t <= hi);
      }
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
  [from, to, untimed].forEach(function (input) { input.addEventListener("change", apply); });
  document.getElementById("reset").addEventListener("click", function () {
    selected.clear();
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    from.value = ""; to.value = ""; untimed.checked = false;
    apply();
  });

  sort.addEventListener("change", function () {
    var key = sort.value;
    var sorted = cards.slice().sort(function (a, b) {
      if (key === "order") return a.dataset.order - b.dataset.order;
      var x = key === "time" ? (a.dataset.time || "\uffff") : a.dataset.path;
      var y = key === "time" ? (b.dataset.time || "\uffff") : b.dataset.path;
      return x < y ? -1 : x > y ? 1 : a.dataset.order - b.dataset.order;
    });
    sorted.forEach(function (card) { main.appendChild(card); });
  });

  // The viewer: the larger preview, the card's chips and details, and (when RUN_DIR/explanations/
  // has one for the photo) an overlay that the "объяснение" button shows over it.
  var viewer = document.getElementById("viewer");
  var img = document.getElementById("viewer-img");
  var overlay = document.getElementById("viewer-overlay");
  var explain = document.getElementById("explain");
  var info = document.getElementById("viewer-info");
  var path = document.getElementById("viewer-path");
  var current = null;

  function visible() {
    return Array.prototype.filter.call(main.querySelectorAll(".card"), function (c) { return !c.hidden; });
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
    info.appendChild(card.querySelector(".chips").cloneNode(true));
    info.appendChild(card.querySelector(".meta").cloneNode(true));
    if (!viewer.open) viewer.showModal();
  }

  function step(delta) {
    var list = visible();
    var i = list.indexOf(current);
    if (list.length) open(list[(i + delta + list.length) % list.length]);
  }

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
  viewer.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
  });
  viewer.addEventListener("click", function (e) { if (e.target === viewer) viewer.close(); });

  apply();
})();
