"""The one way into LLMs: `LLMClient` (litellm underneath) and prompt templates.

    from pada.llm import LLMClient, LLMConfig, JSONRequest, StructuredResult

Importing this package is cheap: litellm is imported on the first request.
`local/<alias or path.gguf>` models run on llama-server, started and reused by `pada.llm.engine`.
"""

from pada.llm.client import (
    JSONRequest,
    LLMClient,
    LLMConfig,
    LLMConfigError,
    StructuredResult,
    register_provider,
    response_format,
    schema_instruction,
    with_schema_instruction,
)

__all__ = [
    "JSONRequest",
    "LLMClient",
    "LLMConfig",
    "LLMConfigError",
    "StructuredResult",
    "register_provider",
    "response_format",
    "schema_instruction",
    "with_schema_instruction",
]
