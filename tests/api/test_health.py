"""Liveness, readiness and the problem+json shape of every error."""

from __future__ import annotations

import httpx

from tests.support.users import make_user

PROBLEM = "application/problem+json"


def _is_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


def test_health_and_ready(http: httpx.Client) -> None:
    assert http.get("/health").json() == {"status": "ok"}
    r = http.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    assert r.headers["x-request-id"]


def test_unknown_path_is_problem_json(http: httpx.Client) -> None:
    _is_problem(http.get("/no/such/thing"), 404)


def test_wrong_method_is_problem_json(http: httpx.Client) -> None:
    _is_problem(http.delete("/health"), 405)


def test_openapi_and_docs(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert "/ready" in spec["paths"]
    assert http.get("/docs").status_code == 200


def test_request_id_is_echoed(http: httpx.Client) -> None:
    assert http.get("/health", headers={"X-Request-Id": "abc123"}).headers["x-request-id"] == (
        "abc123"
    )


def test_oversized_body_refused(http: httpx.Client) -> None:
    body = b"x" * (21 * 1024 * 1024)
    _is_problem(http.post("/health", content=body), 413)


def test_web_map_served_at_root(http: httpx.Client) -> None:
    r = http.get("/")
    assert r.status_code == 200 and "<html" in r.text.lower()


def test_nul_in_query_is_refused_naming_the_parameter(http: httpx.Client) -> None:
    body = _is_problem(http.get("/api/v1/regions", params={"q": "五马\x00"}), 422)
    assert body["errors"][0]["field"] == "q"


def test_nul_in_body_text_is_refused_not_a_500(http: httpx.Client) -> None:
    r = http.post("/api/v1/auth/login", json={"username": "adm\x00in", "password": "x" * 12})
    assert r.status_code in (401, 422), r.text  # never a 500
    assert r.headers["content-type"].startswith(PROBLEM)


def test_web_client_is_served_compressed(http: httpx.Client) -> None:
    r = http.get("/js/app.js", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert r.num_bytes_downloaded * 2 < len(r.content)  # on the wire: well under half


def test_offsets_past_bigint_are_bad_input_not_a_500(http: httpx.Client, module_engine) -> None:
    user = make_user(module_engine, "big_numbers", roles=["township_commander"],
                     scope=["330302006"])
    body = _is_problem(http.get("/api/v1/regions", params={"offset": 10**27},
                                headers=user.headers), 422)
    assert "offset" in str(body)
    r = http.get("/api/v1/patrols/sessions", params={"offset": 10**27}, headers=user.headers)
    assert _is_problem(r, 422)["errors"][0]["field"].endswith("offset")
