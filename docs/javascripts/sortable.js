// Sortable tables for the generated leaderboard pages: click (or Enter on) a column header of a
// table.pb-sortable to sort by it, again to reverse. Cells with data-sort sort by that raw number,
// others by their text; blank cells always go last. Our own file, served with the site: no CDN.
(function () {
  "use strict";

  function key(cell) {
    if (!cell) return null;
    var raw = cell.getAttribute("data-sort");
    if (raw !== null) return Number(raw);
    var text = cell.textContent.trim();
    return text === "" ? null : text;
  }

  function compare(a, b, direction) {
    if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
    var numbers = typeof a === "number" && typeof b === "number";
    if (numbers) return direction * (a - b);
    if (typeof a !== typeof b) return typeof a === "number" ? -1 : 1;
    return direction * a.localeCompare(b, undefined, { numeric: true });
  }

  function sortBy(table, index, header) {
    var body = table.tBodies[0];
    var direction = header.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      return compare(key(r1.cells[index]), key(r2.cells[index]), direction);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("thead th").forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
  }

  function init() {
    document.querySelectorAll("table.pb-sortable").forEach(function (table) {
      table.querySelectorAll("thead th").forEach(function (header, index) {
        header.tabIndex = 0;
        header.title = "Sort by this column";
        header.addEventListener("click", function () { sortBy(table, index, header); });
        header.addEventListener("keydown", function (event) {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            sortBy(table, index, header);
          }
        });
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
