/// The operators' dashboard, `GET /` on the admin port (DESIGN §5): one self-contained page
/// (no external assets). It holds no data itself: it asks for the admin token (kept in the
/// tab's sessionStorage), then polls `GET /rooms` with it every 2 seconds, draws the last
/// ten minutes per room, and changes rate, cap, session length and state with `PATCH`, which
/// every gateway follows on its next tick.
enum Dashboard {
  static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Foyer — operations</title>
    <style>
      :root { color-scheme: light dark; --ink: #1d2330; --muted: #5b6475; --line: #d7dbe3; --accent: #2a62d8; --warn: #b4441c; --bg: #f6f7f9; --card: #fff; }
      @media (prefers-color-scheme: dark) { :root { --ink: #e8ebf1; --muted: #a3abba; --line: #343b48; --bg: #12151b; --card: #1b2029; --accent: #7aa2ff; --warn: #ff9a6e; } }
      * { box-sizing: border-box; }
      body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
      header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; padding: 1rem 1.5rem; border-bottom: 1px solid var(--line); background: var(--card); }
      h1 { font-size: 1.2rem; margin: 0; }
      main { padding: 1.5rem; display: grid; gap: 1.5rem; max-width: 1200px; margin: 0 auto; }
      .room { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1.2rem 1.4rem; }
      .room h2 { margin: 0 0 .2rem; font-size: 1.15rem; }
      .state { display: inline-block; padding: .05rem .55rem; border-radius: 999px; font-size: .8rem; border: 1px solid var(--line); margin-left: .4rem; }
      .state.paused, .state.closed { color: var(--warn); border-color: var(--warn); }
      .numbers { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: .8rem; margin: 1rem 0; }
      .numbers div { border-left: 3px solid var(--line); padding-left: .6rem; }
      .numbers b { display: block; font-size: 1.45rem; font-variant-numeric: tabular-nums; }
      .numbers span { color: var(--muted); font-size: .82rem; }
      .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 1rem; }
      figure { margin: 0; }
      figcaption { color: var(--muted); font-size: .82rem; }
      svg { width: 100%; height: 70px; display: block; }
      form.controls { display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; margin-top: 1rem; padding-top: 1rem; border-top: 1px solid var(--line); }
      label { display: grid; gap: .2rem; font-size: .82rem; color: var(--muted); }
      input, select, button { font: inherit; padding: .35rem .5rem; border-radius: 6px; border: 1px solid var(--line); background: var(--bg); color: var(--ink); }
      input[type=number] { width: 8.5rem; }
      button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
      #status { color: var(--muted); font-size: .85rem; }
      #login { display: flex; gap: .5rem; align-items: end; }
      #defences { max-width: 1200px; margin: 1.5rem auto 0; padding: 0 1.5rem; box-sizing: border-box; }
      #defences h2 { font-size: 1.05rem; margin: 0 0 .4rem; }
      #defences dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr) 5rem); gap: .2rem .8rem; }
      #defences dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; }
      .rules { margin: .3rem 0; padding-left: 1.2rem; } .rule.block { color: var(--warn); }
      .error { color: var(--warn); }
    </style>
    </head>
    <body>
    <header>
      <h1>Foyer — operations</h1>
      <form id="login"><label>Admin token <input id="token" type="password" autocomplete="off" required></label> <button>Connect</button></form>
      <p id="status" role="status" aria-live="polite">Enter the admin token to connect.</p>
    </header>
    <section id="defences" aria-labelledby="defences-title" hidden>
      <h2 id="defences-title">This gateway's defences</h2>
      <dl id="defence-counts"></dl>
    </section>
    <main id="rooms" aria-live="off"></main>
    <script>
    (function () {
      // `make demo` prints a link with the token in the fragment (never sent to a server);
      // it moves into this tab's storage and out of the address bar and history at once.
      if (location.hash.indexOf("#token=") === 0) {
        sessionStorage.setItem("foyer-admin-token", decodeURIComponent(location.hash.slice(7)));
        history.replaceState(null, "", location.pathname);
      }
      var token = sessionStorage.getItem("foyer-admin-token") || "";
      var series = {};   // room -> [{t, waiting, active, perMinute}]
      var built = {};
      function $(id) { return document.getElementById(id); }
      function el(tag, attrs, text) {
        var node = document.createElement(tag);
        for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
        if (text !== undefined) node.textContent = text;
        return node;
      }
      function api(method, path, body) {
        return fetch(path, { method: method, headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
          body: body ? JSON.stringify(body) : undefined }).then(function (r) {
            return r.json().then(function (json) { if (!r.ok) throw new Error(json.message || r.status); return json; });
          });
      }
      function spark(points, key, cap) {
        var width = 240, height = 70, max = Math.max(1, cap || 0);
        points.forEach(function (p) { max = Math.max(max, p[key]); });
        var path = points.map(function (p, i) {
          var x = points.length < 2 ? 0 : i * width / (points.length - 1);
          var y = height - 4 - (height - 8) * p[key] / max;
          return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
        }).join(" ");
        var capLine = cap ? '<line x1="0" x2="' + width + '" y1="' + (height - 4 - (height - 8) * cap / max).toFixed(1) +
          '" y2="' + (height - 4 - (height - 8) * cap / max).toFixed(1) + '" stroke="currentColor" stroke-dasharray="4 4" opacity=".4"/>' : "";
        return '<svg viewBox="0 0 ' + width + ' ' + height + '" preserveAspectRatio="none" role="img" aria-label="' + key +
          ' over the last minutes">' + capLine + '<path d="' + path + '" fill="none" stroke="var(--accent)" stroke-width="2"/></svg>';
      }
      function eta(room) {
        var rate = room.settings.rate_per_minute;
        if (room.settings.state !== "queue" || !rate) return "—";
        var minutes = room.live.waiting / rate;
        return minutes < 1 ? "< 1 min" : Math.round(minutes) + " min";
      }
      function build(room) {
        var card = el("section", { class: "room", id: "room-" + room.id, "aria-labelledby": "title-" + room.id });
        card.innerHTML = '<h2 id="title-' + room.id + '"></h2>' +
          '<div class="numbers">' +
          ['waiting', 'active', 'perMinute', 'noShows', 'abandoned', 'eta'].map(function (k) {
            return '<div><b data-k="' + k + '">–</b><span>' + { waiting: "waiting", active: "active / cap",
              perMinute: "admitted last minute", noShows: "no-shows", abandoned: "abandoned", eta: "wait for the last in line" }[k] + '</span></div>';
          }).join("") + '</div>' +
          '<div class="charts"><figure><figcaption>Waiting</figcaption><div data-chart="waiting"></div></figure>' +
          '<figure><figcaption>Active shoppers (dashed: cap)</figcaption><div data-chart="active"></div></figure>' +
          '<figure><figcaption>Admissions per minute (dashed: rate)</figcaption><div data-chart="perMinute"></div></figure></div>' +
          '<p class="guards" data-guards></p><ul class="rules" data-rules aria-label="Traffic rules"></ul>' +
          '<form class="controls">' +
          '<label>Rate per minute <input type="number" min="0" name="rate_per_minute"></label>' +
          '<label>Max active <input type="number" min="0" name="max_active"></label>' +
          '<label>Session seconds <input type="number" min="10" name="session_seconds"></label>' +
          '<label>State <select name="state"><option>queue</option><option>paused</option><option>closed</option><option>passthrough</option></select></label>' +
          '<button>Apply to every gateway</button> <span class="result" role="status"></span></form>';
        card.querySelector("h2").textContent = room.id;
        card.querySelector("form").addEventListener("submit", function (event) {
          event.preventDefault();
          var form = event.target, change = {};
          ["rate_per_minute", "max_active", "session_seconds"].forEach(function (name) {
            if (form[name].value !== "") change[name] = Number(form[name].value);
          });
          change.state = form.state.value;
          var result = form.querySelector(".result");
          api("PATCH", "/rooms/" + encodeURIComponent(room.id), change).then(function () {
            result.textContent = "Applied."; result.className = "result"; built[room.id].dirty = false; refresh();
          }).catch(function (error) { result.textContent = error.message; result.className = "result error"; });
        });
        card.querySelector("form").addEventListener("input", function () { built[room.id].dirty = true; });
        $("rooms").appendChild(card);
        built[room.id] = { card: card, dirty: false };
      }
      function render(room) {
        if (!built[room.id]) build(room);
        var card = built[room.id].card, s = room.settings, live = room.live;
        var points = series[room.id] = (series[room.id] || []).concat([{ t: Date.now(), waiting: live.waiting,
          active: live.active, perMinute: live.admitted_last_minute }]).filter(function (p) { return Date.now() - p.t < 600000; });
        var title = card.querySelector("h2");
        title.textContent = room.id;
        var badge = el("span", { class: "state " + s.state }, s.state);
        title.appendChild(badge);
        var values = { waiting: live.waiting.toLocaleString(), active: live.active + " / " + s.max_active,
          perMinute: live.admitted_last_minute + " / " + s.rate_per_minute, noShows: live.no_shows, abandoned: live.abandoned, eta: eta(room) };
        card.querySelectorAll("[data-k]").forEach(function (node) { node.textContent = values[node.dataset.k]; });
        card.querySelector('[data-chart="waiting"]').innerHTML = spark(points, "waiting");
        card.querySelector('[data-chart="active"]').innerHTML = spark(points, "active", s.max_active);
        card.querySelector('[data-chart="perMinute"]').innerHTML = spark(points, "perMinute", s.rate_per_minute);
        card.querySelector("[data-guards]").textContent = "Places per client: " +
          (s.max_places_per_client ? s.max_places_per_client + " a day" : "no limit") + " · proof of work: " +
          (s.challenge_bits ? s.challenge_bits + " bits" : "off");
        api("GET", "/rooms/" + encodeURIComponent(room.id) + "/rules").then(function (json) {
          var list = card.querySelector("[data-rules]");
          list.textContent = "";
          if (!json.rules.length) list.appendChild(el("li", {}, "No traffic rules: everyone without a pass waits in line."));
          json.rules.forEach(function (rule) {
            var words = [rule.action];
            if (rule.cidr) words.push(rule.cidr);
            if (rule.user_agent) words.push('User-Agent contains "' + rule.user_agent + '"');
            if (rule.note) words.push("(" + rule.note + ")");
            var item = el("li", { class: "rule " + rule.action }, words.join(" "));
            item.appendChild(el("b", {}, " " + rule.hits.toLocaleString() + " hits"));
            list.appendChild(item);
          });
        }).catch(function () {});
        if (!built[room.id].dirty) {
          var form = card.querySelector("form");
          form.rate_per_minute.value = s.rate_per_minute; form.max_active.value = s.max_active;
          form.session_seconds.value = s.session_seconds; form.state.value = s.state;
        }
      }
      // Refusals by reason, challenges and rule hits, from this gateway's /metrics.
      var counted = [
        [/^foyer_refused_requests_total\{reason="([a-z_]+)"\} (\S+)$/, function (m) { return "refused: " + m[1].replace(/_/g, " "); }],
        [/^foyer_challenges_(issued|solved)_total (\S+)$/, function (m) { return "challenges " + m[1]; }],
        [/^foyer_traffic_rule_hits_total\{action="(allow|block)"\} (\S+)$/, function (m) { return "rule hits: " + m[1]; }]
      ];
      function defences() {
        fetch("/metrics", { headers: { "Authorization": "Bearer " + token } }).then(function (r) {
          return r.ok ? r.text() : "";
        }).then(function (text) {
          var list = $("defence-counts");
          list.textContent = "";
          text.split("\n").forEach(function (line) {
            counted.forEach(function (entry) {
              var m = entry[0].exec(line);
              if (!m || Number(m[2]) === 0) return;
              list.appendChild(el("dt", {}, entry[1](m)));
              list.appendChild(el("dd", {}, Number(m[2]).toLocaleString()));
            });
          });
          if (text && !list.children.length) list.appendChild(el("dt", {}, "Nothing refused, challenged or ruled yet."));
          $("defences").hidden = !text;
        }).catch(function () {});
      }
      function refresh() {
        if (!token) return;
        defences();
        api("GET", "/rooms").then(function (json) {
          json.rooms.forEach(render);
          $("status").textContent = "Live — updated " + new Date().toLocaleTimeString();
          $("status").className = "";
        }).catch(function (error) { $("status").textContent = "Not connected: " + error.message; $("status").className = "error"; });
      }
      $("login").addEventListener("submit", function (event) {
        event.preventDefault();
        token = $("token").value.trim();
        sessionStorage.setItem("foyer-admin-token", token);
        refresh();
      });
      if (token) { $("token").value = token; }
      refresh();
      setInterval(refresh, 2000);
    })();
    </script>
    </body>
    </html>
    """#
}
