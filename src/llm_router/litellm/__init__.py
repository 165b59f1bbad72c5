"""The LiteLLM integration: how llm-router runs LiteLLM (`service`: the spec, its environment and mode, serving a
new config by a worker swap or a restart), the generated runner (`runner`) and the entry point it execs
(`launch`), proving a config loadable before it is switched to (`prove`, `prove_worker`), gunicorn worker swaps
(`workers`), and the code that runs inside LiteLLM (`hooks`, `usage_hook`).
"""
