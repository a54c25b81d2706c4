(() => {
  const table = document.getElementById('alerts');
  const live = document.getElementById('live');
  if (!table) return;
  const want = table.dataset;
  const tbody = table.tBodies[0];
  const esc = (s) => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
  const when = (ms) => new Date(ms + 7*3600e3).toISOString().slice(0,16).replace('T',' ') + ' WIB';
  const counts = document.getElementById('counts');
  const refreshCounts = () => fetch('/api/counts' + location.search, {credentials: 'same-origin'})
    .then(r => r.ok ? r.json() : null)
    .then(c => {
      if (!c || !counts) return;
      const parts = Object.entries(c.by_rule).map(([rule, n]) =>
        '<span><a href="/?rule=' + encodeURIComponent(rule) + '">' + esc(rule) + '</a>: <b>' + n + '</b></span>');
      counts.innerHTML = parts.join('') || 'No alerts for these filters.';
    });
  const src = new EventSource('/stream');
  src.addEventListener('open', () => { live.textContent = 'live: connected'; });
  src.addEventListener('error', () => { live.textContent = 'live: reconnecting…'; });
  src.addEventListener('reload', () => location.reload());
  src.addEventListener('alert', (ev) => {
    const a = JSON.parse(ev.data);
    if ((want.office && a.office !== want.office) || (want.rule && a.rule_id !== want.rule) ||
        (want.severity && a.severity !== want.severity)) return;
    const subject = Object.entries(a.subject).map(([k, v]) => k + ': ' + v).join(', ');
    const html = '<td>' + esc(when(a.emitted_at)) + '</td><td class="sev-' + esc(a.severity) + '">' + esc(a.severity) +
      '</td><td><a href="/alerts/' + esc(a.alert_id) + '">' + esc(a.rule_id) + '</a></td><td>' + esc(a.office) +
      '</td><td>' + esc(a.status) + ' · ' + esc(a.triage) + '</td><td>' + esc(a.reasons[0] || '') +
      '<div class="muted">' + esc(subject) + '</div></td>';
    let tr = document.getElementById('a-' + a.alert_id);
    if (!tr) {
      tr = document.createElement('tr'); tr.id = 'a-' + a.alert_id; tbody.prepend(tr); tr.classList.add('new');
      refreshCounts();
    }
    tr.className = a.status + (tr.classList.contains('new') ? ' new' : '');
    tr.innerHTML = html;
  });
})();
