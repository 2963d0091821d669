extension WaitingPage {
  /// The built-in template: readable on a phone, accessible (live region, progress bar with
  /// its value, labels), works without JavaScript through a meta refresh.
  static let defaultTemplate = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <noscript><meta http-equiv="refresh" content="{{refreshSeconds}}"></noscript>
    <title>You are in line</title>
    <style>
      :root { color-scheme: light dark; --accent: #2f5bd3; }
      body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; display: grid;
        min-height: 100vh; place-items: center; background: Canvas; color: CanvasText; }
      main { box-sizing: border-box; width: min(32rem, 94vw); padding: 2rem 1.5rem; border-radius: 1rem;
        box-shadow: 0 0.5rem 2rem rgb(0 0 0 / 0.12); }
      h1 { font-size: 1.6rem; margin: 0 0 0.5rem; }
      .big { font-size: 3rem; font-weight: 700; margin: 0.5rem 0; font-variant-numeric: tabular-nums; }
      progress { width: 100%; height: 1rem; accent-color: var(--accent); }
      dl { display: grid; grid-template-columns: auto 1fr; gap: 0.25rem 1rem; margin: 1rem 0; }
      dt { color: GrayText; } dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
      .note { color: GrayText; font-size: 0.9rem; }
      [hidden] { display: none; }
    </style>
    </head>
    <body>
    <main aria-labelledby="title">
      <h1 id="title">You are in line</h1>
      <p id="message" role="status" aria-live="polite">{{message}}</p>
      <section id="countdown-box" hidden>
        <p>The sale starts in</p>
        <p class="big" id="countdown" aria-live="off">–</p>
      </section>
      <section id="work-box" hidden>
        <label for="work" class="note">Checking your browser before it joins the line: a few seconds</label>
        <progress id="work" max="100" value="0">0%</progress>
      </section>
      <section id="queue-box">
        <p class="big"><span id="position">{{position}}</span><span class="note"> in line</span></p>
        <label for="progress" class="note">Progress</label>
        <progress id="progress" max="100" value="{{progress}}">{{progress}}%</progress>
        <dl>
          <dt>People ahead of you</dt><dd id="ahead">{{ahead}}</dd>
          <dt>Waiting in total</dt><dd id="waiting">{{waiting}}</dd>
          <dt>Estimated wait</dt><dd id="eta">{{eta}}</dd>
        </dl>
      </section>
      <p class="note">Keep this page open: it moves you on by itself when it is your turn.
        Refreshing or opening another tab keeps your place.</p>
    </main>
    <script>
    (function () {
      var room = "{{room}}", startsAt = Number("{{startsAt}}"), poll = Number("{{pollAfterMs}}") || 2000;
      var challenge = "{{challenge}}", bits = Number("{{bits}}") || 0;
      var first = null;
      function $(id) { return document.getElementById(id); }
      function wait(seconds) {
        if (seconds === null || seconds === undefined) return "unknown while the sale is paused";
        if (seconds < 60) return "less than a minute";
        var minutes = Math.round(seconds / 60);
        if (minutes < 90) return "about " + minutes + " minute" + (minutes === 1 ? "" : "s");
        return "about " + Math.round(minutes / 60) + " hours";
      }
      function tick() {
        var left = Math.max(0, Math.round((startsAt - Date.now()) / 1000));
        $("countdown-box").hidden = !(startsAt > Date.now());
        var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
        $("countdown").textContent = (h ? h + ":" : "") + String(m).padStart(2, "0") + ":" + String(s).padStart(2, "0");
      }
      function show(status) {
        if (status.admitted) { $("message").textContent = "It is your turn — taking you in…"; location.reload(); return; }
        var messages = { paused: "The sale is paused. You keep your place.", closed: "This sale is closed.",
          full: "The line is full right now. We will keep trying." };
        $("message").textContent = messages[status.state] || "Thank you for waiting. We will take you in as soon as we can.";
        if (status.position !== null) {
          if (first === null || status.position > first) first = status.position;
          $("position").textContent = status.position.toLocaleString();
          $("ahead").textContent = Math.max(0, status.position - 1).toLocaleString();
          $("waiting").textContent = (status.waiting || status.position).toLocaleString();
          $("eta").textContent = wait(status.etaSeconds);
          $("progress").value = first > 1 ? Math.round(100 * (first - status.position) / (first - 1)) : 0;
        }
        poll = status.pollAfterMs || poll;
      }
      // Proof of work (the room's challenge_bits): workers, one per core up to four, hash with
      // WebCrypto until SHA-256("<challenge>.<n>") starts with `bits` zero bits (worker w of k
      // tries n = w, w + k, w + 2k, …); the first solution buys the place.
      var solver = "onmessage = function (e) {" +
        "  var c = e.data.c, b = e.data.b, w = e.data.w, k = e.data.k, text = new TextEncoder(), n = 0, batch = 512;" +
        "  function zeros(d) { var a = new Uint8Array(d), z = 0;" +
        "    for (var i = 0; i < a.length; i++) { if (a[i] === 0) { z += 8; continue; } return z + Math.clz32(a[i]) - 24; }" +
        "    return z; }" +
        "  function round() { var all = [];" +
        "    for (var i = 0; i < batch; i++) all.push(crypto.subtle.digest('SHA-256', text.encode(c + '.' + ((n + i) * k + w))));" +
        "    Promise.all(all).then(function (digests) {" +
        "      for (var i = 0; i < digests.length; i++) if (zeros(digests[i]) >= b) { postMessage({ done: String((n + i) * k + w), tries: n + i + 1 }); return; }" +
        "      n += batch; postMessage({ tries: n }); round(); }); }" +
        "  round(); };";
      function solve(given, difficulty) {
        $("message").textContent = "Checking your browser before you join the line…";
        $("work-box").hidden = false; $("queue-box").hidden = true;
        if (!window.crypto || !crypto.subtle || !window.Worker) {
          $("message").textContent = "This page needs a secure (https) connection and a current browser to join the line.";
          return;
        }
        var expected = Math.pow(2, difficulty), started = Date.now(), done = false;
        var count = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)), tries = [], workers = [];
        var url = URL.createObjectURL(new Blob([solver], { type: "text/javascript" }));
        for (var w = 0; w < count; w++) {
          (function (index) {
            var worker = new Worker(url);
            tries[index] = 0;
            worker.onmessage = function (e) {
              if (done) return;
              tries[index] = e.data.tries;
              var all = tries.reduce(function (sum, t) { return sum + t; }, 0);
              // The chance of having found one by now: it moves steadily and never stalls at 100.
              $("work").value = Math.min(99, Math.round(100 * (1 - Math.exp(-all / expected))));
              if (e.data.done === undefined) return;
              done = true;
              workers.forEach(function (other) { other.terminate(); });
              document.documentElement.dataset.tries = String(all);
              document.documentElement.dataset.solvedMs = String(Date.now() - started);
              fetch("/_foyer/solve?room=" + encodeURIComponent(room) + "&challenge=" + encodeURIComponent(given) +
                "&solution=" + e.data.done, { method: "POST", headers: { Accept: "application/json" }, credentials: "same-origin" })
                .then(function (r) { return r.json(); })
                .then(function (status) { $("work").value = 100; $("work-box").hidden = true; $("queue-box").hidden = false; handle(status); })
                .catch(function () { setTimeout(next, 2000); });
            };
            workers.push(worker);
            worker.postMessage({ c: given, b: difficulty, w: index, k: count });
          })(w);
        }
      }
      // A challenge is solved before anything else; otherwise the queue is shown and polled.
      function handle(status) {
        if (status.challenge) { solve(status.challenge, status.bits); return; }
        show(status);
        setTimeout(next, poll);
      }
      function next() {
        fetch("/_foyer/status?room=" + encodeURIComponent(room), { headers: { Accept: "application/json" }, credentials: "same-origin" })
          .then(function (r) {
            return r.json().then(function (status) {
              // Asked too soon (another tab of this visitor polled a moment ago): ask again when told.
              if (r.status === 429 && status.error === "poll_too_soon") {
                setTimeout(next, 1000 * (Number(r.headers.get("Retry-After")) || 1));
                return;
              }
              handle(status);
            });
          })
          .catch(function () { $("message").textContent = "Reconnecting… you keep your place."; setTimeout(next, poll); });
      }
      tick(); setInterval(tick, 1000);
      if (challenge) { solve(challenge, bits); } else { setTimeout(next, poll); }
    })();
    </script>
    </body>
    </html>
    """#
}
