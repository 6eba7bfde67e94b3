#!/usr/bin/python
# Copyright: sre.rollout contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: canary_analysis
short_description: Judge canary hosts against the baseline with Prometheus during a soak
version_added: 0.1.0
description:
  - Soaks for O(duration) seconds. At the end of every O(interval) it evaluates each metric's PromQL
    (instant query, C(/api/v1/query)) twice, once for the O(canary) hosts and once for the O(baseline)
    hosts, all at the same evaluation time (taken from Prometheus, so the controller's clock does not
    matter), and judges the canary value against the metric's bounds.
  - "Per metric and interval: no usable canary value (query error, empty result, several series, NaN)
    is B(inconclusive) - a missing value never counts as good; a canary value above O(metrics[].max) or
    below O(metrics[].min) is B(fail); with O(metrics[].max_ratio_to_baseline) k, a missing baseline value
    is inconclusive, and the canary fails when it is worse than k times the baseline
    (lower_is_better: canary > k * max(baseline, min_baseline); higher_is_better: canary < baseline / k)."
  - An interval fails when any metric failed, else is inconclusive when any metric was inconclusive.
    The analysis fails as soon as O(failure_limit) intervals have failed and is inconclusive as soon as
    O(inconclusive_limit) intervals were inconclusive; both end the soak early. It passes only when
    neither happened and at least one interval was fully ok.
  - An inconclusive analysis is handled by O(on_inconclusive). It never passes silently.
  - The module B(fails) when the verdict is V(fail), with every result key set, so a play stops unless
    it handles the failure (C(block)/C(rescue) to roll the canary back).
  - A query that Prometheus rejects as invalid (C(bad_data)) fails the module at once, since soaking
    cannot make it valid. Prometheus being unreachable, slow or erroring only makes that interval
    inconclusive.
  - "Runs where it is called: use it on the controller (C(delegate_to: localhost), C(run_once: true))."
author:
  - sre.rollout maintainers (!UNKNOWN)
attributes:
  check_mode:
    support: full
    description: The module only reads from Prometheus, so it runs the whole analysis in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: It changes nothing; the verdict depends on the metrics at the time it runs.
options:
  url:
    description:
      - Base URL of the Prometheus server (or a compatible query API), without C(/api/v1/query).
      - If not set, the environment variable E(PROMETHEUS_URL) is used.
    type: str
    required: true
  canary:
    description: Names of the canary hosts, as in the C(host) label of the app metrics.
    type: list
    elements: str
    required: true
  baseline:
    description:
      - Names of the hosts still on the old version, to compare with.
      - Without baseline hosts, ratio bounds are not checked and every metric needs O(metrics[].max)
        or O(metrics[].min).
    type: list
    elements: str
    default: []
  server_names:
    description:
      - Load balancer server name of a host, for C($SERVERS), when it differs from the host name.
    type: dict
    default: {}
  haproxy_backend:
    description:
      - HAProxy backend (C(proxy) label) of the service, for C($BACKEND); the release role takes it from
        C(rollout_lbs).
      - Not set (no HAProxy in the LB set), the default metrics that read HAProxy's series are left out,
        and a metric given in O(metrics) that uses C($BACKEND) or C($SERVERS) is refused.
    type: str
  instance_names:
    description:
      - The C(instance) label value (O(app_metrics.instance_label)) of a host's series, for C($INSTANCES),
        when it is not the host's name; for example V(10.0.0.5:9100) where Prometheus keeps the scrape
        address, as it does unless a relabeling rule sets C(instance).
    type: dict
    default: {}
  app_metrics:
    description:
      - How the app's requests are counted, for the default metrics V(app_error_ratio), V(app_p99_latency),
        V(process_cpu) and V(process_memory).
      - The defaults are the names the official Prometheus client libraries give the HTTP server metrics
        and the process collector's; the instance is told apart by the label Prometheus adds when it scrapes.
    type: dict
    suboptions:
      requests:
        description: Counter of requests served, with a status-code label.
        type: str
        default: http_requests_total
      duration:
        description: Request latency histogram (the name without C(_bucket)).
        type: str
        default: http_request_duration_seconds
      code_label:
        description: The status-code label of O(app_metrics.requests); 5xx values count as errors.
        type: str
        default: code
      instance_label:
        description: The label that tells one host's series from another's.
        type: str
        default: instance
      selector:
        description: Extra matchers every app query carries, for example V(job="shop").
        type: str
        default: ""
  window:
    description:
      - Range for rate() and friends, for C($WINDOW); a PromQL duration such as V(30s) or V(1m).
      - At least four scrape intervals, and not much longer than O(interval) or old data hides the canary.
    type: str
    default: 1m
  metrics:
    description:
      - The metrics to compare. If not set, the defaults are used; see RV(criteria) for their queries and bounds.
      - "Defaults: V(haproxy_5xx_ratio), V(haproxy_response_time) and V(haproxy_connection_errors) (HAProxy's
        built-in exporter: per-server responses, average response time, connection errors per second),
        V(app_error_ratio) and V(app_p99_latency) (the app's RED metrics, named by O(app_metrics)), and the
        base metrics per host V(process_cpu) (CPU seconds per second) and V(process_memory) (resident bytes)
        from the process collector every client library exports. Each is lower_is_better and compared with
        the baseline's value."
      - "On a real fleet, base metrics by host come from node_exporter, for example
        C(avg(node_load1{instance=~\"$INSTANCES\"})) and
        C(avg(1 - node_memory_MemAvailable_bytes{instance=~\"$INSTANCES\"} / node_memory_MemTotal_bytes{instance=~\"$INSTANCES\"}))
        with O(instance_names) mapping each host to its node_exporter's C(instance)."
      - When a query returns no series, the inconclusive reason names the metric or the matcher that matched
        nothing, with the values the label has.
      - An entry whose O(metrics[].name) is a default's and that has no O(metrics[].query) reuses that
        default with the bounds given replacing the default's.
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the metric in the result.
        type: str
        required: true
      query:
        description:
          - PromQL template that must return one number (aggregate it, e.g. with C(sum)).
          - C($HOSTS) becomes a regex alternation of the side's host names, C($INSTANCES) of their
            C(instance) label values (O(instance_names)) and C($SERVERS) of their load balancer server names
            (use them inside double quotes, C(instance=~"$INSTANCES")); C($BACKEND) is O(haproxy_backend) and
            C($WINDOW) is O(window). C(${HOSTS}) works too. The template must use C($HOSTS), C($INSTANCES)
            or C($SERVERS).
          - Do not write C({{ hosts }}), Ansible would template it before the module sees it.
        type: str
      max:
        description: Absolute upper bound for the canary value.
        type: float
      min:
        description: Absolute lower bound for the canary value.
        type: float
      max_ratio_to_baseline:
        description:
          - How many times worse than the baseline the canary may be (V(2) = twice the error ratio).
        type: float
      direction:
        description: Whether smaller or larger values are better, for O(metrics[].max_ratio_to_baseline).
        type: str
        choices: [lower_is_better, higher_is_better]
        default: lower_is_better
      min_baseline:
        description:
          - Floor for the baseline in the ratio of a lower_is_better metric, so that a baseline near 0
            (no errors at all) does not fail a canary with one error in ten thousand.
        type: float
  duration:
    description: Soak time in seconds. V(0) measures once, at once.
    type: float
    default: 300
  interval:
    description: Seconds between measurements; each interval is measured at its end.
    type: float
    default: 30
  failure_limit:
    description: Number of failed intervals that fail the analysis.
    type: int
    default: 1
  inconclusive_limit:
    description: Number of inconclusive intervals that make the analysis inconclusive.
    type: int
    default: 1
  on_inconclusive:
    description:
      - What an inconclusive analysis becomes.
      - V(fail) makes RV(verdict) V(fail) (the module fails); V(pause) returns RV(verdict)
        V(inconclusive) and lets the play decide (e.g. an approval); V(pass) lets it through with a
        warning. RV(inconclusive) and RV(inconclusive_intervals) report it in every case.
    type: str
    choices: [fail, pass, pause]
    default: fail
  timeout:
    description: Seconds to wait for one query (also sent to Prometheus as the query timeout).
    type: float
    default: 10
  validate_certs:
    description: Verify the server's TLS certificate.
    type: bool
    default: true
  username:
    description:
      - User name for HTTP basic auth (C(basic_auth_users) of the server's C(--web.config.file), or a proxy in front).
      - Falls back to the environment variable E(PROMETHEUS_USERNAME). Not with O(token).
    type: str
  password:
    description:
      - Password for HTTP basic auth, with O(username). Never printed.
      - Falls back to the environment variable E(PROMETHEUS_PASSWORD).
    type: str
  ca_path:
    description:
      - PEM bundle of the CA(s) to verify an V(https) server's certificate with, instead of the system CA store.
      - Falls back to the environment variable E(PROMETHEUS_CA_PATH).
    type: path
  headers:
    description: Extra HTTP headers for every query (e.g. C(X-Scope-OrgID) for a multi-tenant API).
    type: dict
    default: {}
  token:
    description:
      - Bearer token for the query API.
      - If not set, the environment variable E(PROMETHEUS_TOKEN) is used.
    type: str
seealso:
  - name: Prometheus HTTP API
    description: The instant query API and its error envelope.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
  - name: Argo Rollouts analysis
    description: The same idea for Kubernetes; its failure and inconclusive limits inspired these.
    link: https://argoproj.github.io/argo-rollouts/features/analysis/
"""

EXAMPLES = r"""
- name: Soak the canary for 10 minutes with the default metrics
  sre.rollout.canary_analysis:
    url: http://prometheus.example.com:9090
    canary: "{{ rollout_canary_hosts }}"
    baseline: "{{ groups['web'] | difference(rollout_canary_hosts) }}"
    duration: 600
    interval: 30
  delegate_to: localhost
  run_once: true
  register: canary

- name: Own metrics, one default with a stricter bound, let a human decide on missing data
  sre.rollout.canary_analysis:
    canary: [web01]
    baseline: [web02, web03]
    window: 2m
    metrics:
      - name: haproxy_5xx_ratio
        max: 0.01
      - name: checkout_success_ratio
        query: >-
          sum(rate(checkout_total{host=~"$HOSTS",result="ok"}[$WINDOW]))
          / sum(rate(checkout_total{host=~"$HOSTS"}[$WINDOW]))
        direction: higher_is_better
        min: 0.95
        max_ratio_to_baseline: 1.05
    on_inconclusive: pause
  delegate_to: localhost
  run_once: true
  register: canary

- name: Ask a human when the analysis had no data
  ansible.builtin.pause:
    prompt: "Canary inconclusive: {{ canary.summary }}. Continue? (Ctrl-C then A to abort)"
  when: canary.verdict == 'inconclusive'
"""

RETURN = r"""
verdict:
  description:
    - V(pass), V(fail) or V(inconclusive), after O(on_inconclusive) was applied (V(inconclusive) only with
      O(on_inconclusive=pause)). The module fails when it is V(fail).
  returned: always
  type: str
  sample: fail
inconclusive:
  description: Whether the data did not allow a conclusion, whatever O(on_inconclusive) made of it.
  returned: always
  type: bool
  sample: false
summary:
  description: One line for humans and reports.
  returned: always
  type: str
  sample: "fail: 1 of 5 intervals measured in 4s (0 ok, 1 failed, 0 inconclusive; failure_limit 1,
    inconclusive_limit 1). app_error_ratio: canary 0.104 > max 0.05"
measurements:
  description:
    - Every measurement, one per metric and interval.
    - V(canary) and V(baseline) are numbers, the strings V(NaN), V(+Inf), V(-Inf), or null when the
      query gave no value (V(baseline) is also null without baseline hosts).
    - V(time) is the evaluation time Prometheus reported for the interval's first answer (all queries of
      an interval are evaluated at that instant), or the controller's clock when no query was answered.
    - V(outcome) is V(ok), V(fail) or V(inconclusive); V(ok) is true only for V(ok); V(reason) says why.
  returned: always
  type: list
  elements: dict
  sample:
    - interval: 1
      time: "2025-01-01T12:00:05+00:00"
      metric: app_error_ratio
      canary: 0.104
      baseline: 0.0
      ok: false
      outcome: fail
      reason: canary 0.104 > max 0.05
queries:
  description: The resolved PromQL per metric, for the canary and for the baseline (null without baseline hosts).
  returned: always
  type: dict
  sample:
    app_error_ratio:
      canary: '(sum(rate(app_http_requests_total{host=~"web01",code=~"5.."}[1m])) or vector(0)) / ...'
      baseline: '(sum(rate(app_http_requests_total{host=~"web02|web03",code=~"5.."}[1m])) or vector(0)) / ...'
criteria:
  description: The metrics judged, with their templates and bounds (the defaults when O(metrics) is not set).
  returned: always
  type: list
  elements: dict
intervals:
  description: Number of intervals measured.
  returned: always
  type: int
ok_intervals:
  description: Number of intervals where every metric was ok.
  returned: always
  type: int
failed_intervals:
  description: Number of intervals where at least one metric failed.
  returned: always
  type: int
inconclusive_intervals:
  description: Number of intervals with no failure but at least one metric without a usable value.
  returned: always
  type: int
stopped_early:
  description: Whether the soak ended before O(duration) because a limit was reached.
  returned: always
  type: bool
elapsed:
  description: Seconds the analysis took.
  returned: always
  type: float
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.sre.rollout.plugins.module_utils._canary import (
    FAIL,
    ON_INCONCLUSIVE,
    AppMetrics,
    PASS,
    Settings,
    build_metrics,
    resolve_all,
    run_analysis,
    validate,
)
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._prometheus import PrometheusClient

METRIC_SPEC = dict(
    name=dict(type="str", required=True),
    query=dict(type="str"),
    max=dict(type="float"),
    min=dict(type="float"),
    max_ratio_to_baseline=dict(type="float"),
    direction=dict(type="str", default="lower_is_better", choices=["lower_is_better", "higher_is_better"]),
    min_baseline=dict(type="float"),
)

APP_METRICS_SPEC = dict(
    requests=dict(type="str", default="http_requests_total"),
    duration=dict(type="str", default="http_request_duration_seconds"),
    code_label=dict(type="str", default="code"),
    instance_label=dict(type="str", default="instance"),
    selector=dict(type="str", default=""),
)

ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True, fallback=(env_fallback, ["PROMETHEUS_URL"])),
    canary=dict(type="list", elements="str", required=True),
    baseline=dict(type="list", elements="str", default=[]),
    server_names=dict(type="dict", default={}),
    haproxy_backend=dict(type="str"),
    instance_names=dict(type="dict", default={}),
    app_metrics=dict(type="dict", options=APP_METRICS_SPEC),
    window=dict(type="str", default="1m"),
    metrics=dict(type="list", elements="dict", options=METRIC_SPEC),
    duration=dict(type="float", default=300),
    interval=dict(type="float", default=30),
    failure_limit=dict(type="int", default=1),
    inconclusive_limit=dict(type="int", default=1),
    on_inconclusive=dict(type="str", default="fail", choices=list(ON_INCONCLUSIVE)),
    timeout=dict(type="float", default=10),
    validate_certs=dict(type="bool", default=True),
    headers=dict(type="dict", default={}),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["PROMETHEUS_TOKEN"])),
    username=dict(type="str", fallback=(env_fallback, ["PROMETHEUS_USERNAME"])),
    password=dict(type="str", no_log=True, fallback=(env_fallback, ["PROMETHEUS_PASSWORD"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["PROMETHEUS_CA_PATH"])),
)


def run_module(module: AnsibleModule) -> dict[str, Any]:
    p = module.params
    app = AppMetrics(**{k: v for k, v in (p["app_metrics"] or {}).items() if v is not None})
    metrics = build_metrics(p["metrics"], app, has_backend=bool(p["haproxy_backend"]))
    settings = Settings(duration=p["duration"], interval=p["interval"], failure_limit=p["failure_limit"],
                        inconclusive_limit=p["inconclusive_limit"], on_inconclusive=p["on_inconclusive"])
    validate(p["canary"], p["baseline"], metrics, p["window"], settings.duration, settings.interval,
             settings.failure_limit, settings.inconclusive_limit, backend=p["haproxy_backend"])
    queries = resolve_all(metrics, p["canary"], p["baseline"], p["server_names"], p["haproxy_backend"],
                          p["window"], p["instance_names"])
    client = PrometheusClient(p["url"], timeout=p["timeout"], validate_certs=p["validate_certs"],
                              headers=p["headers"], token=p["token"], username=p["username"],
                              password=p["password"], ca_path=p["ca_path"])
    result = run_analysis(metrics, queries, settings, client.query)
    if result["verdict"] == PASS and result["inconclusive_intervals"]:
        module.warn(f"canary analysis passed with {result['inconclusive_intervals']} inconclusive interval(s): "
                    f"{result['summary']}")
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run_module(module)
    except RolloutError as e:
        module.fail_json(msg=e.msg, **e.details)
    if result["verdict"] == FAIL:
        module.fail_json(msg=f"canary analysis failed: {result['summary']}", changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
