"""The dashboard's page and files: served from the package, locked to this server by its CSP."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch

from app.api.dashboard import STATIC_DIR
from tests.support.processes import REPO


def test_given_the_app_when_the_dashboard_is_fetched_then_the_page_and_its_script_come_with_a_same_origin_csp(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    scripts = sorted(path.name for path in STATIC_DIR.glob("*.js"))
    assert scripts == ["dashboard.js", "draw.js", "key.js"]
    for name in scripts:
        assert f'src="/dashboard/static/{name}"'.encode() in page.data
        script = client.get(f"/dashboard/static/{name}")
        assert script.status_code == 200 and script.mimetype == "text/javascript"
        # API strings (batch metadata, errors) are client-controlled: no script parses markup.
        assert not [sink for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write")
                    if sink in script.data], name
    assert client.get("/dashboard/static/dashboard.css").status_code == 200
    # a page for people, not an API route: it stays out of the OpenAPI document
    assert not [path for path in client.get("/docs/openapi.json").get_json()["paths"] if "dashboard" in path]


def test_given_a_path_outside_the_dashboard_files_when_requested_then_404_json_and_nothing_is_read(client):
    assert client.get("/dashboard/static/index.html").status_code == 200  # the files themselves are served
    for name in ("../dashboard.py", "..%2F..%2F__init__.py", "missing.js"):
        response = client.get(f"/dashboard/static/{name}")
        assert response.status_code == 404 and "detail" in response.get_json(), name


def test_given_the_project_metadata_when_packaged_then_every_dashboard_file_is_package_data():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["app"]
    app_dir = STATIC_DIR.parent.parent
    files = [path.relative_to(app_dir).as_posix() for path in STATIC_DIR.iterdir()]
    assert {"static/dashboard/index.html", "static/dashboard/dashboard.js"} <= set(files)
    assert all(any(fnmatch(name, pattern) for pattern in patterns) for name in files), files



def test_given_no_api_key_when_the_dashboard_is_fetched_then_the_page_loads_with_a_key_form_and_its_data_needs_a_key(
        anonymous_client):
    page = anonymous_client.get("/dashboard")
    assert page.status_code == 200 and b'id="key-form"' in page.data and b'type="password"' in page.data
    assert anonymous_client.get("/dashboard/static/key.js").status_code == 200
    for path in ("/v1/monitor", "/v1/messages/batches", "/v1/monitor/dead-letters"):
        assert anonymous_client.get(path).status_code == 401, path
