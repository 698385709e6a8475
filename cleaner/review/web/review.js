// The review page (cleaner review). No queue data is ever placed in the page: this
// script fetches it as JSON (/api/queue, with the page's token) and builds every node
// with textContent. The page's Content-Security-Policy admits only this script, by hash.
(function () {
  "use strict";
  var token = document.querySelector('meta[name="review-token"]').getAttribute("content");
  // sel: the selected rows (row index -> true); cards: each row's card, made once.
  var S = { rows: [], classes: [], cur: 0, pending: 0, chain: Promise.resolve(), ta: null,
            digitNames: false, warnings: [], examples: [], exKey: null,
            view: "one", sel: {}, anchor: null, cards: {} };
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  function setBusy(d) {
    S.pending += d;
    document.body.setAttribute("data-busy", String(S.pending));
  }
  function api(method, url, body) {
    var opts = { method: method, headers: {}, cache: "no-store" };
    opts.headers["X-Review-Token"] = token;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).catch(function () {
      throw new Error("could not reach the review server: is `cleaner review` still running?" +
                      " Nothing was lost: every earlier decision is in the CSV.");
    }).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = JSON.parse(t); } catch (e) { data = null; }
        if (!r.ok) { throw new Error((data && data.error) || t || ("HTTP " + r.status)); }
        return data;
      });
    });
  }
  function enqueue(fn) {
    setBusy(1);
    S.chain = S.chain.then(fn).then(function () { $("error").hidden = true; }, function (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
    }).then(function () { setBusy(-1); });
  }
  var toastTimer = null;
  function toast(text) {
    var t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 1800);
  }
  function flashError(text) {
    $("error").textContent = text;
    $("error").hidden = false;
  }

  function allows(r, decision) { return r.actions.indexOf(decision) !== -1; }
  function actionsHint(r) {
    return "this " + r.issue + " row takes " + r.actions_text;
  }
  function noSuggestionHint(r) {
    if (!allows(r, "relabel")) { return actionsHint(r); }
    return (r.suggests ? "no suggested label" : "a " + r.issue + " row has no suggestion") +
      ": pick a class with its number or type its name";
  }
  function drawExamples(r) {
    var suggested = r.suggests ? r.suggested : "", key = JSON.stringify([r.given, suggested]);
    if (S.exKey === key) { return; }
    S.exKey = key;
    var box = $("examples"), shown = [];
    clear(box);
    [r.given, suggested].forEach(function (name) {
      var c = S.classes.indexOf(name), n = c < 0 ? 0 : (S.examples[c] || 0);
      if (!n || shown.indexOf(c) !== -1) { return; }
      shown.push(c);
      var sec = el("div", "ex"), strip = el("div", "strip");
      var h = el("h2", null, "examples of ");
      h.appendChild(el("span", "exname", name));  // a class name keeps its case
      sec.appendChild(h);
      for (var k = 0; k < n; k++) {
        var im = el("img", "example");
        im.alt = "example of " + name;
        im.addEventListener("error", function () { this.hidden = true; });
        im.setAttribute("src", "/example/" + c + "/" + k);
        strip.appendChild(im);
      }
      sec.appendChild(strip);
      box.appendChild(sec);
    });
    box.hidden = shown.length === 0;
  }
  function drawPartner(r) {
    var img = $("partner"), cap = $("partner-cap"), src = "/partner/" + r.i;
    $("viewer").classList.toggle("paired", !!r.partner);
    $("image-cap").hidden = !r.partner;
    cap.hidden = !r.partner;
    cap.textContent = r.partner ? "partner: " + r.partner +
      (r.has_partner_image ? "" : " (not in the manifest)") : "";
    img.alt = r.partner;
    if (r.partner && r.has_partner_image) {
      img.hidden = false;
      if (img.getAttribute("src") !== src) { img.setAttribute("src", src); }
    } else {
      img.hidden = true;
      img.removeAttribute("src");
    }
  }

  function drawImage(r) {
    var img = $("image"), src = "/img/" + r.i;
    img.alt = r.sample_id;
    if (r.has_image) {
      $("noimg").hidden = true;
      img.hidden = false;
      if (img.getAttribute("src") !== src) {
        img.classList.add("loading");
        img.setAttribute("src", src);
      }
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      $("noimg-text").textContent = "no single image for this row";
      $("noimg").hidden = false;
    }
  }

  function describe(r) {
    if (!r.decision) { return "not reviewed yet"; }
    if (r.decision === "relabel") { return "relabel \u2192 " + (r.new_label || r.suggested); }
    if (r.decision === "drop") { return "drop (excluded from training)"; }
    if (r.decision === "unsure") { return "unsure (kept, lower weight)"; }
    return "keep the given label";
  }
  function probs(r) {
    var m = {};
    r.top.forEach(function (t) { m[t[0]] = t[1]; });
    return m;
  }
  function order(r) {
    var seen = {}, idx = r.top.map(function (t) { seen[t[0]] = true; return t[0]; });
    S.classes.forEach(function (c, i) { if (!seen[i]) { idx.push(i); } });
    return idx;
  }
  function keyed(r) {
    var idx;
    if (S.digitNames) {
      return S.classes.map(function (c, i) { return { key: c, i: i }; });
    }
    idx = S.classes.length <= 9 ? S.classes.map(function (c, i) { return i; })
                                : order(r).slice(0, 9);
    return idx.map(function (i, k) { return { key: String(k + 1), i: i }; });
  }
  function classRow(r, key, i) {
    var li = el("li"), name = S.classes[i], bar = el("div", "pbar"), fill = el("span");
    var p = probs(r)[i];
    li.appendChild(key === null ? el("span") : el("kbd", null, key));
    li.appendChild(el("span", "name", name));
    if (p !== undefined) { fill.style.width = pct(p); bar.appendChild(fill); }
    li.appendChild(bar);
    li.appendChild(el("span", "pct", p !== undefined ? pct(p) : ""));
    if (name === r.given) { li.classList.add("is-given"); li.title = "given label"; }
    if (name === r.suggested) { li.classList.add("is-suggested"); li.title = "suggested label"; }
    if (r.decision === "relabel" && name === (r.new_label || r.suggested)) {
      li.classList.add("chosen");
    }
    li.addEventListener("click", function () { relabel(name); });
    return li;
  }

  // --- the filter: which rows the arrows, the cards and the bulk accept see ---------------
  function inFilter(r) {
    var issue = $("f-issue").value, cls = $("f-class").value, state = $("f-state").value;
    return (!issue || r.issue === issue) &&
      (!cls || r.given === cls || (r.suggests && r.suggested === cls)) &&
      (!state || (state === "open") === !r.decision);
  }
  function visible() {
    return S.rows.filter(inFilter).map(function (r) { return r.i; });
  }
  function fillFilters() {
    var counts = {}, kinds = [];
    S.rows.forEach(function (r) {
      if (!r.issue) { return; }
      if (!counts[r.issue]) { counts[r.issue] = 0; kinds.push(r.issue); }
      counts[r.issue] += 1;
    });
    kinds.sort().forEach(function (k) {
      var o = el("option", null, k + " (" + counts[k] + ")");
      o.value = k;
      $("f-issue").appendChild(o);
    });
    S.classes.forEach(function (c) {
      var o = el("option", null, c);
      o.value = c;
      $("f-class").appendChild(o);
    });
  }
  function onFilter() {
    // A selection the filter hides would be decided unseen: a new filter starts a new one.
    S.sel = {};
    S.anchor = null;
    var shown = visible();
    if (shown.length && shown.indexOf(S.cur) === -1) { S.cur = shown[0]; }
    render();
  }

  // --- selection: several rows, one decision ----------------------------------------------
  function selected() {
    return S.rows.filter(function (r) { return S.sel[r.i]; }).map(function (r) { return r.i; });
  }
  function toggleSel(i) {
    if (S.sel[i]) { delete S.sel[i]; } else { S.sel[i] = true; }
    S.anchor = i;
  }
  function selectRange(i) {
    var shown = visible(), a = shown.indexOf(S.anchor === null ? i : S.anchor);
    var b = shown.indexOf(i);
    if (a === -1) { a = b; }
    shown.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (j) { S.sel[j] = true; });
  }
  function clearSel() {
    S.sel = {};
    S.anchor = null;
    render();
  }

  // --- cards: the filter's rows as a grid, to see and select many at once ---------------------
  function card(i) {
    if (S.cards[i]) { return S.cards[i]; }
    var r = S.rows[i], c = el("article", "card"), pick = el("input", "pick");
    pick.type = "checkbox";
    pick.setAttribute("aria-label", "select row #" + r.rank);
    pick.addEventListener("change", function () { pick.blur(); toggleSel(i); render(); });
    c.appendChild(pick);
    if (r.has_image) {
      var im = el("img", "thumb");
      im.alt = r.sample_id;
      im.loading = "lazy";
      im.setAttribute("src", "/img/" + i);
      c.appendChild(im);
    } else {
      c.appendChild(el("div", "thumb noimg", "no single image"));
    }
    var head = el("div", "c-head");
    head.appendChild(el("span", "muted", "#" + r.rank));
    head.appendChild(el("span", "c-sid", r.sample_id));
    c.appendChild(head);
    var labs = el("div", "c-labels");
    labs.appendChild(el("span", "c-given", r.given || "(none)"));
    if (r.suggests) {
      labs.appendChild(el("span", "muted", "\u2192"));
      labs.appendChild(el("span", "c-sugg", r.suggested || "(none)"));
      if (r.suggested_p !== null) { labs.appendChild(el("span", "muted", pct(r.suggested_p))); }
    }
    c.appendChild(labs);
    c.appendChild(el("div", "c-dec"));
    c.addEventListener("click", function (e) {
      if (e.target === pick) { return; }
      if (e.shiftKey) { selectRange(i); } else if (e.ctrlKey || e.metaKey) { toggleSel(i); }
      S.cur = i;
      render();
    });
    c.addEventListener("dblclick", function () { S.cur = i; setView("one"); });
    S.cards[i] = c;
    return c;
  }
  function drawCards(shown) {
    var box = $("cards");
    clear(box);
    if (!shown.length) { box.appendChild(el("p", "muted", "no row matches the filter")); }
    shown.forEach(function (i) {
      var c = card(i), r = S.rows[i];
      c.querySelector(".c-dec").textContent = describe(r);
      c.className = "card" + (r.decision ? " " + r.decision : "") + (i === S.cur ? " cur" : "") +
        (S.sel[i] ? " sel" : "");
      c.querySelector(".pick").checked = !!S.sel[i];
      box.appendChild(c);
    });
    var cur = S.cards[S.cur];
    if (cur && cur.parentNode === box) { cur.scrollIntoView({ block: "nearest" }); }
  }
  function setView(view) {
    S.view = view;
    render();
  }

  // --- bulk accept: every confident suggestion of the filter ----------------------------------
  function threshold() {
    var v = parseFloat($("bulk-p").value);
    return isNaN(v) ? null : Math.min(100, Math.max(0, v)) / 100;
  }
  function acceptable(r) {
    return !r.decision && r.suggests && !!r.suggested && allows(r, "relabel") &&
      r.suggested !== r.given;
  }
  function bulkCandidates(shown) {
    var t = threshold();
    return shown.filter(function (i) {
      var r = S.rows[i];
      return t !== null && acceptable(r) && r.suggested_p !== null && r.suggested_p >= t;
    });
  }
  function drawBulk(shown) {
    var n = bulkCandidates(shown).length;
    var open = shown.filter(function (i) { return acceptable(S.rows[i]); }).length;
    $("bulk-accept").textContent = "accept " + n + (n === 1 ? " row" : " rows");
    $("bulk-accept").disabled = n === 0;
    $("bulk-note").textContent = "of " + open + " not-reviewed rows with a suggestion here";
  }

  function render() {
    var n = S.rows.length, reviewed = S.rows.filter(function (r) { return r.decision; }).length;
    $("n-reviewed").textContent = String(reviewed);
    $("n-total").textContent = String(n);
    $("bar-fill").style.width = n ? (100 * reviewed / n) + "%" : "0";
    $("warnings").textContent = S.warnings.join("\n");
    $("warnings").hidden = S.warnings.length === 0;
    if (!n) {
      $("position").textContent = "";
      $("panel").hidden = true;
      $("noimg-text").textContent = "The queue is empty.";
      $("noimg").hidden = false;
      $("image").hidden = true;
      return;
    }
    var shown = visible(), nsel = selected().length;
    $("f-count").textContent = shown.length + " of " + n + " rows";
    drawBulk(shown);
    $("selbar").hidden = nsel === 0;
    $("sel-count").textContent = String(nsel);
    $("cards").hidden = S.view !== "cards";
    $("viewer").hidden = S.view === "cards";
    $("view-name").textContent = S.view === "cards" ? "one image" : "cards";
    if (S.view === "cards") { drawCards(shown); }
    var r = S.rows[S.cur];
    $("position").textContent = "row " + (S.cur + 1) + " of " + n;
    $("rank").textContent = "#" + r.rank;
    $("sid").textContent = r.sample_id;
    $("given").textContent = r.given || "(none)";
    $("suggested").textContent = r.suggested || "(none)";
    $("suggested-box").hidden = !r.suggests;
    $("nosugg").hidden = r.suggests;
    $("nosugg-text").textContent = allows(r, "relabel") ?
      "relabel: pick a class (1-9) or type its name" : "keep (k) or drop (d) only";
    $("actions-text").textContent = r.actions_text;
    $("accept-btn").hidden = !r.suggests || !allows(r, "relabel");
    $("pick-hint").hidden = !allows(r, "relabel");
    Array.prototype.forEach.call(document.querySelectorAll("footer button[data-decision]"),
      function (b) { b.disabled = !allows(r, b.getAttribute("data-decision")); });
    var tags = $("tags");
    clear(tags);
    if (r.issue) { tags.appendChild(el("span", "tag", r.issue)); }
    if (r.quality) { tags.appendChild(el("span", "muted", "label quality " + r.quality)); }
    if (r.suggests && r.suggested_p !== null) {
      tags.appendChild(el("span", "muted", "model gives " + r.suggested + " " + pct(r.suggested_p)));
    }
    if (S.sel[r.i]) { tags.appendChild(el("span", "tag", "selected")); }
    if (r.group) { tags.appendChild(el("span", "muted", "group " + r.group)); }
    $("group-note").hidden = !r.is_group;
    $("group-note").textContent = r.is_group ?
      "Group row: the decision applies to all " + (r.members === null ? "" : r.members + " ") +
      "train images of the group; the image is its first." : "";
    $("decision").textContent = describe(r);
    $("decision").className = r.decision || "";

    var top = $("top3");
    clear(top);
    if (r.top.length) {
      order(r).slice(0, 3).forEach(function (i) { top.appendChild(classRow(r, null, i)); });
    } else {
      top.appendChild(el("li", "small", "no model probabilities for this row"));
    }
    $("probs-from").textContent = r.probs_from;
    var list = $("classes");
    clear(list);
    keyed(r).forEach(function (k) { list.appendChild(classRow(r, k.key, k.i)); });
    $("classes-title").textContent = !allows(r, "relabel") ? "classes (not relabelled here)" :
      S.digitNames ? "classes: press the class's digit" :
      S.classes.length <= 9 ? "classes: press 1-" + S.classes.length :
      "most likely classes: press 1-9, or type a name";
    $("note").textContent = r.note;
    $("note").hidden = !r.note;
    $("path").textContent = r.path;
    drawExamples(r);
    if (S.view === "cards") { return; }  // the big image is hidden: none is loaded
    drawImage(r);
    drawPartner(r);
    [S.cur + 1, S.cur - 1].forEach(function (j) {
      if (j >= 0 && j < n && S.rows[j].has_image) { new Image().src = "/img/" + S.rows[j].i; }
    });
  }

  function update(d) {
    (d.rows || [d.row]).forEach(function (row) { S.rows[row.i] = row; });
    S.warnings = d.warnings;
  }
  function move(step) {
    // Within the filter; from a row the filter no longer shows, to the nearest that it does.
    var shown = visible(), at = shown.indexOf(S.cur);
    if (!shown.length) { return; }
    if (at === -1) {
      var after = shown.filter(function (i) { return step > 0 ? i > S.cur : i < S.cur; });
      S.cur = after.length ? after[step > 0 ? 0 : after.length - 1] : shown[0];
    } else {
      S.cur = shown[Math.min(shown.length - 1, Math.max(0, at + step))];
    }
    render();
  }
  function decide(decision, label) {
    if (!S.rows.length) { return; }
    var i = S.cur;
    if (decision && !allows(S.rows[i], decision)) { toast(actionsHint(S.rows[i])); return; }
    enqueue(function () {
      return api("POST", "/api/decide", { row: i, decision: decision, new_label: label || "" })
        .then(function (d) {
          update(d);
          toast("#" + d.row.rank + " saved: " + describe(d.row));
          render();
        }, function (err) { S.cur = i; render(); throw err; });
    });
    move(1);
  }
  function relabel(name) {
    var r = S.rows[S.cur];
    // Picking the class the row already has keeps it: not a "relabel" to the same label.
    if (r && name === r.given && allows(r, "keep")) { decide("keep", ""); return; }
    decide("relabel", name);
  }
  function accept() {
    var r = S.rows[S.cur];
    if (!r) { return; }
    if (!r.suggests || !r.suggested || !allows(r, "relabel")) {
      toast(noSuggestionHint(r));
      return;
    }
    relabel(r.suggested);
  }
  function pickKey(key) {
    var r = S.rows[S.cur];
    if (!r) { return; }
    var k = keyed(r).filter(function (x) { return x.key === key; })[0];
    if (k) { relabel(S.classes[k.i]); }
  }
  function undo() {
    enqueue(function () {
      return api("POST", "/api/undo", {}).then(function (d) {
        update(d);
        S.cur = d.row.i;
        toast(d.rows.length > 1 ? "undone: " + d.rows.length + " rows are as they were" :
              "undone: #" + d.row.rank + " is " + describe(d.row) + " again");
        render();
      });
    });
  }
  // One step for many rows: one request, all checked before any is written, one undo.
  function decideMany(items, done) {
    if (!items.length) { return; }
    enqueue(function () {
      return api("POST", "/api/decide_many", { decisions: items }).then(function (d) {
        update(d);
        if (done) { done(); }
        toast(items.length + " rows saved in one step (z undoes all of them)");
        render();
      });
    });
  }
  function bulkAccept() {
    var rows = bulkCandidates(visible());
    decideMany(rows.map(function (i) {
      return { row: i, decision: "relabel", new_label: S.rows[i].suggested };
    }));
  }
  function decideSelected(what) {
    var rows = selected(), decision = what === "accept" ? "relabel" : what;
    if (!rows.length) { toast("nothing selected: x selects a row, or click cards"); return; }
    var misfit = rows.filter(function (i) {
      var r = S.rows[i];
      return !allows(r, decision) || (what === "accept" && !(r.suggests && r.suggested));
    });
    if (misfit.length) {  // the server would refuse them too; say which, change nothing
      toast("nothing changed: " + misfit.map(function (i) {
        var r = S.rows[i];
        return "#" + r.rank + (what === "accept" ? " has no suggestion" : " takes " + r.actions_text);
      }).join("; "));
      return;
    }
    decideMany(rows.map(function (i) {
      var r = S.rows[i];
      // Accepting a suggestion that is the given label keeps it, as a single key does.
      var keep = what === "accept" && r.suggested === r.given;
      return { row: i, decision: keep ? "keep" : decision,
               new_label: what === "accept" && !keep ? r.suggested : "" };
    }), function () { S.sel = {}; S.anchor = null; });
  }
  function selectAll() {
    visible().forEach(function (i) { S.sel[i] = true; });
    render();
  }
  function selectCurrent() {
    if (!S.rows.length) { return; }
    toggleSel(S.cur);
    render();
  }

  function openTA(initial) {
    var r = S.rows[S.cur];
    if (r && !allows(r, "relabel")) { toast(actionsHint(r)); return; }
    S.ta = { sel: 0, matches: [] };
    $("ta").hidden = false;
    var input = $("ta-input");
    input.value = initial;
    input.focus();
    filterTA();
  }
  function closeTA() {
    if (!S.ta) { return; }
    S.ta = null;
    $("ta").hidden = true;
    $("ta-input").blur();
  }
  function filterTA() {
    var q = $("ta-input").value.trim().toLowerCase(), pre = [], sub = [];
    S.classes.forEach(function (c) {
      var l = c.toLowerCase();
      if (l.indexOf(q) === 0) { pre.push(c); } else if (l.indexOf(q) > 0) { sub.push(c); }
    });
    S.ta.matches = pre.concat(sub);
    S.ta.sel = 0;
    drawTA();
  }
  function drawTA() {
    var ul = $("ta-list");
    clear(ul);
    S.ta.matches.slice(0, 50).forEach(function (c, k) {
      var li = el("li", k === S.ta.sel ? "sel" : "", c);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); closeTA(); relabel(c); });
      ul.appendChild(li);
    });
    if (!S.ta.matches.length) { ul.appendChild(el("li", "small", "no class matches")); }
  }
  $("ta-input").addEventListener("input", filterTA);
  $("ta-input").addEventListener("blur", closeTA);
  $("ta-input").addEventListener("keydown", function (e) {
    e.stopPropagation();
    var n = Math.min(S.ta.matches.length, 50);
    if (e.key === "Enter") {
      e.preventDefault();
      var pick = S.ta.matches[S.ta.sel];
      if (pick !== undefined) { closeTA(); relabel(pick); }
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeTA();
    } else if ((e.key === "ArrowDown" || e.key === "ArrowUp") && n) {
      e.preventDefault();
      S.ta.sel = (S.ta.sel + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      drawTA();
    }
  });

  var actions = { keep: function () { decide("keep"); }, accept: accept,
                  drop: function () { decide("drop"); }, unsure: function () { decide("unsure"); },
                  undo: undo, prev: function () { move(-1); }, next: function () { move(1); },
                  type: function () { openTA(""); }, select: selectCurrent };
  var bulkKeys = { K: "keep", R: "accept", D: "drop", U: "unsure" };
  function typing(e) {
    var t = e.target, tag = t && t.tagName;
    // A card's checkbox keeps the keys; a text or number field and a list take them.
    return (tag === "INPUT" && t.type !== "checkbox") || tag === "SELECT" || tag === "TEXTAREA";
  }
  document.addEventListener("keydown", function (e) {
    if (S.ta || e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e)) { return; }
    var k = e.key, lower = k.length === 1 ? k.toLowerCase() : k, handled = true;
    var nsel = selected().length;
    if (e.shiftKey && nsel && bulkKeys[k]) { decideSelected(bulkKeys[k]); }
    else if (k === "Escape" && nsel) { clearSel(); }
    else if (k === "X") { selectAll(); }
    else if (lower === "x") { selectCurrent(); }
    else if (lower === "g") { setView(S.view === "cards" ? "one" : "cards"); }
    else if (lower === "k") { actions.keep(); }
    else if (lower === "r" || k === "Enter") { accept(); }
    else if (lower === "d") { actions.drop(); }
    else if (lower === "u") { actions.unsure(); }
    else if (lower === "z") { undo(); }
    else if (k === "ArrowLeft" || k === "ArrowUp") { move(-1); }
    else if (k === "ArrowRight" || k === "ArrowDown") { move(1); }
    else if (k === "/") { openTA(""); }
    else if (/^[0-9]$/.test(k)) { pickKey(k); }
    else if (k.length === 1 && k.trim()) { openTA(k); }
    else { handled = false; }
    if (handled) { e.preventDefault(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("footer button"), function (b) {
    b.addEventListener("click", function () {
      b.blur();
      actions[b.getAttribute("data-action")]();
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("#selbar button"), function (b) {
    b.addEventListener("click", function () {
      b.blur();
      var what = b.getAttribute("data-bulk");
      if (what === "clear") { clearSel(); } else { decideSelected(what); }
    });
  });
  ["f-issue", "f-class", "f-state"].forEach(function (id) {
    // The keys are the review's again as soon as a filter is picked.
    $(id).addEventListener("change", function () { $(id).blur(); onFilter(); });
  });
  $("bulk-p").addEventListener("input", function () { drawBulk(visible()); });
  $("bulk-p").addEventListener("keydown", function (e) {
    if (e.key === "Enter" || e.key === "Escape") { e.preventDefault(); $("bulk-p").blur(); }
  });
  $("bulk-accept").addEventListener("click", function () { $("bulk-accept").blur(); bulkAccept(); });
  $("view-btn").addEventListener("click", function () {
    $("view-btn").blur();
    setView(S.view === "cards" ? "one" : "cards");
  });
  $("image").addEventListener("load", function () { $("image").classList.remove("loading"); });
  $("partner").addEventListener("error", function () {
    if (!$("partner").getAttribute("src")) { return; }
    $("partner").hidden = true;
    $("partner-cap").textContent += " (image missing or unreadable)";
  });
  $("image").addEventListener("error", function () {
    if (!$("image").getAttribute("src")) { return; }
    $("image").hidden = true;
    $("noimg-text").textContent = "image missing or unreadable";
    $("noimg").hidden = false;
  });

  setBusy(1);
  api("GET", "/api/queue").then(function (d) {
    S.rows = d.rows;
    S.classes = d.classes;
    S.warnings = d.warnings;
    S.examples = d.examples || [];
    S.digitNames = d.classes.length > 0 && d.classes.length <= 10 &&
      d.classes.every(function (c) { return /^[0-9]$/.test(c); });
    $("title").textContent = d.title;
    document.title = "review: " + d.title;
    $("file").textContent = d.file;
    fillFilters();
    var first = S.rows.findIndex(function (r) { return !r.decision; });
    S.cur = first < 0 ? 0 : first;
    render();
  }).catch(function (err) { flashError(err.message); }).then(function () { setBusy(-1); });
})();
