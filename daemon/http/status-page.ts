// The status page: one static HTML file with its script inline, fed by the
// /status WebSocket. It shows host names and counts, never command lines;
// everything from the daemon goes in through textContent, never as HTML.
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sshmuxd status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.2rem; margin: 0 0 .25rem; }
  #jobs h2 { font-size: 1rem; margin: 1rem 0 .25rem; }
  #meta { color: #666; margin-bottom: 1rem; }
  #conn.down { color: #b00; font-weight: bold; }
  section.host { border: 1px solid #ccc; border-radius: 6px; padding: .75rem 1rem; margin-bottom: 1rem; }
  section.host h2 { font-size: 1rem; margin: 0 0 .5rem; }
  .state { font-size: .8rem; padding: .1rem .4rem; border-radius: 4px; background: #ddd; margin-left: .5rem; }
  .state.ok { background: #cfc; } .state.down, .state.failing { background: #fcc; } .state.backoff, .state.draining, .state.closed { background: #ffc; }
  table { border-collapse: collapse; margin: .25rem 0; }
  td, th { padding: .15rem .6rem .15rem 0; text-align: left; font-variant-numeric: tabular-nums; }
  .bar { display: inline-block; width: 120px; height: .7rem; background: #eee; vertical-align: middle; }
  .bar > i { display: block; height: 100%; background: #48c; }
  .errors { color: #a00; font-size: .85rem; }
  .breaker { font-size: .85rem; margin: .25rem 0; }
  .breaker.open, .breaker.half-open { color: #a00; font-weight: bold; }
  .transitions { color: #555; font-size: .85rem; }
</style>
</head>
<body>
<h1>sshmuxd</h1>
<div id="meta"><span id="conn">connecting...</span> <span id="summary"></span></div>
<div id="hosts"></div>
<div id="jobs"></div>
<div id="fleet"></div>
<script>
(function () {
  var hostsEl = document.getElementById('hosts');
  var jobsEl = document.getElementById('jobs');
  var connEl = document.getElementById('conn');
  var summaryEl = document.getElementById('summary');
  var fleetEl = document.getElementById('fleet');
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function row(cells, head) {
    var tr = el('tr');
    cells.forEach(function (c) { tr.appendChild(el(head ? 'th' : 'td', '', c)); });
    return tr;
  }
  function breakerText(h) {
    var state = h.breaker || 'closed';
    var down = ', down ' + Math.round(h.downForS || 0) + ' s';
    var text = state === 'open' ? 'marked down: next probe ' + (h.nextProbeInS > 0 ? 'in ' + h.nextProbeInS.toFixed(1) + ' s' : 'due') + down
      : state === 'half-open' ? 'probing' + down : 'closed';
    return 'circuit breaker ' + text + ' \\u00b7 ' + (h.breakerTransitionCount || 0) + ' transitions';
  }
  function render(s) {
    var frag = document.createDocumentFragment();
    (s.hosts || []).forEach(function (h) {
      var used = h.sessions || 0;
      var sec = el('section', 'host');
      sec.setAttribute('data-host', h.name);
      var title = el('h2', '', h.name);
      title.appendChild(el('span', 'state ' + h.state, h.state));
      sec.appendChild(title);
      var info = el('div');
      info.appendChild(el('span', '', h.destination + ' \\u00b7 '));
      if (h.via) info.appendChild(el('span', 'via', 'via jump host ' + h.via + ' \\u00b7 '));
      info.appendChild(el('span', 'sessions', used));
      info.appendChild(el('span', '', ' sessions open \\u00b7 '));
      info.appendChild(el('span', 'queued', h.queued || 0));
      info.appendChild(el('span', '', ' queued \\u00b7 handshakes ' + (h.handshakes.ok || 0) + ' ok, ' + (h.handshakes.failed || 0) + ' failed'));
      sec.appendChild(info);
      sec.appendChild(el('div', 'breaker ' + (h.breaker || 'closed'), breakerText(h)));
      (h.breakerTransitions || []).slice(-5).forEach(function (t) {
        sec.appendChild(el('div', 'transitions', new Date(t.atMs).toLocaleTimeString() + ' ' + t.from + ' \\u2192 ' + t.to + ': ' + t.reason));
      });
      var byCode = h.handshakes.byCode || {};
      var codes = Object.keys(byCode);
      if (codes.length) sec.appendChild(el('div', '', 'failures by class: ' + codes.map(function (c) { return c + ' ' + byCode[c]; }).join(', ')));
      var t = el('table');
      t.appendChild(row(['connection', 'state', 'sessions', 'round trip', 'last heard', ''], true));
      (h.connections || []).forEach(function (c) {
        var tr = row([c.id, c.state, (c.sessions || 0) + ' / ' + c.maxSessions, c.rttMs ? Math.round(c.rttMs) + ' ms' : '-', (c.heardAgoS || 0).toFixed(1) + ' s ago']);
        var td = el('td'); var bar = el('span', 'bar'); var fill = el('i');
        fill.style.width = Math.min(100, 100 * (c.sessions || 0) / (c.maxSessions || 1)) + '%';
        bar.appendChild(fill); td.appendChild(bar); tr.appendChild(td);
        t.appendChild(tr);
      });
      sec.appendChild(t);
      (h.recentErrors || []).slice(-5).forEach(function (e) {
        sec.appendChild(el('div', 'errors', new Date(e.at).toLocaleTimeString() + ' ' + e.code + ': ' + e.message));
      });
      frag.appendChild(sec);
    });
    hostsEl.replaceChildren(frag);
    renderFleet(s.fleet);
    var jobs = el('div');
    if ((s.jobs || []).length) {
      jobs.appendChild(el('h2', '', 'Jobs'));
      var jt = el('table');
      jt.appendChild(row(['host', 'running', 'exited', 'signaled', 'lost', ''], true));
      s.jobs.forEach(function (j) {
        var st = j.states || {};
        var tr = row([j.host, st.running || 0, st.exited || 0, st.signaled || 0, st.lost || 0, j.stale ? 'last known: ' + j.stale : '']);
        tr.setAttribute('data-jobs-host', j.host);
        jt.appendChild(tr);
      });
      jobs.appendChild(jt);
    }
    jobsEl.replaceChildren(jobs);
    var t = s.totals || {};
    var gateway = s.gateway ? (s.gateway.connections || 0) + ' SSH gateway clients with ' + (s.gateway.sessions || 0) + ' sessions \\u00b7 ' : '';
    summaryEl.textContent = (s.hosts || []).length + ' hosts, ' + (t.connections || 0) + ' connections, ' + (t.sessions || 0) + ' sessions, ' +
      (t.queued || 0) + ' queued \\u00b7 ' +
      s.clients + ' clients \\u00b7 ' + gateway + 'sshmuxd ' + s.version + ', up ' + Math.round(s.uptimeS) + ' s';
  }
  // The fleet's figures per target (from Redis) beside this daemon's own.
  function renderFleet(f) {
    if (!f) { fleetEl.replaceChildren(); return; }
    var sec = el('section', 'host');
    var title = el('h2', '', 'fleet');
    title.appendChild(el('span', 'state ' + (f.redisUp ? 'ok' : 'down'), f.redisUp ? 'redis up' : 'redis down: local limits'));
    sec.appendChild(title);
    sec.appendChild(el('div', '', f.redis + ' \u00b7 this daemon ' + f.daemonId + ' \u00b7 ' + (f.outages || 0) + ' outages' +
      (f.redisUp ? '' : ' \u00b7 ' + (f.redisError || ''))));
    var t = el('table');
    t.appendChild(row(['target', 'daemons', 'handshakes fleet / ours', 'connections fleet / ours', 'share', 'untracked', 'handed back'], true));
    (f.targets || []).forEach(function (x) {
      var tr = row([x.endpoint, x.daemons || 0,
        (x.fleetHandshakes || 0) + ' / ' + (x.handshakes || 0) + ' (max ' + x.maxConcurrentHandshakes + ')',
        (x.fleetConnections || 0) + ' / ' + (x.connections || 0) + ' (max ' + x.maxConnections + ')',
        x.share || 0, x.untracked || 0, x.handBacks || 0]);
      tr.setAttribute('data-target', x.endpoint);
      t.appendChild(tr);
    });
    sec.appendChild(t);
    fleetEl.replaceChildren(sec);
  }
  function connect() {
    var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/status');
    ws.onopen = function () { connEl.textContent = 'live'; connEl.className = ''; };
    ws.onmessage = function (m) { render(JSON.parse(m.data)); };
    ws.onclose = function () { connEl.textContent = 'disconnected; retrying'; connEl.className = 'down'; setTimeout(connect, 2000); };
  }
  connect();
})();
</script>
</body>
</html>
`;
