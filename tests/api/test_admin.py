"""The admin API over real HTTP: accounts, roles, jurisdictions, staff, audit, 三员分立, scope."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import create_engine, text

from geoserver.database.bootstrap import OWNER_ROLE
from geoserver.database.engine import sqlalchemy_url
from tests.support.users import TestUser, make_user

CITY = "330300"
COUNTY = "330302"        # 鹿城区, the tiny demo's county
OTHER_COUNTY = "330303"  # 龙湾区, added by the fixture below
WUMA = "330302006"       # 五马街道
BINJIANG = "330302024"   # 滨江街道
PHONE = "13812345678"


@pytest.fixture(scope="module")
def other_county(pg, module_db) -> str:
    """A second county beside 鹿城区 (a square east of the city; boundary checks skipped)."""
    owner = create_engine(sqlalchemy_url(pg.url(OWNER_ROLE, module_db)))
    with owner.begin() as conn:
        conn.execute(text("SET LOCAL gridgov.skip_region_checks = 'on'"))
        conn.execute(text(
            "INSERT INTO region (code, name, level, parent_code, path, geom) "
            "SELECT :c, '龙湾区', 'county', :city, CAST(:p AS ltree), "
            "ST_Multi(ST_Envelope(ST_Translate(geom, 0.5, 0))) FROM region "
            "WHERE code = :city AND valid_to IS NULL"),
            {"c": OTHER_COUNTY, "city": CITY, "p": f"{CITY}.{OTHER_COUNTY}"})
    owner.dispose()
    return OTHER_COUNTY


@pytest.fixture(scope="module")
def sysadm(module_engine) -> TestUser:
    return make_user(module_engine, "sysadm", roles=["admin"], scope=[CITY])


@pytest.fixture(scope="module")
def county_admin(module_engine) -> TestUser:
    return make_user(module_engine, "lucheng_admin", roles=["admin"], scope=[COUNTY])


@pytest.fixture(scope="module")
def secadm(module_engine) -> TestUser:
    return make_user(module_engine, "secadm", roles=["security_admin"], scope=[CITY])


@pytest.fixture(scope="module")
def auditor(module_engine) -> TestUser:
    return make_user(module_engine, "auditadm", roles=["audit_admin"], scope=[CITY])


@pytest.fixture(scope="module")
def outsider(module_engine, other_county) -> TestUser:
    """An account homed in the other county."""
    return make_user(module_engine, "longwan_worker", roles=["viewer"], scope=[other_county])


def audited(http: httpx.Client, auditor: TestUser, action: str, object_id: object) -> dict:
    """Return the newest audit row of an action on an object (read as the auditor)."""
    r = http.get("/api/v1/admin/audit", headers=auditor.headers,
                 params={"action": action, "object_id": str(object_id), "limit": 1})
    assert r.status_code == 200, r.text
    assert r.json()["items"], f"no audit row {action} for {object_id}"
    return r.json()["items"][0]


def create(http: httpx.Client, admin_user: TestUser, username: str, **extra: object) -> dict:
    body = {"username": username, "display_name": username, "home_region_code": WUMA,
            "roles": ["grid_worker"], "scope": [WUMA], **extra}
    r = http.post("/api/v1/admin/users", headers=admin_user.headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()


# --- accounts -----------------------------------------------------------------------------


def test_create_get_update_with_masked_phone(http, sysadm, auditor) -> None:
    new = create(http, sysadm, "zhang_wei", phone=PHONE)
    assert new["phone_masked"] == "138****5678" and "phone" not in new
    assert new["one_time_password"] and new["must_change_password"] is True
    assert new["roles"] == ["grid_worker"] and new["scope"] == [WUMA]
    assert audited(http, auditor, "user.create", new["id"])["after"]["phone"] == "138****5678"

    got = http.get(f"/api/v1/admin/users/{new['id']}", headers=sysadm.headers).json()
    assert got["phone_masked"] == "138****5678" and "phone" not in got

    r = http.patch(f"/api/v1/admin/users/{new['id']}", headers=sysadm.headers,
                   json={"version": got["version"], "display_name": "张伟", "phone": "13900001111"})
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "张伟" and r.json()["phone_masked"] == "139****1111"
    row = audited(http, auditor, "user.update", new["id"])
    assert row["before"]["display_name"] == "zhang_wei" and row["after"]["display_name"] == "张伟"
    assert PHONE not in str(row) and "13900001111" not in str(row)

    stale = http.patch(f"/api/v1/admin/users/{new['id']}", headers=sysadm.headers,
                       json={"version": got["version"], "display_name": "x"})
    assert stale.status_code == 409


def test_bad_input_is_422(http, sysadm) -> None:
    bad_phone = http.post("/api/v1/admin/users", headers=sysadm.headers,
                          json={"username": "badphone", "display_name": "x",
                                "home_region_code": WUMA, "phone": "12345"})
    assert bad_phone.status_code == 422 and bad_phone.json()["errors"][0]["field"] == "phone"
    taken = http.post("/api/v1/admin/users", headers=sysadm.headers,
                      json={"username": "sysadm", "display_name": "x", "home_region_code": WUMA})
    assert taken.status_code == 409
    unknown_role = http.post("/api/v1/admin/users", headers=sysadm.headers,
                             json={"username": "norole", "display_name": "x",
                                   "home_region_code": WUMA, "roles": ["king"]})
    assert unknown_role.status_code == 422
    assert http.get("/api/v1/admin/users", headers=sysadm.headers,
                    params={"limit": 0}).status_code == 422
    assert http.get("/api/v1/admin/users/999999999", headers=sysadm.headers).status_code == 404
    # Values the database could not even hold are invalid input, never a 500.
    for path, params in (("/api/v1/admin/users/99999999999999999999", {}),
                         ("/api/v1/admin/users", {"q": "a\x00b"}),
                         ("/api/v1/admin/users", {"role": "Robert'); --"}),
                         ("/api/v1/admin/staff", {"after": 2**70})):
        assert http.get(path, headers=sysadm.headers, params=params).status_code == 422, path
    for body in ({"username": "nul_name", "display_name": "a\x00b", "home_region_code": WUMA},
                 {"username": "nul_role", "display_name": "x", "home_region_code": WUMA,
                  "roles": ["viewer\x00"]}):
        assert http.post("/api/v1/admin/users", headers=sysadm.headers,
                         json=body).status_code == 422, body


def test_list_pages_by_keyset_and_filters(http, sysadm) -> None:
    first = http.get("/api/v1/admin/users", headers=sysadm.headers,
                     params={"limit": 10, "region_code": WUMA}).json()
    assert len(first["items"]) == 10 and first["next_after"] == first["items"][-1]["id"]
    second = http.get("/api/v1/admin/users", headers=sysadm.headers,
                      params={"limit": 10, "region_code": WUMA,
                              "after": first["next_after"]}).json()
    ids = [u["id"] for u in first["items"] + second["items"]]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    leaders = http.get("/api/v1/admin/users", headers=sysadm.headers,
                       params={"role": "grid_leader", "limit": 500}).json()["items"]
    assert leaders and all("grid_leader" in u["roles"] for u in leaders)
    # LIKE wildcards in the text filter are literal, not patterns.
    assert http.get("/api/v1/admin/users", headers=sysadm.headers,
                    params={"q": "%"}).json()["items"] == []


def test_disable_ends_sessions_and_tokens_at_once(http, module_engine, sysadm, auditor) -> None:
    victim = make_user(module_engine, "to_disable", roles=["viewer"], scope=[WUMA])
    assert http.get("/api/v1/auth/me", headers=victim.headers).status_code == 200
    r = http.post(f"/api/v1/admin/users/{victim.id}/disable", headers=sysadm.headers)
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert http.get("/api/v1/auth/me", headers=victim.headers).status_code == 401
    row = audited(http, auditor, "user.disable", victim.id)
    assert row["before"]["is_active"] is True and row["after"]["is_active"] is False
    login = http.post("/api/v1/auth/login",
                      json={"username": "to_disable", "password": victim.password})
    assert login.status_code == 401


def test_password_reset_returns_a_one_time_password(http, module_engine, sysadm, auditor) -> None:
    user = make_user(module_engine, "forgetful", roles=["viewer"], scope=[WUMA])
    r = http.post(f"/api/v1/admin/users/{user.id}/password-reset", headers=sysadm.headers)
    assert r.status_code == 200
    temporary = r.json()["one_time_password"]
    assert http.post("/api/v1/auth/login", json={"username": "forgetful",
                                                 "password": user.password}).status_code == 401
    assert http.post("/api/v1/auth/login", json={"username": "forgetful",
                                                 "password": temporary}).status_code == 200
    row = audited(http, auditor, "user.password_reset", user.id)
    assert row["after"]["must_change_password"] is True and temporary not in str(row)


def test_admin_revokes_all_sessions(http, module_engine, sysadm, auditor) -> None:
    user = make_user(module_engine, "revoked_one", roles=["viewer"], scope=[WUMA])
    r = http.post(f"/api/v1/admin/users/{user.id}/sessions/revoke-all", headers=sysadm.headers)
    assert r.status_code == 204
    assert http.get("/api/v1/auth/me", headers=user.headers).status_code == 401
    row = audited(http, auditor, "user.revoke_sessions", user.id)
    assert row["before"]["active_tokens"] == 1 and row["after"]["active_tokens"] == 0


# --- sensitive data -----------------------------------------------------------------------


def test_reveal_phone_is_audited_and_needs_clearance(http, sysadm, secadm, auditor) -> None:
    user = create(http, sysadm, "li_na", phone=PHONE)
    r = http.get(f"/api/v1/admin/users/{user['id']}", headers=sysadm.headers,
                 params={"reveal": "phone"})
    assert r.status_code == 200 and r.json()["phone"] == PHONE
    row = audited(http, auditor, "read_sensitive", user["id"])
    assert row["actor_username"] == "sysadm" and row["detail"]["fields"] == ["phone"]
    refused = http.get(f"/api/v1/admin/users/{user['id']}", headers=secadm.headers,
                       params={"reveal": "phone"})
    assert refused.status_code == 403
    assert http.get(f"/api/v1/admin/users/{user['id']}", headers=sysadm.headers,
                    params={"reveal": "password_hash"}).status_code == 422


# --- scope ---------------------------------------------------------------------------------


def test_county_admin_sees_only_their_county(http, county_admin, outsider) -> None:
    listed = http.get("/api/v1/admin/users", headers=county_admin.headers,
                      params={"limit": 500}).json()["items"]
    assert listed and all(u["home_region_code"].startswith(COUNTY) for u in listed)
    assert outsider.id not in {u["id"] for u in listed}
    h = county_admin.headers
    base = f"/api/v1/admin/users/{outsider.id}"
    assert http.get(base, headers=h).status_code == 404
    assert http.patch(base, headers=h, json={"version": 1, "display_name": "x"}).status_code == 404
    assert http.post(f"{base}/disable", headers=h).status_code == 404
    assert http.post(f"{base}/password-reset", headers=h).status_code == 404
    assert http.post(f"{base}/sessions/revoke-all", headers=h).status_code == 404
    assert http.put(f"{base}/roles", headers=h, json={"roles": []}).status_code == 404
    assert http.put(f"{base}/scope", headers=h, json={"scope": [WUMA]}).status_code == 404
    assert http.post("/api/v1/admin/staff", headers=h, json={
        "user_id": outsider.id, "position": "grid_worker", "region_code": WUMA}).status_code == 404
    staff = http.get("/api/v1/admin/staff", headers=h, params={"user_id": outsider.id}).json()
    assert staff["items"] == []
    # The outsider still works: the refusals changed nothing.
    assert http.get("/api/v1/auth/me", headers=outsider.headers).status_code == 200


def test_county_admin_grants_only_inside_their_county(http, county_admin, other_county) -> None:
    h = county_admin.headers
    r = http.post("/api/v1/admin/users", headers=h, json={
        "username": "homed_away", "display_name": "x", "home_region_code": other_county})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "home_region_code"
    user = create(http, county_admin, "lucheng_worker")
    r = http.put(f"/api/v1/admin/users/{user['id']}/scope", headers=h,
                 json={"scope": [WUMA, other_county]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scope"
    r = http.put(f"/api/v1/admin/users/{user['id']}/scope", headers=h, json={"scope": ["*"]})
    assert r.status_code == 422
    r = http.patch(f"/api/v1/admin/users/{user['id']}", headers=h,
                   json={"version": user["version"], "home_region_code": other_county})
    assert r.status_code == 422
    ok = http.put(f"/api/v1/admin/users/{user['id']}/scope", headers=h,
                  json={"scope": [WUMA, BINJIANG]})
    assert ok.status_code == 200 and ok.json()["scope"] == [WUMA, BINJIANG]


def test_county_admin_cannot_take_away_a_wider_grant(http, module_engine, county_admin,
                                                    other_county) -> None:
    wide = make_user(module_engine, "two_counties", roles=["viewer"], scope=[WUMA, other_county],
                     home=WUMA)
    r = http.put(f"/api/v1/admin/users/{wide.id}/scope", headers=county_admin.headers,
                 json={"scope": [WUMA]})
    assert r.status_code == 403


# --- 三员分立 --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(module_engine) -> TestUser:
    return make_user(module_engine, "plain_user", roles=["viewer"], scope=[WUMA])


def _matrix(sysadm, secadm, auditor, target):
    u = f"/api/v1/admin/users/{target.id}"
    new_user = {"username": "dutytest", "display_name": "x", "home_region_code": WUMA}
    role = {"name": "duty_probe", "title": "x", "permissions": ["region.read"]}
    # (who, method, path, body, allowed)
    return [
        (sysadm, "POST", "/api/v1/admin/users", new_user, True),
        (sysadm, "POST", "/api/v1/admin/roles", role, False),
        (sysadm, "PATCH", "/api/v1/admin/roles/viewer", {"permissions": ["region.read"]}, False),
        (sysadm, "GET", "/api/v1/admin/audit", None, False),
        (sysadm, "PUT", f"{u}/roles", {"roles": ["audit_admin"]}, False),
        (secadm, "POST", "/api/v1/admin/users", {**new_user, "username": "dutytest2"}, False),
        (secadm, "POST", f"{u}/password-reset", None, False),
        (secadm, "POST", f"{u}/disable", None, False),
        (secadm, "PATCH", u, {"version": 1, "display_name": "x"}, False),
        (secadm, "POST", "/api/v1/admin/staff",
         {"user_id": target.id, "position": "grid_worker", "region_code": WUMA}, False),
        (secadm, "GET", "/api/v1/admin/audit", None, False),
        (secadm, "POST", "/api/v1/admin/roles", role, True),
        (auditor, "GET", "/api/v1/admin/users", None, False),
        (auditor, "GET", "/api/v1/admin/roles", None, False),
        (auditor, "POST", "/api/v1/admin/users", {**new_user, "username": "dutytest3"}, False),
        (auditor, "PUT", f"{u}/roles", {"roles": ["viewer"]}, False),
        (auditor, "POST", "/api/v1/admin/roles", {**role, "name": "duty_probe2"}, False),
        (auditor, "GET", "/api/v1/admin/audit", None, True),
    ]


def test_separation_of_duties_matrix(http, sysadm, secadm, auditor, target) -> None:
    for who, method, path, body, allowed in _matrix(sysadm, secadm, auditor, target):
        r = http.request(method, path, headers=who.headers, json=body)
        if allowed:
            assert r.status_code < 300, (who.username, method, path, r.text)
        else:
            assert r.status_code == 403, (who.username, method, path, r.status_code, r.text)


def test_no_admin_acts_on_another_duty_or_on_themselves(http, sysadm, secadm, auditor,
                                                        target) -> None:
    # The system administrator cannot take over the audit administrator's account.
    for path in (f"/api/v1/admin/users/{auditor.id}/password-reset",
                 f"/api/v1/admin/users/{auditor.id}/disable",
                 f"/api/v1/admin/users/{secadm.id}/sessions/revoke-all"):
        assert http.post(path, headers=sysadm.headers).status_code == 403, path
    assert http.put(f"/api/v1/admin/users/{auditor.id}/roles", headers=sysadm.headers,
                    json={"roles": ["audit_admin", "viewer"]}).status_code == 403
    # Nobody grants themselves anything.
    assert http.put(f"/api/v1/admin/users/{secadm.id}/roles", headers=secadm.headers,
                    json={"roles": ["security_admin", "grid_leader"]}).status_code == 403
    assert http.put(f"/api/v1/admin/users/{sysadm.id}/scope", headers=sysadm.headers,
                    json={"scope": [CITY]}).status_code == 403
    assert http.patch("/api/v1/admin/roles/security_admin", headers=secadm.headers,
                      json={"permissions": ["role.admin", "person.read"]}).status_code == 403
    # One account, one duty; the audit account holds nothing else.
    assert http.put(f"/api/v1/admin/users/{sysadm.id}/roles", headers=secadm.headers,
                    json={"roles": ["admin", "audit_admin"]}).status_code == 409
    assert http.put(f"/api/v1/admin/users/{auditor.id}/roles", headers=secadm.headers,
                    json={"roles": ["audit_admin", "viewer"]}).status_code == 409
    # The security administrator grants roles, administrator roles included.
    r = http.put(f"/api/v1/admin/users/{target.id}/roles", headers=secadm.headers,
                 json={"roles": ["viewer", "grid_instructor"]})
    assert r.status_code == 200 and r.json()["roles"] == ["grid_instructor", "viewer"]


def test_duty_permissions_stay_in_their_duty(http, secadm) -> None:
    cases = [("admin", ["user.admin", "audit.read"]),
             ("audit_admin", ["audit.read", "region.read"]),
             ("viewer", ["region.read", "role.admin"]), ("viewer", ["*"])]
    for role, perms in cases:
        r = http.patch(f"/api/v1/admin/roles/{role}", headers=secadm.headers,
                       json={"permissions": perms})
        assert r.status_code == 422, (role, perms, r.text)
        assert r.json()["errors"][0]["field"] == "permissions"
    admin_role = http.get("/api/v1/admin/roles", headers=secadm.headers).json()["items"]
    assert "audit.read" not in next(r for r in admin_role if r["name"] == "admin")["permissions"]


# --- roles -----------------------------------------------------------------------------------


def test_roles_are_data_and_changes_are_audited(http, module_engine, secadm, auditor) -> None:
    r = http.post("/api/v1/admin/roles", headers=secadm.headers, json={
        "name": "patrol_viewer", "title": "巡查查看", "permissions": ["region.read"]})
    assert r.status_code == 201 and r.json()["permissions"] == ["region.read"]
    assert http.post("/api/v1/admin/roles", headers=secadm.headers, json={
        "name": "patrol_viewer", "title": "dup"}).status_code == 409
    assert http.post("/api/v1/admin/roles", headers=secadm.headers, json={
        "name": "ghost", "title": "x", "permissions": ["no.such"]}).status_code == 422
    holder = make_user(module_engine, "patroller", roles=["patrol_viewer"], scope=[WUMA])
    r = http.patch("/api/v1/admin/roles/patrol_viewer", headers=secadm.headers,
                   json={"permissions": ["region.read", "building.read"]})
    assert r.status_code == 200
    me = http.get("/api/v1/auth/me", headers=holder.headers).json()
    assert "building.read" in me["permissions"]
    row = audited(http, auditor, "permission.role_update", "patrol_viewer")
    assert row["before"]["permissions"] == ["region.read"]
    assert row["after"]["permissions"] == ["building.read", "region.read"]
    assert audited(http, auditor, "permission.role_create", "patrol_viewer")["after"]
    listed = http.get("/api/v1/admin/roles", headers=secadm.headers).json()["items"]
    assert {"admin", "security_admin", "audit_admin", "patrol_viewer"} <= {
        x["name"] for x in listed}


def test_role_definitions_need_a_city_wide_security_admin(http, module_engine) -> None:
    county_sec = make_user(module_engine, "lucheng_sec", roles=["security_admin"], scope=[COUNTY])
    r = http.patch("/api/v1/admin/roles/viewer", headers=county_sec.headers,
                   json={"permissions": ["region.read", "person.read"]})
    assert r.status_code == 403


def test_roles_and_scope_changes_are_permission_actions(http, module_engine, secadm,
                                                        auditor) -> None:
    user = make_user(module_engine, "regranted", roles=["viewer"], scope=[WUMA])
    assert http.put(f"/api/v1/admin/users/{user.id}/roles", headers=secadm.headers,
                    json={"roles": ["grid_leader"]}).status_code == 200
    assert http.put(f"/api/v1/admin/users/{user.id}/scope", headers=secadm.headers,
                    json={"scope": [BINJIANG]}).status_code == 200
    roles = audited(http, auditor, "permission.roles", user.id)
    assert roles["before"] == ["viewer"] and roles["after"] == ["grid_leader"]
    scope = audited(http, auditor, "permission.scope", user.id)
    assert scope["before"] == [WUMA] and scope["after"] == [BINJIANG]
    me = http.get("/api/v1/auth/me", headers=user.headers).json()
    assert me["roles"] == ["grid_leader"] and me["scope"] == [f"{CITY}.{COUNTY}.{BINJIANG}"]


# --- staff and org units ----------------------------------------------------------------------


def _a_grid(http: httpx.Client, user: TestUser, township: str) -> str:
    r = http.get("/api/v1/regions", headers=user.headers,
                 params={"level": "grid", "q": township, "limit": 1})
    assert r.status_code == 200, r.text
    return r.json()["items"][0]["code"]


def test_department_account_bound_to_a_grid(http, module_engine, sysadm, auditor) -> None:
    units = http.get("/api/v1/admin/org-units", headers=sysadm.headers,
                     params={"kind": "department"}).json()["items"]
    dept = next(u for u in units if u["code"] == f"scj{COUNTY}")
    grid = _a_grid(http, sysadm, WUMA)
    clerk = make_user(module_engine, "scj_clerk", roles=["department_staff"], scope=[COUNTY])
    r = http.post("/api/v1/admin/staff", headers=sysadm.headers, json={
        "user_id": clerk.id, "position": "department_staff", "region_code": grid,
        "org_unit_id": dept["id"]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["org_unit_code"] == dept["code"]
    assert grid in http.get("/api/v1/auth/me", headers=clerk.headers).json()["grid_codes"]
    at_grid = http.get("/api/v1/admin/staff", headers=sysadm.headers,
                       params={"region_code": grid}).json()["items"]
    assert sid in {s["id"] for s in at_grid}
    assert audited(http, auditor, "staff.assign", sid)["after"]["org_unit_id"] == dept["id"]

    ended = http.post(f"/api/v1/admin/staff/{sid}/end", headers=sysadm.headers, json={})
    assert ended.status_code == 200 and ended.json()["valid_to"]
    assert grid not in http.get("/api/v1/auth/me", headers=clerk.headers).json()["grid_codes"]
    row = audited(http, auditor, "staff.end", sid)
    assert row["before"]["valid_to"] is None and row["after"]["valid_to"]
    assert http.post(f"/api/v1/admin/staff/{sid}/end", headers=sysadm.headers,
                     json={}).status_code == 404
    history = http.get("/api/v1/admin/staff", headers=sysadm.headers,
                       params={"user_id": clerk.id, "current": "false"}).json()["items"]
    assert [s["id"] for s in history] == [sid]


def test_staff_assignment_rules(http, module_engine, sysadm) -> None:
    clerk = make_user(module_engine, "zz_clerk", roles=["department_staff"], scope=[COUNTY])
    platform = next(u for u in http.get("/api/v1/admin/org-units", headers=sysadm.headers,
                                        params={"region_code": WUMA}).json()["items"]
                    if u["code"] == f"zz{WUMA}")
    away_grid = _a_grid(http, sysadm, BINJIANG)
    cases = [
        ({"position": "department_staff", "region_code": away_grid}, "org_unit_id"),
        ({"position": "department_staff", "region_code": away_grid,
          "org_unit_id": platform["id"]}, "region_code"),
        ({"position": "astronaut", "region_code": away_grid}, "position"),
        ({"position": "grid_worker", "region_code": "999999999999999"}, "region_code"),
    ]
    for body, field in cases:
        r = http.post("/api/v1/admin/staff", headers=sysadm.headers,
                      json={"user_id": clerk.id, **body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field


# --- audit log ---------------------------------------------------------------------------------


def test_audit_query_filters_and_pages(http, sysadm, auditor) -> None:
    h = auditor.headers
    user = create(http, sysadm, "audited_one")
    assert http.put(f"/api/v1/admin/users/{user['id']}/roles", headers=sysadm.headers,
                    json={"roles": ["viewer"]}).status_code == 200
    family = http.get("/api/v1/admin/audit", headers=h,
                      params={"action": "permission.*", "limit": 500}).json()["items"]
    assert family and all(r["action"].startswith("permission.") for r in family)
    first = http.get("/api/v1/admin/audit", headers=h, params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_before"] == first["items"][-1]["id"]
    older = http.get("/api/v1/admin/audit", headers=h,
                     params={"limit": 3, "before": first["next_before"]}).json()["items"]
    assert older and max(r["id"] for r in older) < min(r["id"] for r in first["items"])
    by_user = http.get("/api/v1/admin/audit", headers=h,
                       params={"user_id": sysadm.id, "limit": 500}).json()["items"]
    assert by_user and {r["actor_username"] for r in by_user} == {"sysadm"}
    future = http.get("/api/v1/admin/audit", headers=h,
                      params={"since": "2999-01-01T00:00:00+08:00"}).json()["items"]
    assert future == []
    # ISO 8601 allows offsets PostgreSQL does not (beyond ±15:59): still a plain answer.
    odd = http.get("/api/v1/admin/audit", headers=h,
                   params={"until": "2999-07-12T17:46:08+19:08", "limit": 1})
    assert odd.status_code == 200 and len(odd.json()["items"]) == 1
    for bad in ({"action": "x'; DROP TABLE audit_log; --"}, {"since": "yesterday"},
                {"since": "2026-01-01T00:00:00"}, {"limit": 100000},
                {"until": "0001-01-01T00:00:00+05:00"}):
        assert http.get("/api/v1/admin/audit", headers=h, params=bad).status_code == 422, bad
