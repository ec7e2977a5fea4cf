"""`audiosum serve`: an OpenAI-compatible server over the offline engine (the test peer and a product
feature). It imports only engine/, audio/ and the leaf modules; only the CLI imports it.
"""
