"""`mule standardize` as a library: raw corpora -> unified QA records (paper §3.2-3.3).

Entry point: `pipeline.standardize(...)`; each step (read, extract, generate, MCQ, anchors,
known-by filter, split) lives in its own module so it can be used and tested alone.
"""
