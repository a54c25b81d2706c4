(() => {
  // Everything an alert carries came from outside (hotel names, reasons, comments): it is only ever
  // put on the page as text (textContent, DOM nodes), never parsed as HTML.
  const table = document.getElementById('alerts');
  const live = document.getElementById('live');
  if (!table) return;
  const want = table.dataset;
  const tbody = table.tBodies[0];
  const when = (ms) => new Date(ms + 7*3600e3).toISOString().slice(0,16).replace('T',' ') + ' WIB';
  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  };
  const counts = document.getElementById('counts');
  const refreshCounts = () => fetch('/api/counts' + location.search, {credentials: 'same-origin'})
    .then(r => r.ok ? r.json() : null)
    .then(c => {
      if (!c || !counts) return;
      const parts = Object.entries(c.by_rule).map(([rule, n]) => {
        const span = el('span');
        const link = el('a', rule);
        link.href = '/?rule=' + encodeURIComponent(rule);
        span.append(link, ': ', el('b', n));
        return span;
      });
      if (parts.length) counts.replaceChildren(...parts);
      else counts.replaceChildren('No alerts for these filters.');
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
    const link = el('a', a.rule_id);
    link.href = '/alerts/' + encodeURIComponent(a.alert_id);
    const rule = el('td');
    rule.append(link);
    const why = el('td', a.reasons[0] || '');
    why.append(el('div', subject, 'muted'));
    const cells = [
      el('td', when(a.emitted_at)),
      el('td', a.severity, 'sev-' + a.severity),
      rule,
      el('td', a.office),
      el('td', a.status + ' · ' + a.triage),
      why,
    ];
    let tr = document.getElementById('a-' + a.alert_id);
    if (!tr) {
      tr = document.createElement('tr'); tr.id = 'a-' + a.alert_id; tbody.prepend(tr); tr.classList.add('new');
      refreshCounts();
    }
    tr.className = a.status + (tr.classList.contains('new') ? ' new' : '');
    tr.replaceChildren(...cells);
  });
})();
