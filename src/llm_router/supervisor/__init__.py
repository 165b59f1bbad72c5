"""The supervisor: process identity (`process`), readiness probes (`health`), start/stop/restart/status of any
service described by a `ServiceSpec` (`services`), the state enums (`states`) and login units (`units`).

It knows nothing of profiles, LiteLLM or CLIProxyAPIPlus: those describe themselves as specs (litellm/service.py,
cliproxy_service.py, redis_service.py) and `stack.py` hands the specs in.
"""
