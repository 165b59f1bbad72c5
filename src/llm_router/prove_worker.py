"""Old name of llm_router.litellm.prove_worker (`python -m llm_router.prove_worker` keeps working)."""
import runpy; runpy.run_module("llm_router.litellm.prove_worker", run_name=__name__)
