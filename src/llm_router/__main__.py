"""`python -m llm_router`: the `llm-router` console script."""
from .cli import main

raise SystemExit(main())
