"""audiosum: batch spoken summaries of documents, offline or over the OpenAI audio interface."""

__version__ = "0.1.0"
