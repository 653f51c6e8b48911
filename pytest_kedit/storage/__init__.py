"""Files that several processes share, knowing nothing of the benchmark: the cache folder and its
locks, atomic writes, and JSON-lines logs that survive a process killed mid-line.
"""
