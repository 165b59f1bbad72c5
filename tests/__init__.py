"""llm-router's tests.

A test that imports LiteLLM in the test process (the smoke hook's) would otherwise make LiteLLM
fetch its model cost map and other files from GitHub at import: the same offline switches the router gives every
LiteLLM it starts are set here first, so no test touches the network."""
import os

from llm_router.litellm.env import LITELLM_OFFLINE_ENV

for _name, _value in LITELLM_OFFLINE_ENV.items():
    if _name.startswith("LITELLM_LOCAL_"):
        os.environ.setdefault(_name, _value)
