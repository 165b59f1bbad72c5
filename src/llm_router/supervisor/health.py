"""Readiness probes: HTTP GET on a service's readiness path; only 2xx is ready. Short timeouts, run in parallel.

Uses urllib rather than requests so that `status` and `health` stay quick to start.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

PROBE_TIMEOUT = 2.0


@dataclass
class Probe:
    url: str
    ready: bool
    status: int | None
    latency_ms: float | None
    error: str | None = None

    def to_dict(self) -> dict:
        return vars(self).copy()


def loopback_opener():
    """A urllib opener that ignores HTTP(S)_PROXY: our services are on this machine."""
    import urllib.request

    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def probe(url: str, key: str | None = None, timeout: float = PROBE_TIMEOUT) -> Probe:
    """GET `url` (with `Authorization: Bearer <key>` when given); never raises."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, headers=headers)
    start = time.monotonic()
    try:
        with loopback_opener().open(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Probe(url, False, None, None, error=str(reason))
    latency = (time.monotonic() - start) * 1000
    ready = 200 <= status < 300
    return Probe(url, ready, status, round(latency, 1), None if ready else f"HTTP {status}")


def probe_all(targets: dict[str, tuple[str, str | None]], timeout: float = PROBE_TIMEOUT) -> dict[str, Probe]:
    """Probe several `{name: (url, key)}` at once."""
    if not targets:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {name: pool.submit(probe, url, key, timeout) for name, (url, key) in targets.items()}
        return {name: future.result() for name, future in futures.items()}
