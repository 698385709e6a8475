// The review page (cleaner review). No queue data is ever placed in the page: this
// script fetches it as JSON (/api/queue, with the page's token) and builds every node
// with textContent. The page's Content-Security-Policy admits only this script, by hash.
(function () {
  "use strict";
  var token = document.querySelector('meta[name="review-token"]').getAttribute("content");
  var S = { rows: [], classes: [], cur: 0, pending: 0, chain: Promise.resolve(), ta: null,
            digitNames: false, warnings: [], examples: [], exKey: null };
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
    drawPartner(r);
    drawExamples(r);
    [S.cur + 1, S.cur - 1].forEach(function (j) {
      if (j >= 0 && j < n && S.rows[j].has_image) { new Image().src = "/img/" + S.rows[j].i; }
    });
  }

  function update(d) {
    S.rows[d.row.i] = d.row;
    S.warnings = d.warnings;
  }
  function move(step) {
    if (!S.rows.length) { return; }
    S.cur = Math.min(S.rows.length - 1, Math.max(0, S.cur + step));
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
        toast("undone: #" + d.row.rank + " is " + describe(d.row) + " again");
        render();
      });
    });
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
                  type: function () { openTA(""); } };
  document.addEventListener("keydown", function (e) {
    if (S.ta || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    var k = e.key, lower = k.length === 1 ? k.toLowerCase() : k, handled = true;
    if (lower === "k") { actions.keep(); }
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
    var first = S.rows.findIndex(function (r) { return !r.decision; });
    S.cur = first < 0 ? 0 : first;
    render();
  }).catch(function (err) { flashError(err.message); }).then(function () { setBusy(-1); });
})();
