"""Demo staff: administrators, commanders per city/county/township, a 网格长 and a 专职网格员
per grid, 兼职网格员 in some grids, department accounts bound to grids (入格), and the command
centres and township platforms they belong to. All share one known demo password."""

from __future__ import annotations

from typing import Any

from psycopg2.extras import execute_values

from geoserver.demo.loader import DemoContext, person_name
from geoserver.security.passwords import hash_password

DEMO_PASSWORD = "Demo-Wenzhou-2026"
#: Wenzhou 3.0's township platforms (rows per township; townships may rename them).
PLATFORMS = (("zz", "综治工作平台"), ("sc", "市场监管平台"), ("zf", "综合执法平台"),
             ("bm", "便民服务平台"))
DEPARTMENTS = (("scj", "市场监督管理局"), ("zfj", "综合行政执法局"))


def load(conn: Any, ctx: DemoContext) -> dict[str, int]:
    """Insert the demo staff; record example logins in ``ctx.shared['logins']``."""
    rng = ctx.rng(40)
    paths = ctx.paths
    pw_hash = hash_password(DEMO_PASSWORD)  # one hash for all: argon2 per user would take minutes
    city = next(r for r in ctx.regions if r.level == "city")
    counties = [r for r in ctx.regions if r.level == "county"]
    townships = [r for r in ctx.regions if r.level == "township"]
    grids = [r for r in ctx.regions if r.level == "grid"]
    users: list[tuple[str, str, str, list[str], str | None, str | None]] = []
    # (username, display name, home region, roles, position, position region)
    users += [("admin", "系统管理员", city.code, ["admin"], None, None),
              ("secadmin", "安全管理员", city.code, ["security_admin"], None, None),
              ("auditor", "审计管理员", city.code, ["audit_admin"], None, None),
              ("city", "市级指挥室", city.code, ["city_commander"], "command_centre_staff",
               city.code)]
    units: list[tuple[str, str, str, str]] = [(f"cc{city.code}", f"{city.name}指挥室",
                                               "command_centre", city.code)]
    for c in counties:
        users.append((f"c{c.code}", f"{c.name}指挥室", c.code, ["county_commander"],
                      "command_centre_staff", c.code))
        units.append((f"cc{c.code}", f"{c.name}指挥室", "command_centre", c.code))
        for key, name in DEPARTMENTS:
            units.append((f"{key}{c.code}", f"{c.name}{name}", "department", c.code))
    for t in townships:
        users.append((f"t{t.code}", f"{t.name}指挥室", t.code, ["township_commander"],
                      "command_centre_staff", t.code))
        units.append((f"cc{t.code}", f"{t.name}指挥室", "command_centre", t.code))
        for key, name in PLATFORMS:
            units.append((f"{key}{t.code}", f"{t.name}{name}", "platform", t.code))
    for g in grids:
        users.append((f"l{g.code}", person_name(rng), g.code, ["grid_leader"], "grid_leader",
                      g.code))
        users.append((f"w{g.code}", person_name(rng), g.code, ["grid_worker"], "grid_worker",
                      g.code))
        if rng.random() < 0.3:
            users.append((f"p{g.code}", person_name(rng), g.code, ["part_time_grid_worker"],
                          "part_time_grid_worker", g.code))
    with conn.cursor() as cur:
        execute_values(cur, "INSERT INTO org_unit (code, name, kind, region_code, path) VALUES %s",
                       [(code, name, kind, rc, paths[rc]) for code, name, kind, rc in units],
                       template="(%s, %s, %s, %s, %s::ltree)")
        ids = execute_values(
            cur, "INSERT INTO app_user (username, display_name, password_hash, home_region_code, "
                 "path) VALUES %s RETURNING id",
            [(u, d, pw_hash, home, paths[home]) for u, d, home, *_ in users],
            template="(%s, %s, %s, %s, %s::ltree)", fetch=True, page_size=5000)
        user_ids = [i[0] for i in ids]
        cur.execute("SELECT name, id FROM role")
        role_id = dict(cur.fetchall())
        execute_values(cur, "INSERT INTO user_role (user_id, role_id) VALUES %s",
                       [(uid, role_id[r]) for uid, u in zip(user_ids, users, strict=True)
                        for r in u[3]], page_size=5000)
        execute_values(cur, "INSERT INTO user_scope (user_id, region_code) VALUES %s",
                       [(uid, u[2]) for uid, u in zip(user_ids, users, strict=True)],
                       page_size=5000)
        execute_values(
            cur, "INSERT INTO staff_assignment (user_id, position, region_code, path) VALUES %s",
            [(uid, u[4], u[5], paths[u[5]]) for uid, u in zip(user_ids, users, strict=True)
             if u[4] and u[5]],
            template="(%s, %s::staff_position, %s, %s::ltree)", page_size=5000)
    first_t = townships[0] if townships else None
    first_g = grids[0] if grids else None
    ctx.shared["logins"] = [
        ("admin", "系统管理员 (全市)"), ("secadmin", "安全管理员"), ("auditor", "审计管理员"),
        ("city", "市级指挥室"),
        *([(f"c{counties[0].code}", f"{counties[0].name}指挥室")] if counties else []),
        *([(f"t{first_t.code}", f"{first_t.name}指挥室")] if first_t else []),
        *([(f"l{first_g.code}", f"{first_g.name} 网格长"),
           (f"w{first_g.code}", f"{first_g.name} 专职网格员")] if first_g else []),
    ]
    ctx.shared["demo_password"] = DEMO_PASSWORD
    return {"app_user": len(users), "org_unit": len(units)}
