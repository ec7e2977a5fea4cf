"""The offline engine: extractive summaries spoken by a pip-packaged neural voice.

Pure functions that run inside worker processes; nothing here does I/O beyond loading the voice.
"""
