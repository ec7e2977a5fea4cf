"""The OpenAI API: Chat Completions audio (and two-step's speech endpoint, and the Batch API) over httpx.

The package's face: the provider, and the wire format's names the dry run, --batch and the tests use. The code lives
in wire.py (bodies and answers), transport.py (HTTP), provider.py (strategies), speech.py, batch.py and their peers.
"""

from pipeline.providers.openai.provider import OpenAIProvider
from pipeline.providers.openai.wire import (
    TextAnswer,
    build_request_body,
    classify_error_response,
    direct_format,
    output_options,
    parse_answer,
    parse_text_answer,
    voice_name,
    voice_on_wire,
)

__all__ = ["OpenAIProvider", "TextAnswer", "build_request_body", "classify_error_response", "direct_format",
           "output_options", "parse_answer", "parse_text_answer", "voice_name", "voice_on_wire"]
