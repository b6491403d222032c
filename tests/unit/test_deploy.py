"""Static checks of the deployment files: docker-compose.yml, Dockerfile and monitoring/.

No Docker and no Prometheus needed: the files are parsed and cross-checked against each other
(every bind-mounted file exists, the paths Prometheus and Grafana read inside their containers
are mounted, the dashboards and the rules only query metrics the worker exports, as lsi.monitoring.metrics
declares them, or that a rule records).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from lsi.monitoring.dashboards import (
    PROMETHEUS_BUILTINS,
    all_panels,
    coverage,
    dashboard_queries,
    dashboard_variables,
    exported_families,
    load_dashboards,
    metric_names,
    rules_from_files,
    to_promql,
)

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MONITORING = ROOT / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
RULES_DIR = MONITORING / "prometheus" / "rules"
GRAFANA_PROVISIONING = MONITORING / "grafana" / "provisioning"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"

REQUIRED_SERVICES = {"kafka", "worker", "prometheus", "grafana"}


# --------------------------------------------------------------------------------------------
# helpers


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml is missing"
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def exported_series() -> set[str]:
    """Every series name the worker and the refresh job export, read from lsi.monitoring.metrics (the
    metric catalogue)."""
    series = set().union(*exported_families().values())
    assert series, "lsi.monitoring.metrics registers no metrics"
    return series


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards(DASHBOARDS_DIR)


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        doc = _load_yaml(path)
        for group in doc["groups"]:
            found.extend(group["rules"])
    return found


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of every bind mount of a service, short or long syntax."""
    mounts = []
    for entry in service.get("volumes", []) or []:
        if isinstance(entry, str):
            parts = entry.split(":")
            if parts[0].startswith(("./", "../", "/")) and len(parts) >= 2:
                mounts.append((parts[0], parts[1]))
        elif isinstance(entry, dict) and entry.get("type") == "bind":
            mounts.append((entry["source"], entry["target"]))
    return mounts


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The repo path bind-mounted at ``container_path`` in ``service``, or None if unmounted."""
    wanted = PurePosixPath(container_path)
    for source, target in _bind_mounts(service):
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return (COMPOSE_FILE.parent / source / wanted.relative_to(target_path)).resolve()
    return None


# --------------------------------------------------------------------------------------------
# docker-compose.yml and Dockerfile


def test_compose_has_required_services(compose: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(compose["services"])
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_bind_mount_sources_exist(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in compose["services"].items():
        for source, _target in _bind_mounts(service):
            if source.startswith("/"):
                continue  # absolute host paths are the operator's business
            path = COMPOSE_FILE.parent / source
            assert path.exists(), f"{name}: bind-mount source {source} does not exist"
            if source.endswith("/"):
                assert path.is_dir(), f"{name}: {source} should be a directory"
            checked += 1
    assert checked >= 4, "expected the Prometheus and Grafana config to be bind-mounted"


def test_dockerfile_builds_worker_with_uv_lock(compose: dict[str, Any]) -> None:
    build = compose["services"]["worker"]["build"]
    context = COMPOSE_FILE.parent / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = context / (
        "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    )
    assert dockerfile.is_file(), f"{dockerfile} is missing"
    text = dockerfile.read_text(encoding="utf-8")
    assert "uv sync --frozen" in text and "--no-dev" in text
    assert re.search(r'ENTRYPOINT\s+\["lsi"\]', text)
    assert (context / "uv.lock").is_file(), "the image installs from uv.lock"
    ignored = {
        line.strip().strip("/")
        for line in (context / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    for needed in ("uv.lock", "pyproject.toml", "README.md", "lsi", "streams", "models"):
        assert needed not in ignored, f".dockerignore must not exclude {needed}"


def test_worker_is_replicable_and_waits_for_kafka(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "a fixed container_name prevents replicas"
    assert not worker.get("ports"), "published worker ports clash between replicas"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    env = worker["environment"]
    assert env["LSI_BROKERS"] == "kafka:9092"
    assert env["LSI_WEB_BIND"] == "0.0.0.0" and env["LSI_WEB_HOST"] == "auto"
    kafka_health = " ".join(compose["services"]["kafka"]["healthcheck"]["test"])
    assert "kafka-broker-api-versions.sh" in kafka_health


def test_kafka_single_node_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert int(env[key]) == 1, key
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_published_ports_bind_to_localhost(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []) or []:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond localhost"


def test_grafana_admin_password_is_required_not_hardcoded(compose: dict[str, Any]) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]*\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert str(env["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "false"


# --------------------------------------------------------------------------------------------
# monitoring/


def test_every_monitoring_yaml_file_parses() -> None:
    files = sorted([*MONITORING.rglob("*.yml"), *MONITORING.rglob("*.yaml")])
    assert len(files) >= 4
    for path in files:
        assert _load_yaml(path) is not None, f"{path} is empty"


def test_prometheus_reads_mounted_rules_and_scrapes_workers(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_host = _host_path(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_host == PROMETHEUS_CONFIG.resolve()
    config = _load_yaml(PROMETHEUS_CONFIG)

    for pattern in config["rule_files"]:
        pattern_path = PurePosixPath(pattern)
        host_dir = _host_path(prometheus, str(pattern_path.parent))
        assert host_dir is not None, f"rule_files {pattern} is not mounted into the container"
        assert list(host_dir.glob(pattern_path.name)), f"no rule file matches {pattern}"

    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker_sd = jobs["lsi-worker"]["dns_sd_configs"][0]
    assert worker_sd["names"] == ["worker"] and worker_sd["port"] == 6066
    assert "lsi-refresh" in jobs


def test_rules_are_well_formed(rules: list[dict[str, Any]]) -> None:
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert {"lsi:events:rate1m", "lsi:online_hit_rate:ratio_5m"} <= recorded
    assert {"LsiNoEvents", "LsiDlqRateHigh", "LsiEndToEndLatencyHigh"} <= set(alerts)
    for name in recorded:
        assert re.fullmatch(r"lsi:[a-z0-9_]+:[a-z0-9_]+", name), name
    for name, alert in alerts.items():
        assert alert["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name


def test_grafana_provisioning_matches_mounts(
    compose: dict[str, Any], dashboards: dict[str, dict[str, Any]]
) -> None:
    grafana = compose["services"]["grafana"]
    assert _host_path(grafana, "/etc/grafana/provisioning") == GRAFANA_PROVISIONING.resolve()

    datasources = _load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")
    uids = {ds["uid"]: ds for ds in datasources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"

    providers = _load_yaml(GRAFANA_PROVISIONING / "dashboards" / "lsi.yml")["providers"]
    for provider in providers:
        host_dir = _host_path(grafana, provider["options"]["path"])
        assert host_dir is not None and host_dir.resolve() == DASHBOARDS_DIR.resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_file = _host_path(grafana, home)
    assert home_file is not None and home_file.is_file(), home

    # panels query the `datasource` variable (tests/unit/monitoring/test_dashboards.py); by
    # default it selects the provisioned Prometheus, Grafana's default data source
    for uid, board in dashboards.items():
        variable = next(v for v in board["templating"]["list"] if v["type"] == "datasource")
        assert variable["current"]["value"] in uids, f"{uid}: unknown default data source"
        assert uids[variable["current"]["value"]]["isDefault"] is True


def test_three_dashboards_linked_to_each_other(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == {"lsi-pipeline", "lsi-models", "lsi-kafka"}
    for uid, board in dashboards.items():
        linked = {link["url"].removeprefix("/d/") for link in board["links"]}
        assert linked == set(dashboards) - {uid}, uid


def test_dashboard_panels_have_queries_units_and_unique_ids(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    units: set[str] = set()
    for uid, board in dashboards.items():
        assert board["schemaVersion"] == 39 and board["title"].startswith("lsi")
        panels = all_panels(board["panels"])
        assert len(panels) >= 7, uid
        assert len({p["id"] for p in panels}) == len(panels), f"{uid}: panel ids must be unique"
        for panel in panels:
            where = f"{uid}: panel {panel['title']!r}"
            assert panel.get("description"), f"{where} has no description"
            exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
            assert exprs and all(exprs), f"{where} has a target without a query"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
            for expr in exprs:  # only the Grafana variables a live check can replace
                to_promql(expr, variables=dashboard_variables(board))
            if panel["type"] != "heatmap":
                unit = panel["fieldConfig"]["defaults"].get("unit")
                assert unit, f"{where}: no unit"
                units.add(unit)
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{where} overflows the 24-column grid"
    assert {"s", "percentunit", "short"} <= units and units & {"ops", "reqps"}


def test_every_metric_is_on_a_panel_and_every_panel_has_a_metric() -> None:
    unshown, blind = coverage(dashboard_queries(DASHBOARDS_DIR), rules_from_files(RULES_DIR))
    assert unshown == [], f"metrics no dashboard panel shows: {unshown}"
    assert blind == [], f"panels whose query names no exported or recorded metric: {blind}"


def test_queries_use_only_known_metrics(
    rules: list[dict[str, Any]], exported_series: set[str]
) -> None:
    recorded = {r["record"] for r in rules if "record" in r}
    queried = {n: f"dashboard {q.source} panel {q.panel!r}" for q in dashboard_queries(DASHBOARDS_DIR)
               for n in metric_names(q.expr)}  # fmt: skip
    for rule in rules:
        for name in metric_names(rule["expr"]):
            queried[name] = f"rule {rule.get('record') or rule.get('alert')}"
    assert queried, "no metric names found in any expression"
    for name, where in queried.items():
        assert name.startswith(("lsi_", "lsi:")) or name in PROMETHEUS_BUILTINS, (
            f"{where} queries {name}, which is neither an lsi metric nor a Prometheus builtin"
        )
        if name.startswith("lsi_"):
            assert name in exported_series, f"{where} queries {name}, which lsi does not export"
        if name.startswith("lsi:"):
            assert name in recorded, f"{where} queries {name}, which no rule records"


def test_grafana_variables_become_fixed_windows() -> None:
    expr = "rate(a_total[$__rate_interval]) + increase(b_total[${__range}])"
    assert to_promql(expr, "2m") == "rate(a_total[2m]) + increase(b_total[2m])"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sum by (outcome) (rate(lsi_events_total[1m]))", {"lsi_events_total"}),
        (
            'histogram_quantile(0.99, sum by (le) (rate(x_bucket{job="a:b"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        (
            "sum by (k) (rate(a_total[5m])) / ignoring (k) group_left sum(rate(b_total[5m]))",
            {"a_total", "b_total"},
        ),
        ('up{job="lsi-worker"} == 0 or absent(up{job="lsi-worker"})', {"up"}),
        ("(sum(rate(c[5m])) or vector(0)) == 0 and lsi:x:rate5m > 1e3", {"c", "lsi:x:rate5m"}),
        ("sum(rate(d[5m] offset 1h)) by (agent)", {"d"}),
    ],
)
def test_metric_names_lexer(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_the_demos_install_leaves_the_dev_tools_in_place() -> None:
    """`make demo` after `make test` must not uninstall pytest, ruff and mypy (a plain
    `uv sync --no-dev` removes what is not a runtime dependency): `--inexact`."""
    makefile = (COMPOSE_FILE.parent / "Makefile").read_text(encoding="utf-8")
    recipes = dict(re.findall(r"^([\w-]+):[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M))
    assert re.search(r"^demo:.*\binstall\b", makefile, re.M)
    install = recipes["install"]
    assert "sync --frozen --no-dev" in install and "--inexact" in install
    assert "--inexact" not in recipes["install-dev"]  # the dev environment is exactly the lock


def test_every_volume_the_lsi_image_mounts_exists_in_it_owned_by_lsi(
    compose: dict[str, Any],
) -> None:
    """An empty volume takes its mount point's owner: a path the image lacks would be created
    root-owned, and the non-root worker could not write its RocksDB tables there."""
    dockerfile = (COMPOSE_FILE.parent / "Dockerfile").read_text(encoding="utf-8")
    made = re.search(r"mkdir -p ([^\\\n&]+)", dockerfile)
    assert made is not None and "chown -R lsi:lsi /var/lib/lsi" in dockerfile
    created = {PurePosixPath(p) for p in made.group(1).split()}
    for name in ("worker", "refresh"):
        for volume in compose["services"][name]["volumes"]:
            target = PurePosixPath(volume.split(":")[1] if ":" in volume else volume)
            assert target in created, f"{name}: {target} is not created in the image"
    # the image's own defaults point at those paths, and bind where the docs say
    for setting in ("LSI_DATA_DIR=/var/lib/lsi/tables", "LSI_MODELS_DIR=/var/lib/lsi/models",
                    "LSI_WEB_BIND=0.0.0.0"):  # fmt: skip
        assert setting in dockerfile
    assert "LSI_WEB_HOST=0.0.0.0" not in dockerfile  # an address to bind, never to advertise


def test_one_kafka_release_everywhere_and_one_build_of_the_lsi_image(
    compose: dict[str, Any],
) -> None:
    from lsi.kafka.broker import BrokerSettings

    version = BrokerSettings().kafka_version
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version}"
    built = [name for name, svc in compose["services"].items() if "build" in svc]
    assert built == ["worker"]
    refresh = compose["services"]["refresh"]
    assert refresh["image"] == compose["services"]["worker"]["image"]
    assert refresh["pull_policy"] == "never"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "worker", "refresh", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["kafka-ui"]["profiles"] == ["ui"]  # optional, not started by default
