// The gallery's filters. No user data may ever appear in this script (gallery.py says
// why): it reads the cards' data-* attributes and only toggles their hidden attribute.
(function () {
  "use strict";
  var cls = document.getElementById("f-class");
  var iss = document.getElementById("f-issue");
  var q = document.getElementById("f-search");
  var count = document.getElementById("count");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  // Read the attributes once: the DOM is never re-rendered, only hidden.
  var rows = cards.map(function (el) {
    return {
      el: el,
      given: el.getAttribute("data-given"),
      suggested: el.getAttribute("data-suggested"),
      issue: el.getAttribute("data-issue"),
      id: (el.getAttribute("data-id") || "").toLowerCase()
    };
  });
  function apply() {
    var c = cls.value, i = iss.value, s = q.value.trim().toLowerCase(), n = 0;
    for (var k = 0; k < rows.length; k++) {
      var r = rows[k];
      var ok = (!c || r.given === c || r.suggested === c) &&
               (!i || r.issue === i) &&
               (!s || r.id.indexOf(s) !== -1);
      if (r.el.hidden === ok) { r.el.hidden = !ok; }
      if (ok) { n++; }
    }
    count.textContent = "showing " + n + " of " + rows.length;
  }
  cls.addEventListener("change", apply);
  iss.addEventListener("change", apply);
  q.addEventListener("input", apply);
  document.getElementById("f-clear").addEventListener("click", function () {
    cls.value = ""; iss.value = ""; q.value = ""; apply();
  });
  apply();
})();
