/// The shop a browser sees: one self-contained page (no external assets, no build step)
/// served for `GET /events`, `GET /events/{id}` and `GET /orders` when the browser asks for
/// HTML; apps asking for JSON get the API on the same URLs. The page drives the JSON API:
/// event list, seat map (SVG, polled with `If-None-Match`), selection of up to the hold limit,
/// hold with a countdown, checkout with the simulated card form, confirmation, my orders.
enum ShopPage {
  static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>BoxOffice</title>
    <style>
      :root { color-scheme: light dark; --ink: #1c2130; --muted: #5d6576; --line: #d9dde5; --bg: #f7f7fa; --card: #fff;
        --accent: #2a62d8; --free: #2f9e5b; --held: #c9a227; --sold: #9aa1ad; --mine: #2a62d8; --warn: #b4441c; }
      @media (prefers-color-scheme: dark) { :root { --ink: #e9ecf2; --muted: #a4acbb; --line: #343b48; --bg: #12151b; --card: #1b2029;
        --accent: #7aa2ff; --mine: #7aa2ff; --sold: #4d5462; --warn: #ff9a6e; } }
      * { box-sizing: border-box; }
      body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
      header { display: flex; justify-content: space-between; align-items: center; padding: .9rem 1.4rem; background: var(--card); border-bottom: 1px solid var(--line); }
      header a { color: var(--ink); text-decoration: none; font-weight: 700; }
      nav a { font-weight: 400; margin-left: 1rem; color: var(--accent); }
      main { max-width: 1100px; margin: 0 auto; padding: 1.4rem; }
      .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 1.1rem 1.3rem; margin-bottom: 1rem; }
      .events a { display: block; color: inherit; text-decoration: none; }
      .muted { color: var(--muted); }
      .notice { border-left: 4px solid var(--warn); padding: .5rem .8rem; background: var(--card); margin: 1rem 0; }
      .notice.ok { border-color: var(--free); }
      button { font: inherit; padding: .55rem 1.1rem; border-radius: 8px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
      button:disabled { opacity: .5; cursor: default; }
      button.secondary { background: transparent; color: var(--accent); }
      select, input { font: inherit; padding: .45rem .6rem; border: 1px solid var(--line); border-radius: 8px; background: var(--bg); color: var(--ink); }
      .legend span { display: inline-flex; align-items: center; gap: .35rem; margin-right: 1rem; font-size: .9rem; }
      .legend i { width: .9rem; height: .9rem; border-radius: 50%; display: inline-block; }
      svg.map { width: 100%; height: auto; max-height: 60vh; background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
      svg.map circle { cursor: pointer; }
      svg.map circle[data-status="sold"], svg.map circle[data-status="held"] { cursor: not-allowed; }
      .bar { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; justify-content: space-between; }
      .countdown { font-variant-numeric: tabular-nums; font-weight: 700; }
      .countdown.urgent { color: var(--warn); }
      table { border-collapse: collapse; width: 100%; }
      td, th { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); }
      code { font-size: .8rem; word-break: break-all; }
      .tickets { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 1rem; margin: .8rem 0; }
      .ticket { margin: 0; border: 1px solid var(--line); border-radius: 10px; padding: .8rem; text-align: center; background: var(--bg); }
      .ticket img { width: 100%; max-width: 16rem; height: auto; background: #fff; border-radius: 6px; image-rendering: pixelated; }
      .ticket.revoked img { opacity: .25; }
      .ticket b { display: block; margin-top: .4rem; }
      .badge { display: inline-block; font-size: .8rem; padding: .05rem .5rem; border-radius: 99px; border: 1px solid var(--line); }
      .badge.used { border-color: var(--muted); color: var(--muted); }
      .badge.revoked, .badge.cancelled { border-color: var(--warn); color: var(--warn); }
      .confirm { display: inline-flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
    </style>
    </head>
    <body>
    <header><a href="/events">BoxOffice</a><nav><a href="/events">Events</a><a href="/orders">My orders</a></nav></header>
    <main id="app" aria-live="polite"><p class="muted">Loading…</p></main>
    <script>
    (function () {
      var app = document.getElementById("app");
      var json = { "Accept": "application/json", "Content-Type": "application/json" };
      function money(cents) { return (cents / 100).toLocaleString(undefined, { style: "currency", currency: "EUR" }); }
      function esc(text) { var d = document.createElement("div"); d.textContent = String(text); return d.innerHTML; }
      function call(method, path, body, headers) {
        return fetch(path, { method: method, headers: Object.assign({}, json, headers || {}), credentials: "same-origin",
          body: body ? JSON.stringify(body) : undefined }).then(function (r) {
            if (r.status === 304) return { status: 304 };
            return r.json().catch(function () { return {}; }).then(function (data) {
              // Back in the waiting room (the gateway answered instead of the shop): go there.
              if (data && data.room && data.admitted === false) { location.reload(); throw new Error("waiting"); }
              return { status: r.status, data: data, etag: r.headers.get("ETag") };
            });
          });
      }
      function notice(text, ok) { return '<p class="notice' + (ok ? ' ok' : '') + '" role="alert">' + esc(text) + '</p>'; }

      function eventList() {
        document.title = "Events — BoxOffice";
        call("GET", "/events?limit=50").then(function (r) {
          app.innerHTML = "<h1>Events</h1>" + r.data.events.map(function (e) {
            return '<div class="card events"><a href="/events/' + e.id.toLowerCase() + '"><strong>' + esc(e.name) + '</strong><br>' +
              '<span class="muted">' + esc(e.venue) + ", " + esc(e.city) + " · " + new Date(e.startsAt).toLocaleString() +
              " · from " + money(e.minPriceCents) + " · " + e.seatsAvailable.toLocaleString() + " seats left</span></a></div>";
          }).join("");
        });
      }

      function eventPage(id) {
        var state = { event: null, seats: [], etag: null, section: null, selected: [], hold: null, timer: null, poll: null, key: null };
        call("GET", "/events/" + id).then(function (r) {
          if (r.status !== 200) { app.innerHTML = notice("This event does not exist."); return; }
          state.event = r.data;
          document.title = r.data.name + " — BoxOffice";
          return call("GET", "/events/" + id + "/seats").then(function (m) {
            state.seats = m.data.seats; state.etag = m.etag;
            state.section = state.seats.length ? state.seats[0].section : null;
            render(); state.poll = setInterval(refresh, 3000);
          });
        });
        function sections() { var seen = []; state.seats.forEach(function (s) { if (seen.indexOf(s.section) < 0) seen.push(s.section); }); return seen; }
        function refresh() {
          if (state.hold) return;
          call("GET", "/events/" + id + "/seats", null, state.etag ? { "If-None-Match": state.etag } : {}).then(function (m) {
            if (m.status === 304) return;
            state.seats = m.data.seats; state.etag = m.etag;
            var taken = state.selected.filter(function (seatId) { return !seatById(seatId) || seatById(seatId).status !== "available"; });
            if (taken.length) {
              state.selected = state.selected.filter(function (s) { return taken.indexOf(s) < 0; });
              state.message = taken.length + (taken.length === 1 ? " seat was" : " seats were") + " just taken by someone else and removed from your selection.";
            }
            render();
          });
        }
        function seatById(seatId) { for (var i = 0; i < state.seats.length; i++) if (state.seats[i].id === seatId) return state.seats[i]; return null; }
        // Available seats are green, darker the pricier (against the event's price range).
        function tier(cents) {
          var prices = state.seats.map(function (s) { return s.priceCents; });
          var low = Math.min.apply(null, prices), high = Math.max.apply(null, prices);
          var share = high > low ? (cents - low) / (high - low) : 0.5;
          return "hsl(145, 55%, " + Math.round(52 - 22 * share) + "%)";
        }
        function map() {
          var seats = state.seats.filter(function (s) { return s.section === state.section; });
          var rows = []; seats.forEach(function (s) { if (rows.indexOf(s.row) < 0) rows.push(s.row); });
          var perRow = Math.max.apply(null, seats.map(function (s) { return s.number; }).concat([1]));
          var gap = 16, width = perRow * gap + 40, height = rows.length * gap + 30;
          var circles = seats.map(function (s) {
            var mine = state.selected.indexOf(s.id) >= 0;
            var color = mine ? "var(--mine)" : s.status === "available" ? tier(s.priceCents) : s.status === "held" ? "var(--held)" : "var(--sold)";
            return '<circle data-id="' + s.id + '" data-status="' + s.status + '" cx="' + (30 + (s.number - 1) * gap) + '" cy="' +
              (20 + rows.indexOf(s.row) * gap) + '" r="' + (mine ? 7 : 5.5) + '" fill="' + color + '"><title>Row ' + esc(s.row) +
              ' seat ' + s.number + ' · ' + money(s.priceCents) + ' · ' + s.status + '</title></circle>';
          }).join("");
          var labels = rows.map(function (row, i) { return '<text x="4" y="' + (24 + i * gap) + '" font-size="10" fill="currentColor">' + esc(row) + '</text>'; }).join("");
          return '<svg class="map" viewBox="0 0 ' + width + ' ' + height + '" role="img" aria-label="Seat map of ' + esc(state.section) + '">' + labels + circles + '</svg>';
        }
        function render() {
          var e = state.event, chosen = state.selected.map(seatById).filter(Boolean);
          var total = chosen.reduce(function (sum, s) { return sum + s.priceCents; }, 0);
          var html = '<h1>' + esc(e.name) + '</h1><p class="muted">' + esc(e.venue) + ", " + esc(e.city) + " · " + new Date(e.startsAt).toLocaleString() + "</p>";
          if (state.message) { html += notice(state.message); state.message = null; }
          if (state.hold) { app.innerHTML = html + holdView(); wireHold(); return; }
          if (state.seats.length && state.seats.every(function (s) { return s.status !== "available"; })) html += waitlistCard();
          html += '<div class="bar"><label>Section <select id="section">' + sections().map(function (name) {
            var inSection = state.seats.filter(function (s) { return s.section === name; });
            var free = inSection.filter(function (s) { return s.status === "available"; }).length;
            var prices = inSection.map(function (s) { return s.priceCents; });
            var low = Math.min.apply(null, prices), high = Math.max.apply(null, prices);
            return '<option value="' + esc(name) + '"' + (name === state.section ? " selected" : "") + '>' + esc(name) + " — " +
              money(low) + (high > low ? "–" + money(high) : "") + " · " + free + " free" + '</option>'; }).join("") + '</select></label>' +
            '<div class="legend"><span><i style="background:var(--free)"></i>available (darker: pricier)</span><span><i style="background:var(--mine)"></i>your choice</span>' +
            '<span><i style="background:var(--held)"></i>held</span><span><i style="background:var(--sold)"></i>sold</span></div></div>' +
            map() + '<div class="bar card"><span>' + (chosen.length ? chosen.length + " seat" + (chosen.length > 1 ? "s" : "") + ": " +
            chosen.map(function (s) { return esc(s.section + " " + s.row + s.number); }).join(", ") + " · <strong>" + money(total) + "</strong>" :
            "Choose up to 6 seats on the map.") + '</span><button id="hold"' + (chosen.length ? "" : " disabled") + '>Hold these seats</button></div>';
          app.innerHTML = html;
          wireWaitlist();
          document.getElementById("section").onchange = function (ev) { state.section = ev.target.value; render(); };
          app.querySelector("svg").onclick = function (ev) {
            var id = Number(ev.target.getAttribute && ev.target.getAttribute("data-id"));
            if (!id) return;
            var seat = seatById(id), at = state.selected.indexOf(id);
            if (at >= 0) state.selected.splice(at, 1);
            else if (seat.status !== "available") { state.message = "That seat is not available."; }
            else if (state.selected.length >= 6) { state.message = "You can hold up to 6 seats."; }
            else state.selected.push(id);
            render();
          };
          document.getElementById("hold").onclick = function (ev) {
            ev.target.disabled = true;
            call("POST", "/events/" + id + "/holds", { seatIds: state.selected }).then(function (r) {
              if (r.status === 201) { state.hold = r.data; state.selected = []; state.key = null; startTimer(); render(); return; }
              var gone = (r.data.unavailableSeatIds || []);
              state.selected = state.selected.filter(function (s) { return gone.indexOf(s) < 0; });
              state.message = r.status === 409 ? "Sorry — " + gone.length + " of those seats were just taken. Pick others." : (r.data.message || "Could not hold the seats.");
              refresh(); render();
            });
          };
        }
        // Sold out: a place on the waitlist; the offer is followed under My orders.
        function waitlistCard() {
          if (state.joined) return '<div class="card">' + notice("You are number " + state.joined.position + " on the waitlist. When seats come back they are held for you; follow it under My orders.", true) + '</div>';
          return '<form class="card" id="waitlist"><h2>Sold out</h2><p>Join the waitlist: when seats come back they are offered in order, held for you for a while.</p>' +
            '<label>Seats <select id="wlseats">' + [1, 2, 3, 4, 5, 6].map(function (n) { return '<option>' + n + '</option>'; }).join("") + '</select></label> <button>Join the waitlist</button></form>';
        }
        function wireWaitlist() {
          var form = document.getElementById("waitlist"); if (!form) return;
          form.onsubmit = function (ev) {
            ev.preventDefault();
            call("POST", "/events/" + id + "/waitlist", { seats: Number(document.getElementById("wlseats").value) }).then(function (r) {
              if (r.status === 201) state.joined = r.data; else state.message = r.data.message || "Could not join the waitlist.";
              render();
            });
          };
        }
        function holdView() {
          var h = state.hold;
          return '<div class="card"><h2>Your seats are held</h2><p>Time left to pay: <span id="countdown" class="countdown"></span></p>' +
            '<table><tr><th>Seat</th><th>Price</th></tr>' + h.seats.map(function (s) {
              return '<tr><td>' + esc(s.section + ", row " + s.row + ", seat " + s.number) + '</td><td>' + money(s.priceCents) + '</td></tr>'; }).join("") +
            '<tr><th>Total</th><th>' + money(h.totalCents) + '</th></tr></table></div>' +
            '<form class="card" id="pay"><h2>Payment</h2><label>Card number <input id="card" inputmode="numeric" autocomplete="cc-number" required value="4242 4242 4242 4242"></label> ' +
            '<button id="paybutton">Pay ' + money(h.totalCents) + '</button> <button type="button" class="secondary" id="release">Release seats</button>' +
            '<p class="muted">Test cards: 4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined; 4000 0000 0000 0077 is slow.</p></form>';
        }
        function startTimer() {
          clearInterval(state.timer);
          state.timer = setInterval(function () {
            var node = document.getElementById("countdown"); if (!node || !state.hold) return;
            var left = Math.max(0, Math.round((new Date(state.hold.expiresAt) - Date.now()) / 1000));
            node.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
            node.className = "countdown" + (left < 120 ? " urgent" : "");
            if (left === 0) { clearInterval(state.timer); state.hold = null; state.message = "Your hold expired and the seats went back on sale."; refresh(); render(); }
          }, 500);
        }
        function wireHold() {
          document.getElementById("release").onclick = function () {
            call("DELETE", "/holds/" + state.hold.id).then(function () { state.hold = null; clearInterval(state.timer); refresh(); render(); });
          };
          document.getElementById("pay").onsubmit = function (ev) {
            ev.preventDefault();
            var button = document.getElementById("paybutton");
            if (button.disabled) return;  // a double click pays once (and the key makes retries safe)
            button.disabled = true; button.textContent = "Paying…";
            var card = document.getElementById("card").value;
            if (!state.key || state.keyCard !== card) { state.key = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)); state.keyCard = card; }
            call("POST", "/holds/" + state.hold.id + "/checkout", { card: { number: card } }, { "Idempotency-Key": state.key }).then(function (r) {
              if (r.status === 201) { clearInterval(state.timer); clearInterval(state.poll); confirmation(r.data); return; }
              if (r.status === 410) { clearInterval(state.timer); state.hold = null; state.message = r.data.message; refresh(); render(); return; }
              state.message = r.data.message || "The payment did not go through."; state.key = null; render();
            }).catch(function () { button.disabled = false; button.textContent = "Pay"; });
          };
        }
        function confirmation(order) {
          app.innerHTML = '<h1>Thank you — you are going!</h1>' + notice("Order " + order.id.toLowerCase() + " is confirmed.", true) +
            '<div class="card">' + tickets(order) + '<p>Total paid: <strong>' + money(order.totalCents) + '</strong></p>' +
            '<p class="muted">Show a ticket\'s code at the door. Your tickets stay under <a href="/orders">My orders</a>, with no need to queue again.</p></div>';
        }
      }

      // Each ticket as its QR symbol (served by BoxOffice for the buyer's own order) and seat.
      function tickets(order) {
        return '<div class="tickets">' + order.tickets.map(function (t) {
          var status = t.status || "valid";
          return '<figure class="ticket ' + esc(status) + '"><img alt="Ticket code ' + esc(t.code) + '" src="/orders/' + order.id.toLowerCase() +
            '/tickets/' + t.id.toLowerCase() + '/qr.svg"><figcaption><b>' + esc(t.section + ", row " + t.row + ", seat " + t.number) + '</b>' +
            (status === "valid" ? "" : '<span class="badge ' + esc(status) + '">' + (status === "used" ? "used at the door" : "cancelled") + '</span><br>') +
            '<code>' + esc(t.code) + '</code></figcaption></figure>';
        }).join("") + '</div>';
      }

      function orders(message) {
        document.title = "My orders — BoxOffice";
        Promise.all([call("GET", "/orders"), call("GET", "/waitlist")]).then(function (answers) {
          var r = answers[0], waitlist = answers[1].status === 200 ? answers[1].data.entries : [];
          if (r.status !== 200) { app.innerHTML = "<h1>My orders</h1>" + notice(r.status === 401 ? "Your orders appear here once you have bought tickets in this browser." : (r.data.message || "Could not load your orders.")); return; }
          app.innerHTML = "<h1>My orders</h1>" + (message || "") + (r.data.orders.length ? r.data.orders.map(function (o) {
            var cancelled = o.status === "cancelled";
            var used = o.tickets.some(function (t) { return t.status === "used"; });
            return '<div class="card" data-order="' + o.id.toLowerCase() + '"><div class="bar"><span><strong>' + money(o.totalCents) + '</strong> · ordered ' +
              new Date(o.createdAt).toLocaleString() + (cancelled ? ' <span class="badge cancelled">cancelled</span>' : '') + '</span>' +
              (cancelled ? '' : used ? '<span class="muted">In use: no longer cancellable</span>' :
                '<span class="confirm"><button class="secondary" data-cancel="' + o.id.toLowerCase() + '">Cancel order</button></span>') + '</div>' +
              (o.refund ? '<p class="muted">Refund of ' + money(o.refund.amountCents) + ': ' + (o.refund.status === "succeeded" ? "paid back " + new Date(o.refund.completedAt).toLocaleString() : "on its way") + '.</p>' : '') +
              tickets(o) + '</div>'; }).join("") : '<p class="muted">No orders yet.</p>') + waitlistSection(waitlist);
          wireOffers(waitlist);
          app.querySelectorAll("[data-cancel]").forEach(function (button) {
            button.onclick = function () {
              var id = button.getAttribute("data-cancel"), box = button.parentNode;
              // A confirmation step: cancelling gives the seats away for good.
              box.innerHTML = '<span>Cancel and refund? Your seats go back on sale.</span><button data-yes>Yes, cancel</button><button class="secondary" data-no>Keep my tickets</button>';
              box.querySelector("[data-no]").onclick = function () { orders(); };
              box.querySelector("[data-yes]").onclick = function (ev) {
                ev.target.disabled = true;
                call("POST", "/orders/" + id + "/cancel").then(function (c) {
                  orders(c.status === 200 ? notice("The order is cancelled; the refund is on its way.", true) : notice(c.data.message || "The order could not be cancelled."));
                });
              };
            };
          });
        });
      }

      // The buyer's waitlist places: where they stand, and an offer to pay for before it runs out.
      function waitlistSection(entries) {
        if (!entries.length) return "";
        return "<h2>Waitlist</h2>" + entries.map(function (w) {
          var id = w.id.toLowerCase(), html = '<div class="card" data-entry="' + id + '"><div class="bar"><span><strong>' + w.seats + (w.seats > 1 ? " seats" : " seat") + '</strong> · ';
          if (w.status === "waiting") html += "number " + w.position + " in line";
          else if (w.status === "offered") html += '<strong>seats are held for you</strong> for <span class="countdown" data-until="' + esc(w.offer.expiresAt) + '"></span>';
          else html += { claimed: "bought: see your order above", lapsed: "the offer ran out", left: "you left the waitlist" }[w.status] || esc(w.status);
          html += '</span>' + (w.status === "waiting" || w.status === "offered" ? '<button class="secondary" data-leave="' + id + '">Leave the waitlist</button>' : "") + '</div>';
          if (w.status === "offered") {
            html += '<table><tr><th>Seat</th><th>Price</th></tr>' + w.offer.seats.map(function (s) {
              return '<tr><td>' + esc(s.section + ", row " + s.row + ", seat " + s.number) + '</td><td>' + money(s.priceCents) + '</td></tr>'; }).join("") +
              '<tr><th>Total</th><th>' + money(w.offer.totalCents) + '</th></tr></table>' +
              '<form data-pay="' + id + '"><label>Card number <input name="card" inputmode="numeric" autocomplete="cc-number" required value="4242 4242 4242 4242"></label> <button>Pay ' + money(w.offer.totalCents) + '</button></form>';
          }
          return html + '</div>';
        }).join("");
      }
      function wireOffers(entries) {
        clearInterval(window.offerTimer);
        window.offerTimer = setInterval(function () {
          app.querySelectorAll("[data-until]").forEach(function (node) {
            var left = Math.max(0, Math.round((new Date(node.getAttribute("data-until")) - Date.now()) / 1000));
            node.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
            if (left === 0) { clearInterval(window.offerTimer); setTimeout(function () { orders(); }, 1500); }
          });
        }, 500);
        app.querySelectorAll("[data-leave]").forEach(function (button) {
          button.onclick = function () {
            call("DELETE", "/waitlist/" + button.getAttribute("data-leave")).then(function () { orders(notice("You left the waitlist.", true)); });
          };
        });
        app.querySelectorAll("[data-pay]").forEach(function (form) {
          var key = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2);
          form.onsubmit = function (ev) {
            ev.preventDefault();
            var button = form.querySelector("button"); if (button.disabled) return;
            button.disabled = true; button.textContent = "Paying…";
            call("POST", "/waitlist/" + form.getAttribute("data-pay") + "/checkout", { card: { number: form.card.value } }, { "Idempotency-Key": key }).then(function (r) {
              orders(r.status === 201 ? notice("Bought — your tickets are below.", true) : notice(r.data.message || "The payment did not go through."));
            });
          };
        });
      }

      var path = location.pathname.replace(/\/+$/, "");
      var match = path.match(/^\/events\/([0-9a-fA-F-]{36})$/);
      if (match) eventPage(match[1]); else if (path === "/orders") orders(); else eventList();
    })();
    </script>
    </body>
    </html>
    """#
}
