"""A Label Studio project as the annotation step's other end: push the selection's tasks into it, pull
its finished annotations back (docs/design.md, "The labeling loop").

Plain HTTP against Label Studio's documented REST API (``/api/projects``, ``/api/projects/{id}/import``,
``/api/projects/{id}/export``, ``/api/tasks``), with ``requests``: the official SDK would add nltk, OpenCV and a
pinned NumPy to every image for these three calls.

The server's URL comes from the caller or ``LABEL_STUDIO_URL``; the API key only from the environment,
``LABEL_STUDIO_API_KEY`` (on a cluster, a Kubernetes secret mounted as that variable). A key is never
logged or put in an error message. Both kinds of key work: a personal access token (a JWT, exchanged
for a short-lived access token) and a legacy token.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import InputError

URL_ENV = "LABEL_STUDIO_URL"
KEY_ENV = "LABEL_STUDIO_API_KEY"
TIMEOUT = 60.0
# How long an unreachable server (or one answering 5xx) is retried before giving up, in seconds.
RETRY_TIMEOUT = 60.0


class LabelStudio:
    """One Label Studio server, authenticated with the key in ``LABEL_STUDIO_API_KEY``.

    A server that cannot be reached, or answers with a server error, is retried with exponential
    backoff for ``retry_timeout`` seconds (a restart of the server during a nightly run is survived);
    a refused key or a missing project is an error at once."""

    def __init__(self, url: str | None = None, api_key: str | None = None, retry_timeout: float = RETRY_TIMEOUT):
        import requests

        self.retry_timeout = float(retry_timeout)
        if not math.isfinite(self.retry_timeout) or self.retry_timeout < 0:
            raise InputError(f"retry_timeout must be a finite number of seconds >= 0, got {retry_timeout!r}")
        self.url = (url or os.environ.get(URL_ENV, "")).rstrip("/")
        if not self.url:
            raise InputError(f"no Label Studio URL: pass --label-studio-url (label_studio_url) or set {URL_ENV}")
        if not self.url.startswith(("http://", "https://")):
            raise InputError(f"the Label Studio URL must start with http:// or https://, got {self.url!r}")
        key = api_key if api_key is not None else os.environ.get(KEY_ENV, "")
        if not key:
            raise InputError(f"no Label Studio API key: set {KEY_ENV} (Account & Settings → Personal Access Token; "
                             "on a cluster, from a secret)")
        self.session = requests.Session()
        if key.count(".") == 2:  # a personal access token is a JWT refresh token: trade it for an access token
            access = self._call("POST", "/api/token/refresh/", json={"refresh": key}, authenticated=False)["access"]
            self.session.headers["Authorization"] = f"Bearer {access}"
        else:
            self.session.headers["Authorization"] = f"Token {key}"

    def _call(self, method: str, path: str, authenticated: bool = True, **options) -> Any:
        import requests
        from google.api_core import retry

        def send():
            response = self.session.request(method, self.url + path, timeout=TIMEOUT, **options)
            if response.status_code >= 500:
                raise ConnectionError(f"HTTP {response.status_code}")
            return response

        policy = retry.Retry(predicate=retry.if_exception_type(ConnectionError, requests.ConnectionError,
                                                               requests.Timeout),
                             initial=1.0, maximum=10.0, timeout=self.retry_timeout)
        try:
            response = policy(send)()
        except Exception as err:  # the retries ran out: the server is down or unreachable
            raise InputError(f"cannot reach Label Studio at {self.url} after {self.retry_timeout:g} s of retries "
                             f"({type(err).__name__}: {err}); check the URL and that the server is up") from None
        if response.status_code in (401, 403):
            what = "the API key" if authenticated else "the personal access token"
            raise InputError(f"Label Studio at {self.url} refused {what} (HTTP {response.status_code} on {path}); "
                             f"set {KEY_ENV} to a valid key of a member of the project")
        if response.status_code == 404:
            raise InputError(f"Label Studio at {self.url} has no {path} (HTTP 404); check the project id")
        if response.status_code >= 400:
            raise InputError(f"Label Studio at {self.url} rejected {method} {path} (HTTP {response.status_code}): "
                             f"{response.text[:300]}")
        return response.json() if response.content else None

    def create_project(self, title: str, label_config: str) -> int:
        """A new project with this labeling config (:func:`~active_finetuning.labels.label_studio_config`)."""
        return int(self._call("POST", "/api/projects/", json={"title": title, "label_config": label_config})["id"])

    def export(self, project: int, all_tasks: bool = False) -> list[dict]:
        """The project's tasks with their annotations (Label Studio's JSON export): only the annotated
        ones, or ``all_tasks``."""
        params = {"exportType": "JSON", "download_all_tasks": "true" if all_tasks else "false"}
        result = self._call("GET", f"/api/projects/{int(project)}/export", params=params)
        if not isinstance(result, list):
            raise InputError(f"Label Studio at {self.url} answered the export of project {project} with "
                             f"{type(result).__name__}, not a list of tasks")
        return result

    def task_refs(self, project: int, page_size: int = 500) -> set[str]:
        """The ``ref`` of every task the project holds, read page by page (``/api/tasks``): no export of
        the whole project with its annotations to answer "is this task there yet"."""
        refs: set[str] = set()
        page = 1
        while True:
            found = self._call("GET", "/api/tasks/", params={"project": int(project), "page": page,
                                                             "page_size": int(page_size)})
            if not isinstance(found, dict) or not isinstance(found.get("tasks"), list):
                raise InputError(f"Label Studio at {self.url} answered the task list of project {project} with "
                                 f"{type(found).__name__}, not a page of tasks")
            refs.update(str(t.get("data", {}).get("ref")) for t in found["tasks"])
            if not found["tasks"] or page * page_size >= int(found.get("total", 0)):
                return refs
            page += 1

    def pull(self, project: int, sample_ids=None) -> list[dict]:
        """The project's annotated tasks; given the ``sample_ids`` of a selection, only that selection's
        (a project the loop fills every night holds every round's tasks)."""
        from .labels import task_ref

        tasks = self.export(project)
        if sample_ids is None:
            return tasks
        refs = {task_ref(s) for s in sample_ids}
        return [t for t in tasks if str(t.get("data", {}).get("ref")) in refs]

    def save_export(self, project: int, uri: str, sample_ids=None) -> int:
        """Write :meth:`pull`'s tasks to ``uri`` (a Label Studio JSON export that
        :func:`~active_finetuning.labels.import_labels` reads); return how many."""
        import json

        from .data import storage

        tasks = self.pull(project, sample_ids)
        storage.write_bytes(uri, json.dumps(tasks, indent=1).encode())
        return len(tasks)

    def push(self, project: int, tasks: list[dict]) -> tuple[int, int]:
        """Import the tasks that the project does not hold yet (by their ``ref``), so a retried or
        repeated push adds nothing twice. Returns (pushed, already there)."""
        present = self.task_refs(project)
        new = [t for t in tasks if str(t["data"]["ref"]) not in present]
        if new:
            self._call("POST", f"/api/projects/{int(project)}/import", json=new)
        return len(new), len(tasks) - len(new)
