"""What a run produced, torch-free: the case record and the run summary, provenance, aggregation
into the paper's tables, and the report folder (written as cases finish, read back, shards merged).
"""
