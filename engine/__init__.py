"""The Prefect-free engine: training loops, embedders, captioners, OCR engines, the LLM client and server.

Stages in ``tasks/`` call into it; it imports only ``models/`` and the core ``mner/`` package.
"""
