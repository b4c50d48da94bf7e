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
         # Not the "coverage" phase: on a clean machine it stopped once with an internal error
         # of schemathesis (a "Runtime Error", no request at fault) that a rerun did not repeat.
         "--max-examples", "12", "--phases", "examples,fuzzing", "--seed", "2026",
         "--exclude-path-regex", EXCLUDED, "--request-timeout", "30",
         "--suppress-health-check", "all", "--workers", "2"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    (tmp_path / "schemathesis.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, _failures(result.stdout)


def _failures(out: str) -> str:
    """The report's failure and error sections (their details), else its last lines."""
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("=")
                  and ("ERRORS" in line or "FAILURES" in line)), max(0, len(lines) - 60))
    return "\n".join(lines[start:start + 120])
