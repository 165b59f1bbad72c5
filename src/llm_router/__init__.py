"""llm-router: local control toolkit for CLIProxyAPIPlus + LiteLLM stacks."""
__version__ = "0.1.0"
