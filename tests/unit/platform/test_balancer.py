"""The nginx template: rendered for local instances it passes `nginx -t`, keeps nginx's own
variables, retries scoring POSTs explicitly, and compose's nginx service fills every placeholder."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from flightdeck.platform import balancer
from tests.support.services import require_service

ROOT = Path(__file__).resolve().parents[3]


def test_rendered_config_passes_nginx_t(tmp_path):
    nginx = require_service("nginx (apt-get install nginx)", balancer.nginx_binary)
    config = balancer.write_config(tmp_path, [balancer.Upstream("127.0.0.1", 8101),
                                              balancer.Upstream("127.0.0.1", 8102, max_fails=3, fail_timeout_s=5)],
                                   8100, tries=3)
    include = (tmp_path / "gateway.conf").read_text()
    assert "server 127.0.0.1:8101 max_fails=1 fail_timeout=2s;" in include
    assert "server 127.0.0.1:8102 max_fails=3 fail_timeout=5s;" in include
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in include
    assert "proxy_next_upstream_tries 3;" in include and "listen 127.0.0.1:8100;" in include
    assert "$upstream_addr" in include and not re.search(r"\$\{[A-Z_]+\}", include)
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr


def test_a_broken_config_is_refused_by_nginx(tmp_path):
    require_service("nginx (apt-get install nginx)", balancer.nginx_binary)
    config = balancer.write_config(tmp_path, [balancer.Upstream("127.0.0.1", 8101)], 8100)
    (tmp_path / "gateway.conf").write_text((tmp_path / "gateway.conf").read_text().replace("proxy_pass", "proxy_pas"))
    with pytest.raises(balancer.BalancerError, match="nginx refused"):
        balancer.start_nginx(config, tmp_path)


def test_bad_input_and_unfilled_placeholders_are_named(tmp_path):
    with pytest.raises(balancer.BalancerError, match="at least one"):
        balancer.render_include([], "8000", "off")
    with pytest.raises(balancer.BalancerError, match="tries"):
        balancer.render_include([balancer.Upstream("h", 1)], "8000", "off", tries=0)
    template = tmp_path / "t.conf"
    template.write_text(balancer.TEMPLATE.read_text() + "\n# ${SOMETHING_NEW}\n")
    with pytest.raises(balancer.BalancerError, match="SOMETHING_NEW"):
        balancer.render_include([balancer.Upstream("h", 1)], "8000", "off", template=template)


def test_compose_fills_every_placeholder_of_the_template():
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    service = compose["services"]["nginx"]
    placeholders = set(re.findall(r"\$\{([A-Z_]+)\}", balancer.TEMPLATE.read_text()))
    assert placeholders == set(service["environment"])
    assert "./docker/nginx/templates:/etc/nginx/templates:ro" in service["volumes"]
    assert service["depends_on"]["gateway"]["condition"] == "service_healthy"
