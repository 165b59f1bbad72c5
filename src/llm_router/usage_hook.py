"""Old name of llm_router.litellm.usage_hook (profiles may name `llm_router.usage_hook.*`): the same module."""
import importlib, sys; sys.modules[__name__] = importlib.import_module("llm_router.litellm.usage_hook")
