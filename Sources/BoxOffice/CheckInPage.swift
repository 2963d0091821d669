/// The staff page at the door, `GET /checkin`: one self-contained, phone-sized page. The
/// steward gives the staff token and the gate once (kept for the browser tab only), then
/// types, pastes or scans (a scanner that types and presses Enter) each code; the answer fills
/// the screen, green to let in, red to stop, with the seat or the reason.
enum CheckInPage {
  static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Check-in — BoxOffice</title>
    <style>
      :root { color-scheme: light dark; --ink: #1c2130; --muted: #5d6576; --line: #d9dde5; --bg: #f7f7fa; --card: #fff;
        --go: #1f8f4e; --stop: #c0392b; --wait: #5d6576; }
      @media (prefers-color-scheme: dark) { :root { --ink: #e9ecf2; --muted: #a4acbb; --line: #343b48; --bg: #12151b; --card: #1b2029; } }
      * { box-sizing: border-box; }
      body { margin: 0; font: 18px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
      main { max-width: 32rem; margin: 0 auto; padding: 1rem; }
      h1 { font-size: 1.3rem; margin: .2rem 0 1rem; }
      label { display: block; margin: .6rem 0 .2rem; color: var(--muted); font-size: .9rem; }
      input { width: 100%; font: inherit; padding: .7rem .8rem; border: 1px solid var(--line); border-radius: 10px; background: var(--card); color: var(--ink); }
      button { font: inherit; width: 100%; margin-top: .8rem; padding: .8rem; border: 0; border-radius: 10px; background: #2a62d8; color: #fff; }
      #answer { margin-top: 1rem; border-radius: 14px; padding: 2rem 1rem; text-align: center; color: #fff; background: var(--wait); min-height: 11rem; }
      #answer.go { background: var(--go); }
      #answer.stop { background: var(--stop); }
      #answer strong { display: block; font-size: 2.6rem; letter-spacing: .03em; }
      #answer span { display: block; font-size: 1.2rem; margin-top: .4rem; }
      .muted { color: var(--muted); font-size: .9rem; }
      a { color: inherit; }
    </style>
    </head>
    <body>
    <main>
      <h1>Check-in</h1>
      <form id="setup" hidden>
        <label for="token">Staff token</label><input id="token" type="password" autocomplete="off" required>
        <label for="gate">Gate</label><input id="gate" required maxlength="64" placeholder="North 3">
        <button>Start scanning</button>
      </form>
      <form id="scan" hidden>
        <label for="code">Ticket code</label>
        <input id="code" autocomplete="off" autocapitalize="off" spellcheck="false" placeholder="TK2.…" required>
        <button>Check</button>
        <div id="answer" role="status" aria-live="assertive"><strong>Ready</strong><span>Scan or type a code</span></div>
        <p class="muted">Gate <b id="gatename"></b> · <a href="#" id="change">change</a></p>
      </form>
    </main>
    <script>
    (function () {
      var setup = document.getElementById("setup"), scan = document.getElementById("scan");
      var answer = document.getElementById("answer"), code = document.getElementById("code");
      // The tab only: a closed tab forgets the token.
      var store = window.sessionStorage;
      function esc(text) { var d = document.createElement("div"); d.textContent = String(text); return d.innerHTML; }
      function show(kind, title, detail) {
        answer.className = kind; answer.innerHTML = "<strong>" + esc(title) + "</strong><span>" + esc(detail || "") + "</span>";
      }
      function start() {
        var ready = store.getItem("token") && store.getItem("gate");
        setup.hidden = !!ready; scan.hidden = !ready;
        if (ready) { document.getElementById("gatename").textContent = store.getItem("gate"); code.focus(); }
        else document.getElementById("token").focus();
      }
      setup.onsubmit = function (ev) {
        ev.preventDefault();
        store.setItem("token", document.getElementById("token").value.trim());
        store.setItem("gate", document.getElementById("gate").value.trim());
        start();
      };
      document.getElementById("change").onclick = function (ev) { ev.preventDefault(); store.clear(); start(); };
      scan.onsubmit = function (ev) {
        ev.preventDefault();
        var text = code.value.trim(); if (!text) return;
        code.value = ""; show("", "Checking…", "");
        fetch("/checkin", { method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json",
          "Authorization": "Bearer " + store.getItem("token") }, body: JSON.stringify({ code: text, gate: store.getItem("gate") }) })
          .then(function (r) { return r.json().catch(function () { return {}; }).then(function (d) { return { status: r.status, data: d }; }); })
          .then(function (r) {
            var d = r.data;
            if (r.status === 200) show("go", "Valid — let in", d.ticket.section + ", row " + d.ticket.row + ", seat " + d.ticket.number);
            else if (r.status === 409 && d.error === "already_used") show("stop", "Already used", "gate " + d.gate + " at " + new Date(d.checkedInAt).toLocaleTimeString() + " · " + d.seat);
            else if (r.status === 410) show("stop", "Cancelled ticket", d.seat || "");
            else if (r.status === 409) show("stop", "Wrong event", d.event || "");
            else if (r.status === 400) show("stop", "Not a valid ticket", d.message || "");
            else if (r.status === 404) show("stop", "Unknown ticket", d.message || "");
            else if (r.status === 401) { show("stop", "Staff token refused", "enter it again"); store.removeItem("token"); setTimeout(start, 1500); }
            else show("stop", "Try again", d.message || ("error " + r.status));
            code.focus();
          }).catch(function () { show("stop", "No connection", "scan again"); code.focus(); });
      };
      start();
    })();
    </script>
    </body>
    </html>
    """#
}
