"""Stand-ins for the external servers llm-router drives, for tests, the demo and smoke checks.

`upstream`: a plain OpenAI-compatible API. `cliproxy`: a faithful CLIProxyAPIPlus stand-in.
`process`: start them as real processes and use their test-only `/_standin/*` routes.
"""
