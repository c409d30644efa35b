"""``pert serve``: an HTTP API and a web page over QA, word-order restoration and PerLM models.

Needs the optional extra: ``pip install 'pert[serve]'`` (FastAPI and uvicorn).
"""
