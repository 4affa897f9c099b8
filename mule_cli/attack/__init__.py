"""`mule attack` as a library: search prefilling prefixes that still elicit target knowledge (paper §3.2, Obj3).

Entry point: `search.attack_records(...)`; the template library lives in `templates.py`.
"""
