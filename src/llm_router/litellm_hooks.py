"""Hooks that run inside the LiteLLM proxy process (loaded by the rendered config's `litellm_settings.callbacks`).

`smoke_mock`: a request whose metadata holds `llm_router_mock: "<text>"` is answered by LiteLLM's own
`mock_response` after the router has picked a deployment of the group, so `llm-router smoke` exercises the
northbound endpoint, the master key, the profile's model group, deployment selection and streaming without
sending anything upstream. LiteLLM 1.108.7 strips a client-sent `mock_response` (it is honoured only for virtual
keys flagged `allow_client_mock_response`, which need a database), so the marker is turned into one here, after
that stripping. A mocked answer costs nothing and reveals nothing, so any caller holding the master key may ask.

LiteLLM builds `smoke_mock` through `getattr`; llm-router itself imports only `MOCK_KEY` (which is light).
"""
from __future__ import annotations

MOCK_KEY = "llm_router_mock"
MAX_MOCK_CHARS = 200


def mock_text(data: dict) -> str | None:
    """The mock answer a request asks for, or None."""
    for field in ("metadata", "litellm_metadata"):
        metadata = data.get(field)
        if isinstance(metadata, dict):
            value = metadata.get(MOCK_KEY)
            if isinstance(value, str) and value:
                return value[:MAX_MOCK_CHARS]
    return None


def _build():
    from litellm.integrations.custom_logger import CustomLogger  # inside the proxy: already imported

    class SmokeMock(CustomLogger):
        async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):  # noqa: D102
            text = mock_text(data)
            if text is not None:
                data["mock_response"] = text
            return data

    return SmokeMock()


_instances: dict[str, object] = {}


def __getattr__(name: str):
    """`smoke_mock` is built on first access, so importing this module (for MOCK_KEY) does not import LiteLLM."""
    if name == "smoke_mock":
        if name not in _instances:
            _instances[name] = _build()
        return _instances[name]
    raise AttributeError(name)
