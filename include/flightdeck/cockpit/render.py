"""Server-rendered HTML of the cockpit's pages (Jinja2, autoescaped; pictures are inline SVG).

Each `*_page` function takes the read model and returns a whole HTML document. Links inside the
cockpit are relative to its mount point (`base`), links into Airflow's UI open in the top window
(the pages are shown in an iframe of the Airflow UI).
"""

from __future__ import annotations

from functools import cache

from markupsafe import Markup

from flightdeck.cockpit.charts import cs_panels, split_svg

_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flightdeck cockpit · {{ title }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1a202c;background:#fff;font-size:14px}
header{background:#1a365d;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:center}
header a{color:#bee3f8;text-decoration:none;font-weight:600}header a.on{color:#fff;border-bottom:2px solid #fff}
main{padding:12px 16px}h1{font-size:20px;margin:4px 0 10px}h2{font-size:16px;margin:18px 0 6px}
h3{font-size:14px;margin:12px 0 4px}table{border-collapse:collapse;margin:4px 0 10px}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:left;vertical-align:top}th{background:#edf2f7}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#718096}.card{border:1px solid #cbd5e0;
border-radius:6px;padding:8px 12px;margin:10px 0}.badge{display:inline-block;padding:1px 8px;border-radius:9px;
font-weight:600;font-size:12px;background:#edf2f7}.pass,.promoted,.success,.ship,.promote_with_canary{background:#c6f6d5;color:#22543d}
.fail,.failed,.rolled,.stop,.reject,.upstream_failed{background:#fed7d7;color:#822727}.awaiting,.undecided,.running,
.deferred,.keep_running,.keep_shadowing{background:#fefcbf;color:#744210}.insufficient,.inconclusive,.skipped{background:#e2e8f0}
svg text.t{font-size:12px;font-weight:600}svg text.a{font-size:11px;fill:#4a5568}svg text.b{font-size:11px;fill:#fff}
pre{white-space:pre-wrap;background:#f7fafc;padding:6px;border:1px solid #e2e8f0;margin:4px 0}
.problem{color:#c53030}
</style></head><body>
<header><strong>flightdeck cockpit</strong>
{% for key, label in nav %}<a href="{{ base }}/{{ key }}" class="{{ 'on' if key == active else '' }}">{{ label }}</a>{% endfor %}
<span class="muted" style="margin-left:auto;color:#bee3f8">read only · {{ user }}</span></header>
<main><h1>{{ title }}</h1>
{% for problem in problems %}<p class="problem">{{ problem }}</p>{% endfor %}
{{ body }}
</main>
</body></html>"""

_DEPLOYMENTS = """
{% if d is none %}<p class="muted">The gateway could not be read.</p>{% else %}
<p>Route table version <strong>{{ d.route_version }}</strong>{% if d.author %}, written by {{ d.author }}{% endif %}.
Live share, error rate and latency come from the gateway's running sums since this version.</p>
{% for e in d.endpoints %}<div class="card endpoint" data-endpoint="{{ e.name }}">
<h2>{{ e.name }} <span class="badge">{{ e.policy }}</span> <span class="muted">route version {{ e.route_version }}</span></h2>
<table><tr><th>variant</th><th>model</th><th>reference</th><th>served version</th><th>weight</th><th>live share</th>
<th>requests</th><th>error rate</th><th>mean latency</th></tr>
{% for v in e.variants %}<tr><td>{{ v.name }}</td><td>{{ v.model or default_model }}</td><td>{{ v.reference }}</td>
<td>{{ v.served_version or '–' }}</td><td class="n">{{ pct(v.weight) }}</td><td class="n">{{ pct(v.live_share) }}</td>
<td class="n">{{ '{:,}'.format(v.requests) }}</td><td class="n">{{ rate(v.error_rate) }}</td>
<td class="n">{{ ms(v.latency_ms) }}</td></tr>{% endfor %}</table>
{{ split(e) }}
{% if e.shadow %}<div>shadow: {{ e.shadow }}</div>{% endif %}{% if e.fallback %}<div>fallback: {{ e.fallback }}</div>{% endif %}
{% for k, v in e.extra.items() %}<div class="muted">{{ k }}: {{ v }}</div>{% endfor %}
</div>{% endfor %}
<h2>Route history</h2>
<table class="history"><tr><th>version</th><th>when</th><th>who</th><th>comment</th><th>endpoints changed</th><th>old → new</th></tr>
{% for h in d.history %}<tr><td class="n">{{ h.version }}</td><td>{{ h.at }}</td><td>{{ h.author }}</td><td>{{ h.comment or '' }}</td>
<td>{{ h.changed | join(', ') }}</td><td><details><summary>documents</summary>
{% for name in h.changed %}<div><strong>{{ name }}</strong><pre>old: {{ endpoint_json(h.old, name) }}</pre>
<pre>new: {{ endpoint_json(h.new, name) }}</pre></div>{% endfor %}</details></td></tr>{% endfor %}</table>
{% endif %}"""

_RELEASES = """
{% if not releases %}<p class="muted">No promotion run yet (promote_canary, promote_blue_green).</p>{% endif %}
{% for r in releases %}<div class="card release" data-run="{{ r.run_id }}">
<h2><a href="{{ base }}/releases/{{ r.dag_id }}/{{ r.run_id | urlencode }}">{{ r.dag_id }} · {{ r.run_id }}</a>
<span class="badge {{ r.outcome.split()[0] }}">{{ r.outcome }}</span></h2>
<div>{{ r.model or '?' }}: v{{ r.candidate or '?' }} over v{{ r.baseline or '?' }} · {{ r.strategy }} on
{{ r.target or 'gateway' }}{% if r.endpoint %} endpoint {{ r.endpoint }}{% endif %} · started {{ r.started_at or '–' }}
{% if r.ended_at %}· ended {{ r.ended_at }}{% endif %}</div>
{% if r.why %}<div><strong>why:</strong> {{ r.why }}</div>{% endif %}
{% if r.approval_pending %}<div><strong>Approval pending:</strong>
<a class="airflow-link" href="{{ airflow }}/{{ r.required_actions_path }}">answer it in Airflow's Required Actions</a>
<span class="muted">(the UI shows its plugin pages in a sandboxed frame that may not move the whole window, so
the page opens here; it is also the run's Required Actions tab)</span></div>
{% elif r.approval and r.approval.chosen_options %}<div>approval: {{ r.approval.chosen_options | join(', ') }}
{% if r.approval.responded_by %} by {{ r.approval.responded_by }}{% endif %}</div>{% endif %}
{% if detail %}
<h3>Steps</h3><table><tr><th>task</th><th>state</th><th>started</th><th>ended</th></tr>
{% for s in r.steps %}<tr><td>{{ s.task_id }}</td><td><span class="badge {{ s.state }}">{{ s.state or '–' }}</span></td>
<td>{{ s.started_at or '' }}</td><td>{{ s.ended_at or '' }}</td></tr>{% endfor %}</table>
{% endif %}
<h3>Gates</h3>
{% for picture in pictures(r) %}{{ picture }}{% endfor %}
{% for g in r.gates %}<div class="gate"><strong>{{ g.label }}</strong> ({{ g.task_id }}):
<span class="badge {{ g.decision or g.state }}">{{ g.decision or g.state or 'not started' }}</span>
{% if g.elapsed_s is not none %} after {{ '%.0f' % g.elapsed_s }} s{% endif %}{% if g.reason %} — {{ g.reason }}{% endif %}
{% if g.from_log %}<span class="muted"> (report read from the task log)</span>{% endif %}
{% if g.checks %}<table class="gate-report"><tr><th>check</th><th>status</th><th>baseline</th><th>canary</th><th>estimate</th>
<th>confidence sequence</th><th>threshold</th><th>n baseline / canary</th></tr>
{% for c in g.checks %}<tr><td>{{ c.name }}</td><td><span class="badge {{ c.status }}">{{ c.status }}</span></td>
<td class="n">{{ value(c.baseline, c.unit) }}</td><td class="n">{{ value(c.canary, c.unit) }}</td>
<td class="n">{{ delta(c.estimate, c.unit, c.name) }}</td>
<td class="n">{% if c.lower is not none %}[{{ delta(c.lower, c.unit, c.name) }}, {{ delta(c.upper, c.unit, c.name) }}]{% else %}–{% endif %}</td>
<td class="n">{{ value(c.threshold, c.unit) }}</td><td class="n">{{ '{:,}'.format(c.n_baseline) }} / {{ '{:,}'.format(c.n_canary) }}</td></tr>
{% endfor %}</table>{% if g.alpha %}<div class="muted">window α = {{ '%.3g' % g.alpha }}</div>{% endif %}{% endif %}
</div>{% endfor %}
</div>{% endfor %}"""

_MODELS = """
{% if not models %}<p class="muted">No registered model.</p>{% endif %}
{% for m in models %}<div class="card model" data-model="{{ m.name }}"><h2>{{ m.name }}</h2>
<div>aliases: {% for a, v in m.aliases.items() %}<span class="badge">{{ a }} → v{{ v }}</span> {% endfor %}</div>
<table><tr><th>version</th><th>aliases</th><th>registered</th><th>ONNX parity (max |Δp|)</th><th>runs on</th><th>releases</th></tr>
{% for v in m.versions %}<tr><td class="n">{{ v.version }}</td><td>{{ v.aliases | join(', ') }}</td><td>{{ v.created_at }}</td>
<td class="n">{{ '%.1e' % v.parity if v.parity is not none else '–' }}</td>
<td>{% for s in v.surfaces %}<div>{{ s }}</div>{% endfor %}</td>
<td>{% for rec in v.releases %}<div><span class="badge {{ (rec.outcome or '').split('_')[0] }}">{{ rec.outcome }}</span>
{{ rec.strategy or '' }} {{ rec.at or '' }}</div>{% endfor %}</td></tr>{% endfor %}</table></div>{% endfor %}"""

_BATCH = """
<h2>Scored days</h2>
{% if not days %}<p class="muted">No scored day yet (batch_score writes reports/ds=…/).</p>{% else %}
<table class="days"><tr><th>day</th><th>model</th><th>rows</th><th>drift verdict</th><th>volume</th><th>report</th></tr>
{% for d in days %}<tr><td>{{ d.ds }}</td><td>{{ d.model or '?' }} v{{ d.version or '?' }}</td><td class="n">{{ d.rows if d.rows is not none else '–' }}</td>
<td>{% if d.problem %}<span class="problem">{{ d.problem }}</span>{% elif d.alert %}<span class="badge fail">drift</span>
{{ d.drifted_features | join(', ') }}{% if d.score_drifted %} score{% endif %}{% else %}<span class="badge pass">no drift</span>{% endif %}</td>
<td>{% if d.volume_alert %}<span class="badge fail">volume alert</span>{% else %}ok{% endif %}</td>
<td><a href="{{ base }}/reports/{{ d.report }}">report</a></td></tr>{% endfor %}</table>{% endif %}
<h2>Experiments and shadow evaluations</h2>
{% if not experiments %}<p class="muted">No experiment report yet.</p>{% else %}
<table class="experiments"><tr><th>name</th><th>kind</th><th>latest day</th><th>decision</th><th>reasons</th><th>report</th></tr>
{% for e in experiments %}<tr><td>{{ e.name }}</td><td>{{ e.kind }}</td><td>{{ e.ds }}</td>
<td><span class="badge {{ e.action }}">{{ (e.action or '?') | replace('_', ' ') }}</span> {{ e.status or '' }}</td>
<td>{% for r in e.reasons %}<div>{{ r }}</div>{% endfor %}{% if e.problem %}<span class="problem">{{ e.problem }}</span>{% endif %}</td>
<td><a href="{{ base }}/reports/{{ e.report }}">report</a> <span class="muted">({{ e.days | length }} days)</span></td></tr>{% endfor %}</table>{% endif %}"""

NAV = (("deployments", "Deployments"), ("releases", "Releases"), ("models", "Models"), ("batch", "Batch & experiments"))


def _pct(x):
    return "–" if x is None else f"{x:.1f} %"


def _rate(x):
    return "–" if x is None else f"{100 * x:.2f} %"


def _ms(x):
    return "–" if x is None else f"{x:.1f} ms"


def _value(x, unit):
    if x is None:
        return "–"
    return _rate(x) if unit == "rate" else _ms(x) if unit == "ms" else f"{x:.3f}"


def _delta(x, unit, name):
    if x is None:
        return "–"
    if name not in ("error_rate", "latency"):
        return _value(x, unit)
    return f"{100 * x:+.2f} pp" if unit == "rate" else f"{x:+.1f} ms" if unit == "ms" else f"{x:+.3f}"


def _endpoint_json(document, name):
    import json

    spec = ((document or {}).get("endpoints") or {}).get(name)
    return "(none)" if spec is None else json.dumps(spec, sort_keys=True)


@cache
def _env():
    from jinja2 import DictLoader, Environment, select_autoescape

    env = Environment(loader=DictLoader({"layout": _LAYOUT, "deployments": _DEPLOYMENTS, "releases": _RELEASES,
                                         "models": _MODELS, "batch": _BATCH}),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.globals.update(pct=_pct, rate=_rate, ms=_ms, value=_value, delta=_delta, endpoint_json=_endpoint_json,
                       split=lambda e: Markup(split_svg([(v.name, v.weight, v.live_share) for v in e.variants])),
                       pictures=lambda r: [Markup(p) for p in cs_panels(r.gates)])
    return env


def page(active: str, title: str, body_template: str, *, base: str, user: str = "", airflow: str = "",
         problems: list[str] | None = None, **context) -> str:
    env = _env()
    body = env.get_template(body_template).render(base=base, airflow=airflow, **context)
    return env.get_template("layout").render(nav=NAV, active=active, title=title, base=base, user=user,
                                             problems=problems or [], body=Markup(body))
