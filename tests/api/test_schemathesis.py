"""Property-based API checks with schemathesis (its CLI) against the app's own OpenAPI,
authenticated: no 5xx, and responses that match their schemas. Bounded so it runs in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.users import township_commander

ST = Path(sys.executable).parent / "st"
#: Logging out or revoking every session would revoke the very token the run uses.
EXCLUDED = (r"^/api/v1/(auth/(logout|sessions/revoke-all|tokens/\{token_id\})"
            r"|messages/stream|patrols/live/stream|events/stream)$")


def test_api_never_5xx_and_matches_schema(module_engine, live_server, tmp_path) -> None:
    user = township_commander(module_engine, "fuzzer", "330302006", on_duty=False)
    result = subprocess.run(
        [str(ST), "run", f"{live_server}/openapi.json",
         "-H", f"Authorization: Bearer {user.token}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "12", "--phases", "examples,coverage,fuzzing", "--seed", "2026",
         "--exclude-path-regex", EXCLUDED, "--request-timeout", "30",
         "--suppress-health-check", "all", "--workers", "2"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    tail = "\n".join(result.stdout.splitlines()[-60:])
    assert result.returncode == 0, tail
