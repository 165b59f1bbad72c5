"""Old name of llm_router.litellm.hooks (profiles may name `llm_router.litellm_hooks.*`): the same module."""
import importlib, sys; sys.modules[__name__] = importlib.import_module("llm_router.litellm.hooks")
