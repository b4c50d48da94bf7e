"""The process-wide job registry; modules register their periodic jobs and queue handlers here."""

from geoserver.jobs.runner import JobRegistry

registry = JobRegistry()
