"""compose.yaml and the Prometheus / Grafana files it mounts: accepted by `docker-compose
config`, and consistent with each other (ports, health checks, the simulator wiring, the
drain deadline, scrape targets, provisioning paths)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import (
    COMPOSE_FILE,
    DRAIN_MARGIN_S,
    REPO,
    compose,
    compose_switchboard_services,
    interpolate_defaults,
    render,
)

PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
WEBHOOK_PATH = "/api/voice/realtime-webhook"


def _duration_s(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


def _option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "exec form: no shell to mangle arguments"
    return [interpolate_defaults(str(a)) for a in command]


def _listen_port(service: dict[str, Any]) -> int:
    argv = _command(service)
    port = _option(argv, "--port") or _option(argv, "--metrics-port")
    assert port, f"{argv}: name the port explicitly"
    return int(port)


# ----------------------------------------------------------------------- docker-compose


@pytest.mark.parametrize("profiles", [[], ["sim"]], ids=["default", "sim"])
def test_docker_compose_accepts_the_file(profiles: list[str], tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian package `docker-compose`)")
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("")
    argv = [binary, "--project-directory", str(REPO), "--env-file", str(empty_env)]
    argv += ["-f", str(COMPOSE_FILE)]
    for profile in profiles:
        argv += ["--profile", profile]
    # A clean environment: the defaults in compose.yaml, not the developer's shell.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    quiet = subprocess.run(
        [*argv, "config", "-q"], capture_output=True, text=True, env=env, timeout=60
    )
    assert quiet.returncode == 0, quiet.stderr


# ------------------------------------------------------------------------------ services


def test_the_whole_stack_is_there() -> None:
    services = set(compose()["services"])
    assert {
        "nats",
        "ingress",
        "acceptor",
        "session-1",
        "session-2",
        "postcall",
        "simulator",
        "prometheus",
        "grafana",
    } <= services


def test_switchboard_services_share_one_image() -> None:
    services = compose_switchboard_services()
    assert set(services) >= {"ingress", "acceptor", "session-1", "session-2", "simulator"}
    images = {interpolate_defaults(s["image"]) for s in services.values()}
    builds = {str(s["build"]) for s in services.values()}
    assert len(images) == 1 and builds == {"."}, (images, builds)


def test_only_the_simulator_is_behind_the_sim_profile() -> None:
    for name, service in compose()["services"].items():
        expected = ["sim"] if name == "simulator" else None
        assert service.get("profiles") == expected, name


def test_health_checks_and_start_order() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if name != "nats-exporter":  # a scratch image with nothing to run a check with
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no health check"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_started" if dependency == "nats-exporter" else "service_healthy"
            assert spec["condition"] == wanted, f"{name} → {dependency}"
    for name in compose_switchboard_services():
        chain, seen = [name], set()
        while chain:  # nats is reached, directly or through another service
            current = chain.pop()
            seen.add(current)
            chain += [d for d in services[current].get("depends_on", {}) if d not in seen]
        assert "nats" in seen, name


def test_health_checks_probe_the_port_each_service_listens_on() -> None:
    for name, service in compose_switchboard_services().items():
        test = " ".join(service["healthcheck"]["test"])
        assert "curl" not in test and "wget" not in test, "the image has neither"
        path = "/healthz" if name == "simulator" else "/readyz"
        assert f"http://127.0.0.1:{_listen_port(service)}{path}" in test, name


def test_session_workers_get_time_to_hand_off() -> None:
    from shared.settings import Settings

    default = float(Settings.model_fields["session_drain_deadline_s"].default)
    sessions = {n: s for n, s in compose_switchboard_services().items() if n.startswith("session")}
    assert len(sessions) == 2
    ids = set()
    for name, service in sessions.items():
        argv = _command(service)
        assert argv[0] == "session"
        ids.add(_option(argv, "--worker-id"))
        deadline = float(service["environment"].get("SESSION_DRAIN_DEADLINE_S", default))
        # Docker sends SIGKILL after stop_grace_period (default 10 s).
        grace = _duration_s(service.get("stop_grace_period", "10s"))
        assert deadline + DRAIN_MARGIN_S <= grace, f"{name}: {deadline=} {grace=}"
    assert len(ids) == 2 and None not in ids, "each worker has its own id"


def test_the_simulator_and_the_services_find_each_other() -> None:
    services = compose()["services"]
    simulator = _command(services["simulator"])
    assert simulator[0] == "simulator"
    assert _option(simulator, "--host") == "0.0.0.0", "reachable from the other containers"
    ingress_port = _listen_port(services["ingress"])
    webhook = _option(simulator, "--webhook-url")
    assert webhook == f"http://ingress:{ingress_port}{WEBHOOK_PATH}"
    simulator_port = _listen_port(services["simulator"])
    for name, service in compose_switchboard_services().items():
        env = service["environment"]
        base_url = interpolate_defaults(env["OPENAI_BASE_URL"])
        # Without an override the services talk to the simulator, not to OpenAI.
        assert base_url == f"http://simulator:{simulator_port}/v1", name
        secret = interpolate_defaults(env["OPENAI_WEBHOOK_SECRET"])
        assert secret.startswith("whsec_"), name
        assert interpolate_defaults(env["NATS_URL"]) == "nats://nats:4222"


def test_nats_runs_jetstream_on_a_volume() -> None:
    nats = compose()["services"]["nats"]
    argv = [str(a) for a in nats["command"]]
    assert "-js" in argv
    store = _option(argv, "-sd")
    monitor = _option(argv, "-m")
    assert store and monitor
    (volume,) = nats["volumes"]
    source, target = str(volume).split(":")[:2]
    assert target == store and source in compose()["volumes"], volume
    assert f"127.0.0.1:{monitor}/healthz" in " ".join(nats["healthcheck"]["test"])
    image = interpolate_defaults(nats["image"])
    major, minor = (int(x) for x in image.split(":")[1].split("-")[0].split(".")[:2])
    assert (major, minor) >= (2, 12), image


def test_published_ports_stay_on_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


# -------------------------------------------------------------------- prometheus/grafana


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path → repository path, for the bind mounts of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            mounts[target] = REPO / source
    return mounts


def test_prometheus_config_is_mounted_and_scrapes_every_service() -> None:
    services = compose()["services"]
    mounts = _mounts(services["prometheus"])
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    assert mounts["/etc/prometheus/rules"] == REPO / "deploy" / "prometheus" / "rules"
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    jobs = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                jobs.setdefault(job["job_name"], set()).add(host)
                if host == "localhost":
                    continue
                assert host in services, f"{job['job_name']}: no service {host}"
                if host in compose_switchboard_services():
                    assert int(port) == _listen_port(services[host]), target
    switchboard = {name for name in compose_switchboard_services() if name != "simulator"}
    scraped = set().union(*(hosts for job, hosts in jobs.items() if job.startswith("switchboard")))
    assert scraped == switchboard
    assert "nats-exporter" in jobs["nats"]


def test_scrape_job_names_match_the_kubernetes_services() -> None:
    """Dashboards and alerts select on `job`; a ServiceMonitor's job is the Service name."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {j["job_name"] for j in config["scrape_configs"] if j["job_name"].startswith("switch")}
    services = {s["metadata"]["name"] for s in render("base") if s["kind"] == "Service"}
    assert jobs == services


def test_promtool_accepts_the_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    # --syntax-only: the rule files are checked by their own tests (promtool test rules).
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_mounted_files() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    dashboards_dir = next(t for t, s in mounts.items() if s == GRAFANA / "dashboards")

    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    (prometheus,) = datasources
    assert prometheus["uid"] == "prometheus" and prometheus["type"] == "prometheus"
    port = 9090
    assert prometheus["url"] == f"http://prometheus:{port}"
    assert f"127.0.0.1:{port}:{port}" in compose()["services"]["prometheus"]["ports"]

    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "switchboard.yml").read_text()
    )["providers"]
    assert [p["options"]["path"] for p in providers] == [dashboards_dir]


def test_dashboards_use_the_provisioned_data_source() -> None:
    """Whatever dashboards exist refer to the data source by the uid provisioned here."""
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        text = path.read_text()
        for uid in re.findall(r'"datasource"\s*:\s*\{[^}]*"uid"\s*:\s*"([^"]+)"', text):
            allowed = uid in ("prometheus", "grafana", "-- Grafana --") or uid.startswith("$")
            assert allowed, f"{path.name}: data source uid {uid!r}, provisioned: 'prometheus'"


def test_every_service_gets_the_agent_settings_and_the_agents_file() -> None:
    """docs/production.md §3 sets the default agent and the profiles through compose."""
    for name, service in compose_switchboard_services().items():
        env = service["environment"]
        for variable in (
            "OPENAI_MODEL",
            "OPENAI_VOICE",
            "OPENAI_INSTRUCTIONS",
            "SWITCHBOARD_GREETING",
            "SWITCHBOARD_CONTROL_TOKEN",
        ):
            assert f"${{{variable}:-" in str(env.get(variable)), f"{name}: {variable}"
        volumes = [interpolate_defaults(str(v)).split(":") for v in service["volumes"]]
        mounted = {target: source for source, target, *_ in volumes}
        source = mounted[env["SWITCHBOARD_AGENTS_FILE"]]
        assert (REPO / source).is_file(), f"{name}: {source} does not exist"
