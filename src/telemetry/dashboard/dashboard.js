// Live dashboard: no build step, no libraries. Reads LiveSnapshot messages (src/telemetry/live.ts) from
// the gateway's WebSocket at /ws and draws tables and inline SVG line charts.
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var fmtW = function (w) { return w >= 10000 ? (w / 1000).toFixed(1) + ' kW' : Math.round(w) + ' W'; };
  var fmtJ = function (j) {
    if (j === null || j === undefined) return '–';
    if (j >= 3.6e6) return (j / 3.6e6).toFixed(3) + ' kWh';
    if (j >= 1e4) return (j / 1000).toFixed(1) + ' kJ';
    return j.toFixed(0) + ' J';
  };
  var esc = function (s) { return String(s).replace(/[&<>"]/g, function (c) { return ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]; }); };

  function line(svg, series, w, h, max, color) {
    if (series.length < 2) return '';
    var t0 = series[0][0], t1 = series[series.length - 1][0], span = Math.max(1, t1 - t0);
    var pts = [];
    for (var i = 0; i < series.length; i++) {
      if (series[i][1] === null) continue;
      pts.push(((series[i][0] - t0) / span * w).toFixed(1) + ',' + (h - series[i][1] / max * (h - 10)).toFixed(1));
    }
    return '<polyline fill="none" stroke="' + color + '" stroke-width="2" points="' + pts.join(' ') + '"/>';
  }

  function chart(id, pts, keyA, keyB, scale, unit) {
    var svg = $(id), w = 600, h = 200;
    var a = pts.map(function (p) { return [p.tMs, p[keyA] === null ? null : p[keyA] / scale]; });
    var b = pts.map(function (p) { return [p.tMs, p[keyB] === null ? null : p[keyB] / scale]; });
    var max = 1;
    a.concat(b).forEach(function (p) { if (p[1] !== null && p[1] > max) max = p[1]; });
    max *= 1.1;
    var grid = '';
    for (var g = 0; g <= 4; g++) {
      var y = h - (g / 4) * (h - 10);
      grid += '<line x1="0" x2="' + w + '" y1="' + y + '" y2="' + y + '" stroke="#2a3440" stroke-width="1"/>' +
        '<text x="4" y="' + (y - 2) + '" fill="#8a96a3" font-size="10">' + (max * g / 4).toFixed(max > 100 ? 0 : 1) + ' ' + unit + '</text>';
    }
    svg.innerHTML = grid + line(svg, b, w, h, max, '#ff8a65') + line(svg, a, w, h, max, '#4fc3f7');
  }

  function render(s) {
    var w = $('warnings');
    if (w) {
      w.hidden = !(s.warnings && s.warnings.length);
      w.textContent = s.warnings && s.warnings.length ? 'WARNING: ' + s.warnings.join(' | ') : '';
    }
    // an instance whose GPU read failed shows its last reading: the part of the power that is such, said apart
    $('power-now').textContent = fmtW(s.powerW) + (s.stalePowerW > 0 ? ' (' + fmtW(s.stalePowerW) + ' of it stale)' : '');
    $('energy-now').textContent = fmtJ(s.energyJ);
    $('energy-src').textContent = 'source: ' + s.energySource;
    $('baseline-now').textContent = fmtJ(s.baselineEnergyJ);
    if (s.baselineEnergyJ) {
      var last = s.series[s.series.length - 1], first = s.series[0];
      var used = last ? last.energyJ - first.energyJ : 0, base = last && first.baselineEnergyJ !== null ? last.baselineEnergyJ - first.baselineEnergyJ : 0;
      $('saving').textContent = base > 0 ? 'shown window: cluster used ' + (100 * used / base).toFixed(0) + '% of the baseline\'s energy — ' + s.baselineSource : s.baselineSource;
    } else $('saving').textContent = s.baselineSource || 'no profile loaded';
    $('requests').textContent = s.requests.ok + ' / ' + s.requests.rejected + ' / ' + s.requests.failed;
    chart('chart-power', s.series, 'powerW', 'baselinePowerW', 1, 'W');
    chart('chart-energy', s.series, 'energyJ', 'baselineEnergyJ', 1000, 'kJ');
    var rows = '';
    s.pools.forEach(function (p) {
      p.instances.forEach(function (i, k) {
        rows += '<tr><td>' + (k === 0 ? esc(p.id) : '') + '</td><td>' + esc(i.id) + '</td><td>' + i.tp + '</td><td>' + esc(i.gpus.join(',')) +
          '</td><td>' + Math.round(i.clockMhz) + '</td><td' + (i.gpuStaleMs !== undefined ? ' class="poor" title="GPU read failed: the last reading, ' + (i.gpuStaleMs / 1000).toFixed(0) + ' s old">' + Math.round(i.powerW) + ' (' + (i.gpuStaleMs / 1000).toFixed(0) + ' s old)' : '>' + Math.round(i.powerW)) + '</td><td>' + i.queued + '</td><td>' + i.running + '</td><td>' + esc(i.state) + '</td></tr>';
      });
    });
    $('instances').tBodies[0].innerHTML = rows || '<tr><td colspan="9">no instances reporting yet</td></tr>';
    var slo = '';
    Object.keys(s.slo).forEach(function (t) {
      var x = s.slo[t];
      if (!x.total) return;
      var pct = 100 * x.met / x.total;
      slo += '<tr><td>' + t + '</td><td>' + x.total + '</td><td class="' + (pct >= 99 ? 'good' : 'poor') + '">' + pct.toFixed(1) + '%</td></tr>';
    });
    $('slo').tBodies[0].innerHTML = slo || '<tr><td colspan="3">no finished requests yet</td></tr>';
    $('events').innerHTML = s.events.map(function (e) {
      return '<li><span class="t">' + new Date(e.atMs).toLocaleTimeString() + '</span><span class="kind">' + esc(e.kind) + '</span>' + esc(e.actor) + ': ' + esc(e.summary) + '</li>';
    }).join('') || '<li>no decisions yet</li>';
  }

  var backoff = 500;
  function connect() {
    var ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    ws.onopen = function () { backoff = 500; $('conn').textContent = 'live'; $('conn').className = 'conn on'; };
    ws.onmessage = function (ev) { try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
    ws.onclose = function () {
      $('conn').textContent = 'disconnected — retrying'; $('conn').className = 'conn off';
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();
})();
